"""What a test asks the queue that the product never needs to."""
from __future__ import annotations

from rq.exceptions import NoSuchJobError
from rq.job import Job

from jobs.queue import redis_connection


def job_state(job_id: str | None) -> str | None:
    """The RQ status of a job ('queued', 'started', 'failed', ...), None when Redis has no such job."""
    if not job_id:
        return None
    try:
        return Job.fetch(job_id, connection=redis_connection()).get_status(refresh=True)
    except NoSuchJobError:
        return None
