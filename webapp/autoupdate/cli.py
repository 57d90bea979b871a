"""`autoupdate …` commands: create and list an org's monthly schedules, run what is due."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from webapp import autoupdate
from webapp.accounts import audit
from webapp.accounts.permissions import require_schedule_admin, visible_schedule
from webapp.background import background
from webapp.cli import acting_user, fail, print_json
from webapp.clock import now
from webapp.params import MOMENT, TEXT

autoupdate_group = AppGroup("autoupdate", help="自动更新")


@autoupdate_group.command("create")
@click.option("--as", "username", required=True, type=TEXT)
@click.option("--invoices", is_flag=True, help="发票明细信息更新")
@click.option("--usage", is_flag=True, help="发票用途状态更新")
def autoupdate_create(username, invoices, usage):
    """【自动更新】 for the user's org: on the 5th, last month's data, for every company with a channel."""
    user = acting_user(username)
    try:
        require_schedule_admin(user)
        schedule = autoupdate.create_schedule(user, invoices=invoices or not usage, usage=usage, now=now())
    except (PermissionError, ValueError) as exc:
        fail(str(exc))
    audit.record("schedule.create", f"计划 #{schedule.id}", actor=user, what=autoupdate.what(schedule))
    background().sync_schedules()
    print_json(autoupdate.schedule_json(schedule, now()))


@autoupdate_group.command("list")
@click.option("--as", "username", required=True, type=TEXT)
def autoupdate_list(username):
    """The org's schedules with their next run and last runs."""
    user = acting_user(username)
    print_json([visible_schedule(autoupdate.schedule_json(s, now()), user)
                for s in autoupdate.org_schedules(user.org_id)])


@autoupdate_group.command("run-due")
@click.option("--now", "at", type=MOMENT, help="ISO time (org-local when no offset); default: now")
def autoupdate_run_due(at):
    """What the scheduler does at that moment; prints the runs it started."""

    moment = at or now()
    if moment.tzinfo is None and at:
        moment = moment.replace(tzinfo=autoupdate.ZoneInfo("Asia/Shanghai"))
    print_json([autoupdate.run_json(r) for r in autoupdate.run_due(moment)])


COMMANDS = (autoupdate_group,)
