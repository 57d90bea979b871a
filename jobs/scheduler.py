"""The scheduler process: rq-scheduler runs each auto-update schedule's job; the database decides.

One registered job per schedule (id sim_his_inv_data_import_task_SKDP_S-<id>), every hour: it
calls run_due for its schedule, and the unique (schedule, period) row makes the 5th-of-month
run happen exactly once, in the org's time zone, caught up if the server was down on the 5th.
At start missed runs are caught up; on every cycle the registered jobs are reconciled with the
database and lost or waiting subtasks are put back in the queue (jobs.reconciler).
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from redis.exceptions import RedisError
from rq_scheduler import Scheduler

from jobs import queue, reconciler
from webapp import autoupdate
from webapp.accounts import audit
from webapp.backup import runs as backup_runs
from webapp.batches import refused, retention
from webapp.clock import now
from webapp.extensions import db
from webapp.health import alerts
from webapp.models import Schedule

log = logging.getLogger(__name__)
CRON = "7 * * * *"  # hourly; run_due decides whether the 5th has come in the org's time zone
INTERVAL = reconciler.INTERVAL
HEARTBEAT_TTL = max(60, 3 * INTERVAL)  # seconds the scheduler's heartbeat outlives its last cycle


def run_schedule_job(schedule_id: int) -> list[dict]:
    """The registered job of one schedule: start its due runs, if any."""
    return [autoupdate.run_json(r) for r in autoupdate.run_due(now(), [schedule_id])]


def make_scheduler() -> Scheduler:
    """An rq-scheduler client on our queue (the web and the CLI use it to register at once)."""
    return Scheduler(queue=queue.get_queue(), connection=queue.redis_connection(), interval=INTERVAL)


def register_schedules() -> dict:
    """Bring rq-scheduler's registered jobs in line with the database now (after a change)."""
    return sync_registered_jobs(make_scheduler())


def sync_registered_jobs(scheduler: Scheduler) -> dict:
    """Make rq-scheduler's jobs match the enabled schedules: add new ones, drop deleted or disabled."""
    wanted = {autoupdate.job_id(s): s for s in db.session.scalars(db.select(Schedule).filter_by(enabled=True))}
    present = {job.id for job in scheduler.get_jobs() if job.id.startswith(autoupdate.TASK_CODE)}
    for stale in present - wanted.keys():
        scheduler.cancel(stale)
    for job_id in wanted.keys() - present:
        schedule = wanted[job_id]
        scheduler.cron(CRON, func=run_schedule_job, args=[schedule.id], id=job_id,
                       description=autoupdate.job_description(schedule), queue_name=queue.get_queue().name,
                       timeout=queue.JOB_TIMEOUT)
    db.session.rollback()
    return {"added": len(wanted.keys() - present), "removed": len(present - wanted.keys())}


def catch_up() -> None:
    """At start: runs missed while the scheduler was down are started now (never doubled)."""
    started = autoupdate.run_due(now())
    if started:
        log.info("auto-update runs caught up: %s", [autoupdate.run_json(r) for r in started])
    db.session.remove()
    nightly_backup()
    daily_housekeeping()


@contextmanager
def _step(what: str) -> Iterator[None]:
    """One step of a scheduler cycle: its failure is logged and never stops the cycle, and its session
    ends with it, so the next step (and the next cycle) starts on fresh data."""
    try:
        yield
    except Exception:
        log.exception("%s failed", what)
    finally:
        db.session.remove()


_housekept: dict[str, object] = {}


def daily_housekeeping() -> None:
    """Once a day per scheduler process: audit rows past AUDIT_KEEP_DAYS, the files of batches
    ended FILE_KEEP_DAYS ago and the bad rows of files refused a day ago are removed (README,
    Retention); all are safe to repeat."""
    today = now().date()
    if _housekept.get("day") == today:
        return
    with _step("retention clean-up"):
        removed = {"audit_rows": audit.purge(), "batch_files": retention.remove_ended_batch_files(now()),
                   "refused_files": refused.remove_expired(now())}
        _housekept["day"] = today
        if any(removed.values()):
            log.info("retention: removed %s", removed)


def nightly_backup() -> None:
    """Each cycle: queue the nightly backup once its time has passed (once a night, caught up after a
    stop: webapp/backup/runs.py), and fail runs whose job was lost."""
    with _step("nightly backup check"):
        run = backup_runs.scheduled_cycle(now())
        if run is not None:
            log.info("nightly backup queued: run %s for %s", run.id, run.night)


class ReconcilingScheduler(Scheduler):
    """rq-scheduler whose every cycle first re-syncs the registered jobs with the database (schedules
    added, changed or deleted elsewhere) and puts lost or waiting subtasks back in the queue; it
    leaves a heartbeat for `flask doctor` and mails the admins what is due (webapp.health.alerts)."""

    alerts_at = 0.0  # time.monotonic() of the last look for due alerts
    stopping = False  # set by SIGINT/SIGTERM: run_forever then ends instead of waiting for Redis

    def enqueue_jobs(self):
        with _step("scheduler cycle"):
            queue.scheduler_beat(HEARTBEAT_TTL)
            sync_registered_jobs(self)
            nightly_backup()
            daily_housekeeping()
            result = reconciler.reconcile()
            if any(result.values()):
                log.info("reconciled: %s", result)
        enqueued = super().enqueue_jobs()
        self.mail_alerts()  # last: a slow mail server delays no reconciling and no heartbeat
        return enqueued

    def mail_alerts(self) -> None:
        """Every ALERT_INTERVAL seconds: mail what is due; a failure here never stops the cycle."""
        if time.monotonic() - self.alerts_at < alerts.ALERT_INTERVAL:
            return
        self.alerts_at = time.monotonic()
        with _step("alert mail cycle"):
            result = alerts.send_due()
            if result["sent"]:
                log.info("alerts mailed: %s", result)

    def _install_signal_handlers(self):
        """rq-scheduler's stop on SIGINT/SIGTERM, remembered: run_forever must not wait on after it."""
        super()._install_signal_handlers()
        rq_stop = signal.getsignal(signal.SIGTERM)

        def stop(signum, frame):
            self.stopping = True
            rq_stop(signum, frame)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)

    def register_birth(self):
        """Take over our own key: after a Redis outage it may still hold this process's old birth."""
        self.connection.delete(self.key)
        super().register_birth()


def run_forever() -> None:
    """`flask scheduler`: the process `make run` starts next to the web server and the worker.

    A Redis outage does not end it: it waits for Redis (saying so once) and starts scheduling again.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    catch_up()
    stop = threading.Event()
    while _wait(stop):
        scheduler = ReconcilingScheduler(queue=queue.get_queue(), connection=queue.redis_connection(),
                                         interval=INTERVAL)
        try:
            scheduler.run()
        except RedisError:  # also when Redis stops with us: then its goodbye fails, not us
            if scheduler.stopping:
                return  # else wait for Redis, which says so once


def _wait(stop: threading.Event) -> bool:
    """Wait for Redis with our own signal handlers (rq-scheduler's raise SystemExit when it runs)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return queue.wait_for_redis(stop, log)
