"""自动更新: each org's monthly download, on the 5th, of last month's invoices and usage status.

A schedule is private to its org. Every run is a row unique on (schedule, period): a run is
never doubled (two scheduler processes, a restart mid-run, a manual run of the same period),
and a run missed while the server was down is found missing and caught up.
"""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from channels.invoice_types import DOWNLOAD_KINDS
from channels.months import month_of, next_month, previous_month, year_and_month
from webapp.accounts import audit
from webapp.accounts.permissions import permitted_company_ids
from webapp.background import background
from webapp.batches import add_download_batches, usable_channel
from webapp.clock import stored
from webapp.extensions import db
from webapp.models import Company, Schedule, ScheduleRun, User
from webapp.statuses import DataType, RunTrigger
from webapp.transactions import write_transaction

TASK_CODE = "sim_his_inv_data_import_task_SKDP_S"  # 调度任务编码 (docs/rules.md, 自动更新)
TASK_NAME = "历史发票数据导入定时计划"
RUN_DAY = 5
CATCH_UP_MONTHS = 12


def job_id(schedule: Schedule) -> str:
    """The rq-scheduler job id: the task code plus the schedule, so jobs map to rows."""
    return f"{TASK_CODE}-{schedule.id}"


def job_description(schedule: Schedule) -> str:
    return f"{TASK_NAME} #{schedule.id}"


def what(schedule: Schedule) -> str:
    """The schedule's content as the dialog names it."""
    return "、".join(n for flag, n in ((schedule.invoices, "发票明细信息更新"), (schedule.usage, "发票用途状态更新"))
                     if flag)


def zone(schedule: Schedule) -> ZoneInfo:
    """The org's time zone: the 5th of the month is the org's 5th."""
    return ZoneInfo(schedule.org.timezone or "Asia/Shanghai")


def local(moment: datetime, tz: ZoneInfo) -> datetime:
    """A moment in the org's time zone; naive datetimes are this server's local time."""
    return (moment if moment.tzinfo else moment.astimezone()).astimezone(tz)


def _run_moment(month: str, tz: ZoneInfo) -> datetime:
    """The month's run: the 5th, 00:00 org-local."""
    return datetime(*year_and_month(month), RUN_DAY, tzinfo=tz)


def _first_run_after(moment: datetime, tz: ZoneInfo) -> str:
    """The month of the first run strictly after `moment` (org-local)."""
    month = month_of(moment)
    return next_month(month) if moment >= _run_moment(month, tz) else month


def due_periods(schedule: Schedule, now: datetime) -> list[str]:
    """The periods whose run day (the 5th, 00:00 local) has come since the schedule was created or
    last enabled (months it was switched off are not downloaded behind the user's back); each run
    fetches the month before its own."""
    tz = zone(schedule)
    created, current = local(max(schedule.created_at, schedule.active_since or schedule.created_at), tz), local(now, tz)
    month = _first_run_after(created, tz)
    periods = []
    while _run_moment(month, tz) <= current:
        periods.append(previous_month(month))
        month = next_month(month)
    return periods[-CATCH_UP_MONTHS:]


def next_run(schedule: Schedule, now: datetime) -> datetime | None:
    """When the schedule runs next (org-local), or None while disabled."""
    if not schedule.enabled:
        return None
    tz = zone(schedule)
    return _run_moment(_first_run_after(local(now, tz), tz), tz)


class DuplicateSchedule(ValueError):
    """The org already has a schedule for this data: a second one would download it twice."""

    def __init__(self, existing: Schedule):
        state = "已启用" if existing.enabled else "已停用，可在其中启用"
        super().__init__(f"本组织已有自动更新计划 #{existing.id}（{what(existing)}，{state}），"
                         f"同一数据只能有一个计划，请在“自动化设置”中查看计划 #{existing.id}")
        self.schedule = existing


def covering_schedule(org_id: int, *, invoices: bool, usage: bool) -> Schedule | None:
    """The org's schedule already covering any of this data (发票明细 or 用途状态), if any."""
    return next((s for s in org_schedules(org_id) if (invoices and s.invoices) or (usage and s.usage)), None)


def check_new_schedule(org_id: int, *, invoices: bool, usage: bool) -> None:
    """A new schedule covers some data, and none the org's schedules already cover (two would
    download the same months twice): ValueError, or DuplicateSchedule naming the one there is."""
    if not invoices and not usage:
        raise ValueError("请至少勾选一项：发票明细信息更新 或 发票用途状态更新")
    if existing := covering_schedule(org_id, invoices=invoices, usage=usage):
        raise DuplicateSchedule(existing)


def create_schedule(user: User, *, invoices: bool, usage: bool, now: datetime) -> Schedule:
    """【自动更新】: a schedule for the user's org, the user as creator.

    A schedule covering any of the same data (发票明细 or 用途状态) already in the org is refused
    with DuplicateSchedule naming it: two would download the same months twice.
    """
    with write_transaction():
        check_new_schedule(user.org_id, invoices=invoices, usage=usage)
        schedule = Schedule(org_id=user.org_id, created_by_id=user.id, invoices=invoices, usage=usage, enabled=True,
                            created_at=stored(now), active_since=stored(now))
        db.session.add(schedule)
    return schedule


def set_enabled(schedule: Schedule, enabled: bool, now: datetime) -> None:
    """启用 / 停用; enabling starts counting due months afresh."""
    with write_transaction():
        if enabled and not schedule.enabled:
            schedule.active_since = stored(now)
        schedule.enabled = enabled


def org_schedules(org_id: int) -> list[Schedule]:
    return list(db.session.scalars(select(Schedule).filter_by(org_id=org_id).order_by(Schedule.id)))


def _companies_by_channel(org_id: int, users: tuple[User, ...] = ()) -> dict[str, list[Company]]:
    """The org's companies with a usable channel (乐企 where configured, else RPA), limited to those
    every one of `users` is granted (a run acts as the schedule's creator, and as whoever runs it)."""
    groups: dict[str, list[Company]] = {}
    query = select(Company).filter_by(org_id=org_id).order_by(Company.tax_id)
    for user in users:
        query = query.where(Company.id.in_(permitted_company_ids(user)))
    for company in db.session.scalars(query):
        if channel := usable_channel(company):
            groups.setdefault(channel, []).append(company)
    return groups


class _NothingToRun(Exception):
    """No company of the org has a usable channel: nothing to record."""


def start_run(schedule: Schedule, period: str, trigger: str, now: datetime,
              actor: User | None = None) -> ScheduleRun | None:
    """Record the run and create its batches in one transaction; None when the period already ran.

    Invoice batches come first; usage subtasks wait for the same month's invoices by themselves.
    """
    subtasks = []
    try:
        with write_transaction():
            run = ScheduleRun(schedule_id=schedule.id, period=period, trigger=trigger,
                              started_at=stored(now))
            db.session.add(run)
            db.session.flush()
            batches = []
            for data_type in [t for t, flag in ((DataType.INVOICES, schedule.invoices),
                                                (DataType.USAGE, schedule.usage)) if flag]:
                for channel, companies in _companies_by_channel(schedule.org_id, _acting(schedule, actor)).items():
                    made, queued = add_download_batches(schedule.created_by, companies, channel=channel,
                                                        data_type=data_type, months=[period],
                                                        type_codes=list(DOWNLOAD_KINDS),
                                                        creator_name=f"自动更新计划 #{schedule.id}")
                    batches += made
                    subtasks += queued
            if not batches:
                raise _NothingToRun()
            run.batch_nos = [b.batch_no for b in batches]
    except IntegrityError:
        db.session.rollback()
        return None
    except _NothingToRun:  # rolled back: the month stays due until a company gets a channel
        return ScheduleRun(schedule_id=schedule.id, period=period, trigger=trigger, started_at=stored(now),
                           batch_nos=[], message="本组织没有配置乐企或电子税局账号的企业，未创建任务，配置后将自动执行")
    background().enqueue_subtasks(subtasks)
    audit.record("schedule.run", f"计划 #{schedule.id}", actor=actor, org_id=schedule.org_id, period=period,
                 trigger=trigger, creator=schedule.created_by.username, batches=run.batch_nos)
    return run


def _acting(schedule: Schedule, actor: User | None) -> tuple[User, ...]:
    """Whose grants limit a run: the creator's, and a manual runner's too."""
    return (schedule.created_by,) + ((actor,) if actor else ())


def run_due(now: datetime, schedule_ids: list[int] | None = None) -> list[ScheduleRun]:
    """What the scheduler does at `now`: start every due run not yet started (catching up)."""
    query = select(Schedule).filter_by(enabled=True).order_by(Schedule.id)
    if schedule_ids is not None:
        query = query.where(Schedule.id.in_(schedule_ids))
    started = []
    for schedule in db.session.scalars(query).all():
        done = {r.period for r in schedule.runs}
        due = due_periods(schedule, now)
        for period in due:
            trigger = RunTrigger.DUE if period == due[-1] else RunTrigger.CATCH_UP
            run = None if period in done else start_run(schedule, period, trigger, now)
            if run and run.batch_nos:
                started.append(run)
    return started


def run_now(schedule: Schedule, now: datetime, actor: User | None = None) -> ScheduleRun | None:
    """运行一次: last month's run, now (None when it already ran: never doubled)."""
    current = local(now, zone(schedule))
    return start_run(schedule, previous_month(month_of(current)), RunTrigger.MANUAL, now, actor)


def run_json(run: ScheduleRun) -> dict:
    """A run as the CLI and the automation page show it."""
    return {"schedule_id": run.schedule_id, "period": run.period, "trigger": run.trigger,
            "started_at": run.started_at.isoformat(sep=" ", timespec="seconds"),
            "batches": run.batch_nos, "message": run.message}


def schedule_json(schedule: Schedule, now: datetime) -> dict:
    """A schedule with what it covers, its next run and last runs, for the CLI and the page."""
    upcoming = next_run(schedule, now)
    return {"id": schedule.id, "job_id": job_id(schedule), "description": job_description(schedule),
            "what": what(schedule), "invoices": schedule.invoices, "usage": schedule.usage,
            "enabled": schedule.enabled, "creator": schedule.created_by.username,
            "companies": {channel: [c.tax_id for c in cs]
                          for channel, cs in _companies_by_channel(schedule.org_id, (schedule.created_by,)).items()},
            "next_run": upcoming.isoformat(timespec="minutes") if upcoming else None,
            "next_run_label": upcoming.strftime("%Y-%m-%d %H:%M") if upcoming else "—",  # org-local, as users read it
            "last_runs": [run_json(r) for r in schedule.runs[:6]]}
