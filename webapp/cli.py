"""Command line for administrators' bulk migrations and scripts; every command prints JSON."""
from __future__ import annotations

import functools
import json
import sys
import time
from datetime import timedelta
from pathlib import Path

import click
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import select
from sqlalchemy.exc import OperationalError, ProgrammingError

from channels.etax_file import check_file_name, check_upload
from channels.invoice_types import DOWNLOAD_KINDS
from channels.records import SourceRejected

from . import accounts, audit
from .batches import (
    FINISHED_BATCH,
    batch_json,
    create_download_batches,
    create_file_batch,
    months_between,
    period_limits,
)
from .extensions import db
from .models import Batch, User
from .permissions import company_for, require_schedule_admin, visible_schedule
from .pool import blue_facts, find_invoice, invoice_json, pool_stats, red_invoices_of
from .transactions import write_transaction


def _print(data) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=1))


def _fail(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(1)


def _user(username: str) -> User:
    user = db.session.scalar(select(User).filter_by(username=username))
    if user is None or not user.active:
        _fail(f"用户不存在或已停用：{username}")
    return user


def _company(user: User, tax_id: str):
    try:
        return company_for(user, tax_id)
    except PermissionError as exc:
        _fail(str(exc))


@click.command("seed-demo")
@with_appcontext
def seed_demo_command():
    """Create the demo org, users and company (idempotent)."""
    with write_transaction():
        result = accounts.seed_demo()
    _print(result)


enterprise = AppGroup("enterprise", help="企业信息")


@enterprise.command("add")
@click.option("--tax-id", required=True)
@click.option("--name", required=True)
@click.option("--org", default=accounts.DEFAULT_ORG, show_default=True)
def enterprise_add(tax_id, name, org):
    """Add a company, or rename an existing one of the same org."""
    try:
        with write_transaction():
            company = accounts.save_company(tax_id, name, accounts.get_or_create_org(org))
            _print({"tax_id": company.tax_id, "name": company.name, "org": org})
    except ValueError as exc:
        _fail(str(exc))
    audit.record("company.save", company.tax_id, actor="命令行", org_id=company.org_id, name=company.name)


user_group = AppGroup("user", help="用户")


@user_group.command("add")
@click.argument("username")
@click.option("--password", required=True)
@click.option("--org", default=accounts.DEFAULT_ORG, show_default=True)
@click.option("--role", type=click.Choice(list(accounts.ROLES)), default="finance", show_default=True)
@click.option("--grant", "grants", multiple=True, help="a tax ID the user may work on; repeatable")
def user_add(username, password, org, role, grants):
    """Add a user (or update one of the same org) with the tax IDs granted to them."""
    try:
        with write_transaction():
            user = accounts.save_user(username, accounts.get_or_create_org(org), role, password)
            accounts.set_grants(user, list(grants))
            _print({"username": user.username, "org": org, "role": role, "grants": [c.tax_id for c in user.companies]})
    except ValueError as exc:
        _fail(str(exc))
    audit.record("user.save", user.username, actor="命令行", org_id=user.org_id, role=role,
                 password_changed=True, grants=[c.tax_id for c in user.companies])


def _batch_by_no(batch_no: str) -> Batch:
    batch = db.session.scalar(select(Batch).filter_by(batch_no=batch_no))
    if batch is None:
        _fail(f"导入批次不存在：{batch_no}")
    return batch


def _wait(batch_no: str) -> Batch:
    """Block until the batch ends, or only waits for a later day (乐企 quota) remain.

    Works the queue in this process when no worker is up, releasing short waits itself.
    """
    from jobs.queue import enqueue_subtask, get_queue, redis_connection, workers_running
    from jobs.tasks import release_waiting
    from jobs.worker import make_worker

    from .clock import now

    while True:
        db.session.rollback()  # see other processes' commits
        batch = _batch_by_no(batch_no)
        statuses = {s.status for s in batch.subtasks}
        if batch.status in FINISHED_BATCH or (statuses & {"waiting"} and not statuses & {"pending", "running"}
                                              and min(s.not_before for s in batch.subtasks if s.status == "waiting")
                                              > now() + timedelta(minutes=5)):
            return batch
        for subtask in release_waiting(now()):
            enqueue_subtask(subtask)
        if workers_running():
            time.sleep(0.5)
        elif not make_worker([get_queue()], redis_connection(), quiet=True, fork=False).work(
                burst=True, logging_level="WARNING"):
            time.sleep(0.2)  # nothing was queued: a job may be on its way from another process


@click.command("import-file")
@with_appcontext
@click.option("--tax-id", required=True)
@click.option("--file", "path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--as", "username", required=True)
@click.option("--wait", is_flag=True, help="block until the batch ends")
def import_file(tax_id, path, username, wait):
    """导入电子税局文件 for one company, with the import dialog's rules."""
    user = _user(username)
    company = _company(user, tax_id)
    if not path.exists():
        _fail(f"文件不存在：{path}")
    try:
        check_file_name(path.name)
        check_upload(path)
    except SourceRejected as exc:
        _fail(str(exc))
    batch = create_file_batch(user, company, path, path.name)
    if wait:
        batch = _wait(batch.batch_no)
    _print(batch_json(batch))
    if batch.status == "failed":
        _fail(batch.error or "导入失败")


def _month(value: str) -> str:
    from datetime import datetime as _dt

    try:
        return _dt.strptime(value, "%Y-%m").strftime("%Y-%m")
    except ValueError:
        _fail(f"月份格式应为 YYYY-MM：{value}")


@click.command("download")
@with_appcontext
@click.option("--tax-id", "tax_ids", required=True, multiple=True, help="repeatable: one batch per tax ID")
@click.option("--channel", type=click.Choice(["leqi", "rpa"]), required=True)
@click.option("--from", "first", required=True, help="YYYY-MM")
@click.option("--to", "last", required=True, help="YYYY-MM")
@click.option("--type", "types", multiple=True, type=click.Choice(list(DOWNLOAD_KINDS)), help="fplx code; default all six")
@click.option("--data", "data", type=click.Choice(["invoices", "usage", "both"]), default="invoices", show_default=True)
@click.option("--as", "username", required=True)
@click.option("--wait", is_flag=True, help="block until the batches end")
def download(tax_ids, channel, first, last, types, data, username, wait):
    """税局下载 through 乐企 or RPA, with the import dialog's rules; prints the batches."""
    user = _user(username)
    companies = [_company(user, tax_id) for tax_id in tax_ids]
    first, last = _month(first), _month(last)
    from .clock import now

    lowest, highest = period_limits(now().date())
    if first > last:
        _fail("起始月份不能晚于截止月份")
    if first < lowest or last > highest:
        _fail(f"开票日期只能选择近五年：{lowest} 至 {highest}")
    batches = []
    try:
        for data_type in (("invoices", "usage") if data == "both" else (data,)):
            batches += create_download_batches(user, companies, channel=channel, data_type=data_type,
                                               months=months_between(first, last), type_codes=list(types or DOWNLOAD_KINDS))
    except SourceRejected as exc:
        _fail(str(exc))
    numbers = [b.batch_no for b in batches]
    if wait:
        batches = [_wait(number) for number in numbers]
    _print([batch_json(_batch_by_no(number)) for number in numbers])
    if any(b.status == "failed" for b in batches):
        sys.exit(1)


batch_group = AppGroup("batch", help="导入批次")


@batch_group.command("show")
@click.argument("batch_no")
def batch_show(batch_no):
    """One batch with its subtasks."""
    _print(batch_json(_batch_by_no(batch_no)))


pool_group = AppGroup("pool", help="销项发票池")


@pool_group.command("stats")
@click.option("--tax-id", required=True)
def pool_stats_command(tax_id):
    """One company's pool figures."""
    _print(pool_stats(tax_id.strip().upper()))


@pool_group.command("show")
@click.argument("key")
def pool_show(key):
    """One invoice with its lines, red link, usage statuses and red-flush readiness."""
    from .clock import now
    from .redflush import assess, to_json

    invoice = find_invoice(key)
    if invoice is None:
        _fail(f"发票池中没有该发票：{key}")
    reds = red_invoices_of(invoice)
    data = invoice_json(invoice)
    data["red_invoices"] = [r.key for r in reds]
    data["red_flush"] = None if invoice.is_red else to_json(assess(blue_facts(invoice, reds), now()))
    _print(data)


@pool_group.command("coverage")
@click.option("--tax-id", required=True)
@click.option("--year", type=int, required=True)
def pool_coverage(tax_id, year):
    """同步覆盖 of one company and year: {"YYYY-MM": {type code: {"invoices", "last_synced", "source"}}}."""
    from .clock import now
    from .coverage import coverage, coverage_json

    _print(coverage_json(coverage(tax_id.strip().upper(), now().date(), year)))


@pool_group.command("summary")
@click.option("--tax-id", required=True)
@click.option("--year", type=int, required=True)
def pool_summary(tax_id, year):
    """销项汇总 of one company and year: {"YYYY-MM": {rate: {"special"|"other": {"amount", "tax"}}}}."""
    from .summary import summary_json, year_summary

    _print(summary_json(year_summary([tax_id.strip().upper()], year)))


@pool_group.command("diff")
@click.option("--tax-id", required=True)
@click.option("--month", required=True, help="YYYY-MM")
def pool_diff(tax_id, month):
    """来源核对 of one company-month: per-source counts, invoices only one source has, differing values."""
    from .reconcile import source_report

    _print(source_report(tax_id.strip().upper(), _month(month)))


@click.command("worker")
@with_appcontext
@click.option("--burst", is_flag=True, help="stop when the queue is empty")
def worker_command(burst):
    """An RQ worker for the product's queue, inside the app context; it outlives Redis outages."""
    from jobs.worker import run_forever

    run_forever(burst=burst)


@click.command("scheduler")
@with_appcontext
def scheduler_command():
    """The scheduler process: monthly auto-update runs, catch-up, and re-enqueueing lost or waiting work."""
    from jobs.scheduler import run_forever

    run_forever()


autoupdate_group = AppGroup("autoupdate", help="自动更新")


@autoupdate_group.command("create")
@click.option("--as", "username", required=True)
@click.option("--invoices", is_flag=True, help="发票明细信息更新")
@click.option("--usage", is_flag=True, help="发票用途状态更新")
def autoupdate_create(username, invoices, usage):
    """【自动更新】 for the user's org: on the 5th, last month's data, for every company with a channel."""
    from . import autoupdate
    from .clock import now

    user = _user(username)
    try:
        require_schedule_admin(user)
        schedule = autoupdate.create_schedule(user, invoices=invoices or not usage, usage=usage, now=now())
    except (PermissionError, ValueError) as exc:
        _fail(str(exc))
    audit.record("schedule.create", f"计划 #{schedule.id}", actor=user, what=autoupdate.what(schedule))
    from jobs.scheduler import register_schedules

    register_schedules()
    _print(autoupdate.schedule_json(schedule, now()))


@autoupdate_group.command("list")
@click.option("--as", "username", required=True)
def autoupdate_list(username):
    """The org's schedules with their next run and last runs."""
    from . import autoupdate
    from .clock import now

    user = _user(username)
    _print([visible_schedule(autoupdate.schedule_json(s, now()), user) for s in autoupdate.org_schedules(user.org_id)])


@autoupdate_group.command("run-due")
@click.option("--now", "at", help="ISO time (org-local when no offset); default: now")
def autoupdate_run_due(at):
    """What the scheduler does at that moment; prints the runs it started."""
    from datetime import datetime as _dt

    from . import autoupdate
    from .clock import now

    try:
        moment = _dt.fromisoformat(at) if at else now()
    except ValueError:
        _fail(f"时间格式应为 ISO，例如 2026-12-05T00:30：{at}")
    if moment.tzinfo is None and at:
        moment = moment.replace(tzinfo=autoupdate.ZoneInfo("Asia/Shanghai"))
    _print([autoupdate.run_json(r) for r in autoupdate.run_due(moment)])


def init_app(app) -> None:
    for command in (seed_demo_command, enterprise, user_group, import_file, download, batch_group, pool_group,
                    worker_command, scheduler_command, autoupdate_group):
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
