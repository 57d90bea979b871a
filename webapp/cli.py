"""Command line for administrators' bulk work and scripts; every command prints JSON.

Each feature keeps its commands in its own package (`webapp/<feature>/cli.py`); this module holds
what they share and registers them. The worker and scheduler commands come from jobs/ (jobs/cli.py).
"""
from __future__ import annotations

import functools
import json

import click
from sqlalchemy import select
from sqlalchemy.exc import OperationalError, ProgrammingError

from webapp.accounts.permissions import company_for
from webapp.extensions import db
from webapp.models import User


def print_json(data) -> None:
    """Every command's answer: JSON, Chinese kept readable."""
    click.echo(json.dumps(data, ensure_ascii=False, indent=1))


def fail(message: str):
    """Stop the command with exit status 1 and the message on stderr."""
    raise click.ClickException(message)


def acting_user(username: str) -> User:
    """The user a command acts as (`--as`): their grants limit what it may reach."""
    user = db.session.scalar(select(User).filter_by(username=username))
    if user is None or not user.active:
        fail(f"用户不存在或已停用：{username}")
    return user


def acting_company(user: User, tax_id: str):
    """A company the user may act on, or the command fails saying why."""
    try:
        return company_for(user, tax_id)
    except PermissionError as exc:
        fail(str(exc))


def init_app(app) -> None:
    """Register every feature's commands."""
    from webapp.accounts.cli import COMMANDS as accounts
    from webapp.autoupdate.cli import COMMANDS as autoupdate
    from webapp.batches.cli import COMMANDS as batches
    from webapp.pool.cli import COMMANDS as pool

    for command in (*accounts, *batches, *pool, *autoupdate):
        app.cli.add_command(command)
    for command in app.cli.commands.values():
        _explain_unmigrated(command)


UNMIGRATED = ("数据库尚未初始化或结构不是最新，请先运行：flask --app wsgi db upgrade（或 make install）\n"
              "The database has not been migrated yet: run `flask --app wsgi db upgrade` (or `make install`) first.")


def _explain_unmigrated(command: click.Command) -> None:
    """Make a command (and a group's subcommands) say what to run on an unmigrated database.

    Why: without it every command on a fresh database ends in a raw SQLAlchemy traceback
    ("no such table: org") that does not tell the operator the one step missing.
    """
    for sub in getattr(command, "commands", {}).values():
        _explain_unmigrated(sub)
    if command.callback is None or getattr(command.callback, "explains_unmigrated", False):
        return
    callback = command.callback

    @functools.wraps(callback)
    def run(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except (OperationalError, ProgrammingError) as error:
            missing = "no such table" in str(error.orig) or getattr(error.orig, "sqlstate", None) == "42P01"
            if not missing:
                raise
            raise click.ClickException(UNMIGRATED) from None

    run.explains_unmigrated = True
    command.callback = run
