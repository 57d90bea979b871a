"""Command line for administrators' bulk work and scripts; every command prints JSON.

Each feature keeps its commands in its own package (`webapp/<feature>/cli.py`); this module holds
what they share and registers them. The worker and scheduler commands come from jobs/ (jobs/cli.py).
"""
from __future__ import annotations

import functools
import json

import click
from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import OperationalError, ProgrammingError

from webapp.accounts.permissions import company_for
from webapp.disk import DiskFull, disk_full_message, is_disk_full
from webapp.extensions import db
from webapp.health import sandbox_channels
from webapp.models import User
from webapp.statuses import HealthStatus


def print_json(data) -> None:
    """Every command's answer: JSON, Chinese kept readable.

    While a channel points at the built-in sandbox, the answer says so (`"sandbox": true`): on an
    object, and on each object of a list, so that a script never takes demo data for the bureau's.
    A low disk is named on stderr.
    """
    if sandbox_channels(current_app.config):
        data = _marked_sandbox(data)
    click.echo(json.dumps(data, ensure_ascii=False, indent=1))
    _warn_low_disk()


def _warn_low_disk() -> None:
    """A disk running out of room is said on stderr after every answer (stdout stays JSON)."""
    from webapp.health.checks import disk_finding

    finding = disk_finding()
    if finding.status != HealthStatus.OK:
        click.echo(finding.message, err=True)


def _marked_sandbox(data):
    """An answer with `"sandbox": true` added to it (or to each object of a list)."""
    if isinstance(data, dict):
        return {**data, "sandbox": True}
    if isinstance(data, list):
        return [_marked_sandbox(item) if isinstance(item, dict) else item for item in data]
    return data


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
    from webapp.backup.cli import COMMANDS as backup
    from webapp.batches.cli import COMMANDS as batches
    from webapp.pool.cli import COMMANDS as pool
    from webapp.pool.cli import pool_group
    from webapp.reconcile.cli import POOL_COMMANDS as reconcile
    from webapp.summary.cli import POOL_COMMANDS as summary

    for command in (*summary, *reconcile):  # features that read the pool answer under its group
        pool_group.add_command(command)
    for command in (*accounts, *batches, *pool, *autoupdate, *backup):
        app.cli.add_command(command)
    for command in app.cli.commands.values():
        _explain_unmigrated(command)


UNMIGRATED = ("数据库尚未初始化或结构不是最新，请先运行：flask --app wsgi db upgrade（或 make install）\n"
              "The database has not been migrated yet: run `flask --app wsgi db upgrade` (or `make install`) first.")


def _explain_disk_full(error: BaseException) -> None:
    """A full disk (ENOSPC, SQLite's "disk is full", Redis's MISCONF) said as 磁盘空间不足 with the
    folder and its free space, instead of a traceback; anything else goes on as it was."""
    if isinstance(error, DiskFull):
        raise click.ClickException(str(error)) from None
    if is_disk_full(error):
        raise click.ClickException(disk_full_message()) from None


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
                _explain_disk_full(error)
                raise
            raise click.ClickException(UNMIGRATED) from None
        except Exception as error:  # OSError, a Redis error, DiskFull: only a full disk is said otherwise
            _explain_disk_full(error)
            raise

    run.explains_unmigrated = True
    command.callback = run
