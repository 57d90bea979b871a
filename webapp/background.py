"""Background work as the domain sees it: batches and subtasks are handed over, run elsewhere.

The domain never imports RQ or `jobs/`: the composition root (`wsgi.create_app`) plugs an
implementation in at start (`jobs.init_app`), and the domain reaches it through `background()`.
Job ids are derived here from database rows, so the reconciler and the domain agree on them.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from flask import current_app


class Background(Protocol):
    """What the domain needs of the job queue; `jobs.RQBackground` is the one implementation."""

    def enqueue_parse(self, batch, staged: bool = False) -> None:
        """Queue the parse of an uploaded file (after the batch row is committed); `staged`: its months were
        staged at receipt, and the job only makes their subtasks."""

    def stage_upload(self, path, tax_id: str, folder) -> dict:
        """Parse an upload now, in a process of its own, staging its months in `folder`; returns what
        the folder holds, or refuses as the parse does (RowsRejected, SourceRejected)."""

    def enqueue_subtasks(self, subtasks: Iterable) -> None:
        """Queue subtasks (after their rows are committed); an outage leaves them to the reconciler."""

    def stop_job(self, job_id: str | None) -> None:
        """Cancel a queued job or stop a running one (its transaction then rolls back)."""

    def queue_state(self) -> str:
        """"ok", "down", or "disk_full" (Redis refuses writes: its disk is full), for notices and checks."""

    def worker_heartbeat_age(self) -> float | None:
        """Seconds since a worker on the queue last beat (None: no worker)."""

    def scheduler_heartbeat_age(self) -> float | None:
        """Seconds since the scheduler's last cycle (None: not running)."""

    def redis(self):
        """The product's Redis client, where login failures are counted too."""

    def sync_schedules(self) -> None:
        """Make the scheduler's registered jobs match the enabled auto-update schedules."""

    def enqueue_backup(self, run) -> None:
        """Queue a backup run (after its row is committed); a lost one is failed after an hour."""

    def work_until(self, done: Callable[[], bool]) -> None:
        """Block until `done()`; run the queue in this process while no worker is up (CLI --wait)."""


def background() -> Background:
    """The app's background implementation; an app built without one (webapp.create_app alone)
    cannot hand work over, and says so instead of silently dropping it."""
    try:
        return current_app.extensions["background"]
    except KeyError:
        raise RuntimeError("No background queue is plugged in: build the app with wsgi.create_app") from None


def parse_job_id(batch) -> str:
    """The job parsing a batch's upload."""
    return f"batch-{batch.id}-parse"


def backup_job_id(run) -> str:
    """The job writing one backup run's archive."""
    return f"backup-{run.id}"


def subtask_job_id(subtask) -> str:
    """One id per attempt, so a retry never collides with the job that failed."""
    return f"subtask-{subtask.id}-{subtask.attempts}"
