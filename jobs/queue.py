"""The RQ queue: enqueueing (job ids come from webapp.background), stopping, worker presence, and
what the reconciler needs to tell a live job from a lost or dead one; whether Redis answers."""
from __future__ import annotations

import logging
import os
import socket
import time
from enum import StrEnum
from pathlib import Path

from flask import current_app
from redis import Redis
from redis.exceptions import RedisError, ResponseError
from rq import Queue, Worker
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.utils import now as rq_now

from jobs.redis_server import RedisStartError, ensure_redis
from webapp.background import backup_job_id, parse_job_id

log = logging.getLogger(__name__)
CONNECT_TIMEOUT = 2  # seconds: a page or a job gives up on an unreachable Redis quickly
RECONNECT_MAX = 5  # seconds: the longest pause between two tries to reach Redis again
REACHABLE_CACHE = 3  # seconds a process trusts its last "is the queue up?" answer
JOB_TIMEOUT = 30 * 60  # a month of a big company must finish well inside this
FAILURE_TTL = 7 * 24 * 3600
MONITORING_INTERVAL = 10  # seconds between a busy worker's heartbeats (RQ's default is 30)
WORKER_TTL = 40  # an idle worker beats every WORKER_TTL − 15 s (RQ's default 420 s: `flask doctor` wants a minute)
HEARTBEAT_STALE = 3 * MONITORING_INTERVAL + 5  # a started job silent this long has lost its worker
IN_PROCESS = "in_process"  # a job's meta key: the worker runs it without forking (jobs.worker)


def redis_connection() -> Redis:
    """One Redis client per process; the bundled server is started when REDIS_URL is not set."""
    ext = current_app.extensions
    if "redis" not in ext:
        url = current_app.config.get("REDIS_URL")
        if not url:
            url = ensure_redis(Path(current_app.config["DATA_DIR"]))
        ext["redis"] = Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT)
    return ext["redis"]


class QueueState(StrEnum):
    """What a page, `flask doctor` and /healthz say about the queue: up, down, or refusing writes
    because its disk is full (Redis's MISCONF answer, which must be named as the disk, not as an outage)."""

    OK = "ok"
    DOWN = "down"
    DISK_FULL = "disk_full"


def queue_state() -> QueueState:
    """The queue's Redis now, checked with one write at most every few seconds per process.

    Why: every page shows a notice while the queue is down (batches are still created and run
    when it is back), and a page must not wait on a dead Redis each time it renders. A write, not a
    PING, since a Redis that cannot save (disk full) still answers some reads.
    """
    ext = current_app.extensions
    checked_at, state = ext.get("redis_state", (0.0, QueueState.OK))
    if time.monotonic() - checked_at > REACHABLE_CACHE:
        try:
            redis_connection().set(f"{current_app.config['RQ_QUEUE']}:health:write", "1", ex=60)
            state = QueueState.OK
        except ResponseError as error:
            state = QueueState.DISK_FULL if "MISCONF" in str(error) else QueueState.DOWN
        except (RedisError, OSError, RedisStartError):
            state = QueueState.DOWN
        ext["redis_state"] = (time.monotonic(), state)
    return state


def worker_heartbeat_age() -> float | None:
    """Seconds since the freshest heartbeat of a worker on our queue (None: no worker registered).

    An idle worker beats every WORKER_TTL − 15 seconds (RQ's dequeue timeout), a busy one every
    MONITORING_INTERVAL; RQ's clock (real UTC) is used, as for job heartbeats.
    """
    beats = [w.last_heartbeat for w in Worker.all(queue=get_queue()) if w.last_heartbeat and _worker_alive(w)]
    return (rq_now() - max(beats)).total_seconds() if beats else None


def _scheduler_key() -> str:
    """The key the scheduler process refreshes every cycle; it expires when the process stops."""
    return f"{current_app.config['RQ_QUEUE']}:scheduler:heartbeat"


def scheduler_beat(ttl: int) -> None:
    """The scheduler is alive now; the key lapses `ttl` seconds after its last cycle."""
    redis_connection().set(_scheduler_key(), str(time.time()), ex=ttl)


def scheduler_heartbeat_age() -> float | None:
    """Seconds since the scheduler's last cycle (None: no heartbeat within its TTL)."""
    value = redis_connection().get(_scheduler_key())
    return max(0.0, time.time() - float(value)) if value else None


def wait_for_redis(stop, logger: logging.Logger) -> bool:
    """Block until the queue's Redis answers (True) or ``stop`` is set (False).

    Why: the worker and the scheduler must outlive a Redis outage (a restart, a crash) instead of
    exiting; they wait with a growing pause (at most RECONNECT_MAX seconds) and say so once.
    """
    delay, said = 0.5, False
    while not stop.is_set():
        try:
            redis_connection().ping()
        except (RedisError, OSError, RedisStartError) as error:
            if not said:
                what = ("Redis 因磁盘空间不足无法写入 / Redis cannot write: the disk is full"
                        if "MISCONF" in str(error) else "队列 Redis 不可达 / Redis unreachable")
                logger.warning("%s，等待其恢复 / waiting for it: %s", what, error, extra={"redis_outage": True})
                said = True
            stop.wait(delay)
            delay = min(delay * 2, RECONNECT_MAX)
            continue
        if said:
            logger.warning("队列 Redis 已恢复 / Redis reachable again, resuming")
        return True
    return False


def get_queue() -> Queue:
    """The product's one queue, on this process's Redis connection."""
    return Queue(current_app.config["RQ_QUEUE"], connection=redis_connection())


def _enqueue(func: str, arg: int, job_id: str, recoveries: int = 0, in_process: bool = False) -> None:
    """Queue a job; if Redis is unreachable the row stays pending and the reconciler queues it later.

    ``recoveries`` (kept in the job's meta) counts how often the reconciler re-queued this unit of
    work after its process died, so that a job that kills its process every time is given up.
    ``in_process``: the worker runs it itself, without a horse (jobs.worker.QueueWorker.execute_job).
    """
    meta = {"recoveries": recoveries, **({IN_PROCESS: True} if in_process else {})}
    try:
        get_queue().enqueue(func, arg, job_id=job_id, job_timeout=JOB_TIMEOUT, failure_ttl=FAILURE_TTL,
                            result_ttl=3600, description=job_id, meta=meta)
    except (RedisError, RedisStartError):
        log.warning("Redis unavailable; %s will be queued by the reconciler", job_id, exc_info=True)


def enqueue_parse(batch, recoveries: int = 0, staged: bool = False) -> None:
    """Queue the parse of an uploaded file; call after the batch row is committed. `staged`: its months
    were staged at receipt, so the job only makes their subtasks, a few milliseconds of database work
    that the worker runs itself instead of forking a horse for it (docs/performance.md, The live import)."""
    _enqueue("jobs.tasks.parse_upload", batch.id, parse_job_id(batch), recoveries, in_process=staged)


def enqueue_batch_figures(batch) -> None:
    """Queue the figures of a batch that has ended (jobs.tasks.batch_figures); the worker runs it itself:
    database work only, and a 终止 has nothing left to stop by then."""
    _enqueue("jobs.tasks.batch_figures", batch.id, f"batch-{batch.id}-figures", in_process=True)


def enqueue_backup(run) -> None:
    """Queue a backup run's job (jobs.backups)."""
    _enqueue("jobs.backups.run_backup_job", run.id, backup_job_id(run))


def enqueue_subtask(subtask, recoveries: int = 0) -> None:
    """Queue one subtask; call after its row is committed so the worker finds it."""
    _enqueue("jobs.tasks.run_subtask", subtask.id, subtask.job_id, recoveries)


def enqueue_subtasks(subtasks, in_process: bool = False) -> None:
    """Queue many subtasks in one Redis round trip (a five-year plan is 1,200 of them; one
    `enqueue` each took about a second). Call after their rows are committed. `in_process`: the
    worker runs them itself, without a horse (jobs.worker.QueueWorker.execute_job)."""
    if not subtasks:
        return
    queue = get_queue()
    meta = {IN_PROCESS: True} if in_process else None
    jobs = [Queue.prepare_data("jobs.tasks.run_subtask", (s.id,), job_id=s.job_id, timeout=JOB_TIMEOUT,
                               failure_ttl=FAILURE_TTL, result_ttl=3600, description=s.job_id, meta=meta)
            for s in subtasks]
    try:
        with redis_connection().pipeline() as pipe:
            queue.enqueue_many(jobs, pipeline=pipe)
            pipe.execute()
    except RedisError:
        log.warning("Redis unavailable; %d subtasks will be queued by the reconciler", len(subtasks), exc_info=True)



def job_fate(job_id: str | None) -> tuple[str, int]:
    """What became of a job, and how often its work was already recovered (its meta says).

    "alive": in its queue, or started by a worker that still sends heartbeats. "missing": Redis has no
    such job (never queued, or Redis lost its data). "ended": it returned (finished), was
    cancelled, or says "queued" but is in no queue (a worker popped it as Redis went down). "died": it failed, was
    stopped, or is "started" but its worker stopped sending heartbeats, i.e. the worker and its job process were killed
    (SIGKILL, out of memory, power). The heartbeat test is what finds a killed job within a minute instead of RQ's
    ten-minute cleanup.
    """
    if not job_id:
        return "missing", 0
    try:
        job = Job.fetch(job_id, connection=redis_connection())
        status = job.get_status(refresh=True)
    except NoSuchJobError:
        return "missing", 0
    recoveries = int(job.meta.get("recoveries", 0))
    if status == "queued" and job.connection.lpos(Queue(job.origin, connection=job.connection).key, job.id) is None:
        return "ended", recoveries  # taken off the queue by a worker that lost Redis before starting it
    if status in ("queued", "deferred", "scheduled"):
        return "alive", recoveries
    if status == "started":
        beat = job.last_heartbeat or job.started_at
        # RQ's own clock (real UTC), not webapp.clock: heartbeats are written in real time
        silent = beat is None or (rq_now() - beat).total_seconds() > HEARTBEAT_STALE
        return ("died" if silent or _worker_gone(job) else "alive"), recoveries
    return ("ended" if status in ("finished", "canceled") else "died"), recoveries


def _worker_gone(job: Job) -> bool:
    """Whether the worker that started a job is gone (deregistered, or its process killed)."""
    if not job.worker_name:
        return False
    worker = Worker.find_by_key(Worker.redis_worker_namespace_prefix + job.worker_name, connection=job.connection)
    return worker is None or not _worker_alive(worker)


def _worker_alive(worker: Worker) -> bool:
    """Whether a registered worker's process still exists, as far as this machine can tell.

    Why: a SIGKILLed worker stays registered in Redis for minutes (its key's TTL); on the worker's
    own machine its missing process shows it dead at once. Elsewhere we trust the registration.
    """
    if worker.hostname != socket.gethostname() or not worker.pid:
        return True
    try:
        os.kill(worker.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def forget_job(job_id: str | None) -> None:
    """Delete a lost job and its registry entries, so its id can be queued again cleanly."""
    if not job_id:
        return
    try:
        Job.fetch(job_id, connection=redis_connection()).delete()
    except NoSuchJobError:
        pass


def stop_job(job_id: str | None) -> None:
    """Cancel a queued job, or really stop a running one (its transaction then rolls back)."""
    if not job_id:
        return
    connection = redis_connection()
    try:
        job = Job.fetch(job_id, connection=connection)
    except (NoSuchJobError, RedisError):  # no job, or no Redis: the database row decides anyway
        return
    status = job.get_status()
    try:
        if status == "started":
            send_stop_job_command(connection, job_id)
        elif status in ("queued", "deferred", "scheduled"):
            job.cancel()
    except (InvalidJobOperation, RedisError):
        pass  # it finished meanwhile, or Redis went away: a job that runs on cannot commit (see tasks)


def workers_running() -> bool:
    """Whether any worker listens on our queue (else `--wait` works the queue itself)."""
    return any(_worker_alive(worker) for worker in Worker.all(queue=get_queue()))
