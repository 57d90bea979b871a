"""The `flask worker` and `flask scheduler` commands: background processes of `make run` (supervisord.conf)."""
from __future__ import annotations

import os

import click
from flask.cli import with_appcontext

BACKGROUND_NICE = 10  # the worker's and the scheduler's CPU priority, below the web server's (0)


def yield_to_the_web() -> None:
    """Run this process (and what it forks: a job's work horse) at BACKGROUND_NICE, never raising a
    priority set lower outside. Why: on a server the web shares with imports, a page a user waits for
    gets the CPU first, and the background work takes what the pages leave (docs/performance.md,
    Pages while batches run)."""
    now = os.getpriority(os.PRIO_PROCESS, 0)
    os.setpriority(os.PRIO_PROCESS, 0, max(now, BACKGROUND_NICE))


@click.command("worker")
@with_appcontext
@click.option("--burst", is_flag=True, help="stop when the queue is empty")
def worker_command(burst):
    """An RQ worker for the product's queue, inside the app context; it outlives Redis outages."""
    from jobs.worker import run_forever  # deferred: RQ costs every other command start-up time

    yield_to_the_web()
    run_forever(burst=burst)


@click.command("scheduler")
@with_appcontext
def scheduler_command():
    """The scheduler process: monthly auto-update runs, catch-up, and re-enqueueing lost or waiting work."""
    from jobs.scheduler import run_forever  # deferred: RQ Scheduler costs every other command start-up time

    yield_to_the_web()
    run_forever()
