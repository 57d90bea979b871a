"""The reconciler: the database is the truth, Redis only the queue; put the two back in step."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select, update

from webapp.batches import refresh_batch
from webapp.clock import now as clock_now
from webapp.extensions import db
from webapp.models import Batch, Subtask
from webapp.transactions import write_transaction

from . import queue
from .tasks import release_waiting

log = logging.getLogger(__name__)
INTERVAL = 15  # seconds between the scheduler's cycles
GRACE = timedelta(seconds=60)  # a job just enqueued or just started is left alone
LOST = ("failed", "stopped", "canceled", "finished", None)


def reconcile(now: datetime | None = None) -> dict:
    """Re-enqueue pending work Redis lost; fail running subtasks whose worker died (retryable);
    release waiting subtasks whose time has come (乐企 quota, usage after invoices)."""
    now = now or clock_now()
    requeued = failed = 0
    db.session.rollback()
    pending = db.session.scalars(select(Subtask).where(Subtask.status == "pending")).all()
    for subtask in pending:
        if queue.job_state(subtask.job_id) in LOST:
            queue.enqueue_subtask(subtask)
            requeued += 1
    for batch in db.session.scalars(select(Batch).where(Batch.status == "preprocessing")).all():
        if queue.job_state(queue.parse_job_id(batch)) in LOST and batch.created_at < now - GRACE:
            queue.enqueue_parse(batch)
            requeued += 1
    running = db.session.scalars(select(Subtask).where(Subtask.status == "running")).all()
    for subtask in running:
        if queue.job_state(subtask.job_id) in LOST and (subtask.started_at or now) < now - GRACE:
            with write_transaction():
                db.session.execute(update(Subtask).where(Subtask.id == subtask.id, Subtask.status == "running").values(
                    status="failed", error="执行进程意外中断，请点击重试", finished_at=now))
                refresh_batch(subtask.batch_id)
            failed += 1
    db.session.rollback()
    released = release_waiting(now)
    for subtask in released:
        queue.enqueue_subtask(subtask)
    return {"requeued": requeued, "failed": failed, "released": len(released)}
