"""The reconciler: the database is the truth, Redis only the queue; put the two back in step.

It runs every INTERVAL seconds in the scheduler process. Work Redis lost is queued again; work
whose process died (SIGKILL, out of memory, a crash of the parser) is run again automatically,
since every unit of work is idempotent and commits whole, but at most MAX_RECOVERIES times in a
row: then it fails with a clear reason instead of looping forever.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select, update

import settings
from jobs import queue
from jobs.tasks import _fail_batch, release_waiting
from webapp.background import parse_job_id
from webapp.batches import NO_REASON, reason_values, refresh_batch
from webapp.clock import now as clock_now
from webapp.clock import stored
from webapp.extensions import db
from webapp.models import Batch, Subtask
from webapp.statuses import BatchStatus, Reason, SubtaskStatus
from webapp.transactions import write_transaction

log = logging.getLogger(__name__)
INTERVAL = settings.reconcile_interval()  # seconds between the scheduler's cycles (RECONCILE_INTERVAL)
GRACE = timedelta(seconds=20)  # a job just enqueued, or running while Redis lost it, is left alone
MAX_RECOVERIES = 2  # a unit of work whose process died runs at most 1 + MAX_RECOVERIES times
GAVE_UP = reason_values(Reason.PROCESS_DIED, times=MAX_RECOVERIES + 1, retries=MAX_RECOVERIES)
PARSE_GAVE_UP = reason_values(Reason.PARSE_CRASHED, times=MAX_RECOVERIES + 1)


def reconcile(now: datetime | None = None) -> dict:
    """Re-enqueue pending work Redis lost; run again (bounded) the work whose process died;
    release waiting subtasks whose time has come (乐企 quota, usage after invoices)."""
    now = stored(now) if now else clock_now()
    counts = {"requeued": 0, "recovered": 0, "failed": 0}
    db.session.rollback()
    for subtask in db.session.scalars(select(Subtask).where(Subtask.status == SubtaskStatus.PENDING)).all():
        _pending_subtask(subtask, counts)
    for batch in db.session.scalars(select(Batch).where(Batch.status == BatchStatus.PREPROCESSING)).all():
        _parse(batch, now, counts)
    for subtask in db.session.scalars(select(Subtask).where(Subtask.status == SubtaskStatus.RUNNING)).all():
        _running_subtask(subtask, now, counts)
    db.session.rollback()
    released = release_waiting(now)
    for subtask in released:
        queue.enqueue_subtask(subtask)
    return {**counts, "released": len(released)}


def _pending_subtask(subtask: Subtask, counts: dict) -> None:
    """A pending subtask must have a live job: queue it again if Redis lost or dropped it."""
    fate, recoveries = queue.job_fate(subtask.job_id)
    if fate == "alive":
        return
    if fate == "died":  # its process died before it could even claim the subtask
        _recover_subtask(subtask, recoveries, counts, from_status=SubtaskStatus.PENDING)
        return
    queue.forget_job(subtask.job_id)
    queue.enqueue_subtask(subtask, recoveries)
    counts["requeued"] += 1


def _running_subtask(subtask: Subtask, now: datetime, counts: dict) -> None:
    """A running subtask whose job died (or vanished a while ago) is run again, boundedly."""
    fate, recoveries = queue.job_fate(subtask.job_id)
    if fate == "alive" or (fate == "missing" and (subtask.started_at or now) >= now - GRACE):
        return
    _recover_subtask(subtask, recoveries, counts, from_status=SubtaskStatus.RUNNING)


def _recover_subtask(subtask: Subtask, recoveries: int, counts: dict, from_status: str) -> None:
    """Put a subtask whose process died back in the queue, or fail it once retries are spent.

    The status guard (``from_status``) keeps a subtask terminated or finished meanwhile as it is;
    a job still running somewhere after all cannot commit, since it finishes only from "running".
    """
    gave_up = recoveries >= MAX_RECOVERIES
    values = ({"status": SubtaskStatus.FAILED, "success": 0, **GAVE_UP, "finished_at": clock_now()} if gave_up
              else {"status": SubtaskStatus.PENDING, "started_at": None, **NO_REASON})
    with write_transaction():
        moved = db.session.execute(update(Subtask).where(Subtask.id == subtask.id, Subtask.status == from_status)
                                   .values(**values)).rowcount
        refresh_batch(subtask.batch_id)
    if not moved:
        return
    queue.forget_job(subtask.job_id)
    if gave_up:
        log.warning("subtask %s failed: its process died %s times", subtask.id, recoveries + 1)
        counts["failed"] += 1
    else:
        log.warning("subtask %s: its process died; running it again (%s)", subtask.id, recoveries + 1)
        queue.enqueue_subtask(subtask, recoveries + 1)
        counts["recovered"] += 1


def _parse(batch: Batch, now: datetime, counts: dict) -> None:
    """A batch still in 数据预处理 needs a live parse job: queue it again, boundedly if it died."""
    job_id = parse_job_id(batch)
    fate, recoveries = queue.job_fate(job_id)
    if fate == "alive" or (fate != "died" and batch.created_at >= now - GRACE):
        return
    queue.forget_job(job_id)
    if fate != "died":
        queue.enqueue_parse(batch, recoveries)
        counts["requeued"] += 1
    elif recoveries >= MAX_RECOVERIES:
        log.warning("parse of batch %s failed: its process died %s times", batch.id, recoveries + 1)
        _fail_batch(batch.id, PARSE_GAVE_UP)
        counts["failed"] += 1
    else:
        queue.enqueue_parse(batch, recoveries + 1)
        counts["recovered"] += 1
