"""The RQ queue: job ids derived from database rows, enqueueing, stopping, worker presence."""
from __future__ import annotations

from pathlib import Path

from flask import current_app
import logging

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job

log = logging.getLogger(__name__)
JOB_TIMEOUT = 30 * 60  # a month of a big company must finish well inside this
FAILURE_TTL = 7 * 24 * 3600


def redis_connection() -> Redis:
    """One Redis client per process; the bundled server is started when REDIS_URL is not set."""
    ext = current_app.extensions
    if "redis" not in ext:
        url = current_app.config.get("REDIS_URL")
        if not url:
            from webapp.redis_server import ensure_redis

            url = ensure_redis(Path(current_app.config["DATA_DIR"]))
        ext["redis"] = Redis.from_url(url)
    return ext["redis"]


def get_queue() -> Queue:
    """The product's one queue, on this process's Redis connection."""
    return Queue(current_app.config["RQ_QUEUE"], connection=redis_connection())


def parse_job_id(batch) -> str:
    return f"batch-{batch.id}-parse"


def subtask_job_id(subtask) -> str:
    """One id per attempt, so a retry never collides with the job that failed."""
    return f"subtask-{subtask.id}-{subtask.attempts}"


def _enqueue(func: str, arg: int, job_id: str) -> None:
    """Queue a job; if Redis is unreachable the row stays pending and the reconciler queues it later."""
    try:
        get_queue().enqueue(func, arg, job_id=job_id, job_timeout=JOB_TIMEOUT, failure_ttl=FAILURE_TTL,
                            result_ttl=3600, description=job_id)
    except RedisError:
        log.warning("Redis unavailable; %s will be queued by the reconciler", job_id, exc_info=True)


def enqueue_parse(batch) -> None:
    """Queue the parse of an uploaded file; call after the batch row is committed."""
    _enqueue("jobs.tasks.parse_upload", batch.id, parse_job_id(batch))


def enqueue_subtask(subtask) -> None:
    """Queue one subtask; call after its row is committed so the worker finds it."""
    _enqueue("jobs.tasks.run_subtask", subtask.id, subtask.job_id)


def enqueue_subtasks(subtasks) -> None:
    """Queue many subtasks in one Redis round trip (a five-year plan is 1,200 of them; one
    `enqueue` each took about a second). Call after their rows are committed."""
    if not subtasks:
        return
    queue = get_queue()
    jobs = [Queue.prepare_data("jobs.tasks.run_subtask", (s.id,), job_id=s.job_id, timeout=JOB_TIMEOUT,
                               failure_ttl=FAILURE_TTL, result_ttl=3600, description=s.job_id) for s in subtasks]
    try:
        with redis_connection().pipeline() as pipe:
            queue.enqueue_many(jobs, pipeline=pipe)
            pipe.execute()
    except RedisError:
        log.warning("Redis unavailable; %d subtasks will be queued by the reconciler", len(subtasks), exc_info=True)


def job_state(job_id: str | None) -> str | None:
    """The RQ status of a job ('queued', 'started', 'failed', ...), None when Redis has no such job."""
    if not job_id:
        return None
    try:
        return Job.fetch(job_id, connection=redis_connection()).get_status(refresh=True)
    except NoSuchJobError:
        return None


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
    return any(Worker.all(queue=get_queue()))
