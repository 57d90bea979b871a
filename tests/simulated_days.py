"""Work run over simulated days with a controlled clock, for the bulk plan's test
(tests/test_bulk_plan.py) and its bench step (tests/bench.py)."""
from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta

from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import Batch, Subtask
from webapp.statuses import BatchStatus, SubtaskStatus


def run_days(app, day: datetime, work: Callable[[], None], bureau_today: Callable[[date], None],
             max_days: int) -> tuple[datetime, int]:
    """From `day`, move the clock to each next release of waiting work and run that day (the bureau's
    date and ours move on, the scheduler releases, `work` empties the queue), until every batch has
    finished or `max_days` days ran; returns the last day and the number of days run."""
    from jobs.reconciler import reconcile

    days = 0
    while unfinished(app) and days < max_days:
        day = _next_release(app, day)
        app.config["CLOCK_NOW"] = day
        bureau_today(day.date())
        with app.app_context():
            reconcile(day)
            db.session.remove()
        work()
        days += 1
    return day, days


def unfinished(app) -> list[str]:
    """The statuses of the batches not finished yet."""
    with app.app_context():
        statuses = list(db.session.scalars(select(Batch.status).where(Batch.status.not_in(BatchStatus.FINISHED))))
        db.session.remove()
    return statuses


def _next_release(app, day: datetime) -> datetime:
    """The next moment a waiting subtask may run (days with nothing to release are skipped)."""
    with app.app_context():
        first = db.session.scalar(select(func.min(Subtask.not_before)).where(Subtask.status == SubtaskStatus.WAITING))
        db.session.remove()
    return max(first or day, day) + timedelta(minutes=5)
