"""Background work on RQ: the worker, the scheduler and the queue behind `webapp.background`.

Dependencies run one way: jobs use the domain (webapp), the domain never imports jobs.
`init_app` plugs the queue into an app at start (wsgi.create_app). RQ, Redis and the job modules
are imported inside the methods: every `flask …` command and web process would otherwise pay
their import time at start (docs/performance.md, cold start).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable


class RQBackground:
    """`webapp.background.Background` on the RQ queue of jobs/queue.py."""

    def enqueue_parse(self, batch, staged: bool = False) -> None:
        from jobs import queue

        queue.enqueue_parse(batch, staged=staged)

    def stage_upload(self, path, tax_id: str, folder) -> dict:
        from jobs import staging
        from webapp.clock import now

        return staging.stage_upload(path, tax_id, folder, staging.field_limits(), now().date())

    def enqueue_subtasks(self, subtasks: Iterable) -> None:
        from jobs import queue

        queue.enqueue_subtasks(list(subtasks))

    def stop_job(self, job_id: str | None) -> None:
        from jobs import queue

        queue.stop_job(job_id)

    def queue_state(self) -> str:
        from jobs import queue

        return queue.queue_state()

    def worker_heartbeat_age(self) -> float | None:
        from jobs import queue

        return queue.worker_heartbeat_age()

    def scheduler_heartbeat_age(self) -> float | None:
        from jobs import queue

        return queue.scheduler_heartbeat_age()

    def redis(self):
        from jobs import queue

        return queue.redis_connection()

    def sync_schedules(self) -> None:
        from jobs import scheduler

        scheduler.register_schedules()

    def enqueue_backup(self, run) -> None:
        from jobs import queue

        queue.enqueue_backup(run)

    def work_until(self, done: Callable[[], bool]) -> None:
        """Until `done()`: release waits that are over, and work the queue here when no worker is up,
        in this process (no fork per job: docs/performance.md, file import), one job at a time, so what
        is queued after the end (a batch's figures, months already run) is left to the worker."""
        from jobs import queue
        from jobs.tasks import release_waiting
        from jobs.worker import make_worker
        from webapp.clock import now

        while not done():
            queue.enqueue_subtasks(release_waiting(now()))
            if queue.workers_running():
                time.sleep(0.5)
            elif not make_worker([queue.get_queue()], queue.redis_connection(), quiet=True, fork=False).work(
                    burst=True, logging_level="WARNING", max_jobs=1):
                time.sleep(0.2)  # nothing was queued: a job may be on its way from another process


def init_app(app) -> None:
    """Plug the RQ queue into `app` and add the `worker` and `scheduler` commands."""
    from jobs.cli import scheduler_command, worker_command

    app.extensions["background"] = RQBackground()
    app.cli.add_command(worker_command)
    app.cli.add_command(scheduler_command)
