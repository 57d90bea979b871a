"""The `flask worker` and `flask scheduler` commands: background processes of `make run` (supervisord.conf)."""
from __future__ import annotations

import click
from flask.cli import with_appcontext


@click.command("worker")
@with_appcontext
@click.option("--burst", is_flag=True, help="stop when the queue is empty")
def worker_command(burst):
    """An RQ worker for the product's queue, inside the app context; it outlives Redis outages."""
    from jobs.worker import run_forever  # deferred: RQ costs every other command start-up time

    run_forever(burst=burst)


@click.command("scheduler")
@with_appcontext
def scheduler_command():
    """The scheduler process: monthly auto-update runs, catch-up, and re-enqueueing lost or waiting work."""
    from jobs.scheduler import run_forever  # deferred: RQ Scheduler costs every other command start-up time

    run_forever()
