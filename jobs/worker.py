"""The RQ worker: forks per job (so a running job can really be stopped) inside the app context."""
from __future__ import annotations

import logging
import os
import sys

from rq import Worker

from webapp.extensions import db

_fork_hook_installed = False


def _dispose_engine_in_child() -> None:
    """A forked work horse must not share the parent's database connections."""
    db.engine.dispose(close=False)


class _Worker(Worker):
    """RQ's worker, ending without a one-second wait.

    RQ sends UNSUBSCRIBE and then stops its command-channel thread; when the reply arrives first,
    the thread is already blocked on its next read and RQ waits a whole second for it. Every
    `--wait` import and burst worker paid that second (docs/performance.md). Stopping the thread
    first lets the reply wake it to a stopped loop.
    """

    def unsubscribe(self):
        if self.pubsub_thread:
            self.pubsub_thread.stop()
        super().unsubscribe()


def make_worker(queues, connection, quiet: bool = False) -> Worker:
    """A forking worker; the app context pushed by the caller is inherited by each work horse.

    `quiet`: warnings only, on stderr (a CLI command working the queue keeps stdout for its JSON).
    """
    if quiet:
        logger = logging.getLogger("rq.worker")
        if not logger.handlers:
            logger.addHandler(logging.StreamHandler(sys.stderr))
        logger.setLevel(logging.WARNING)
    global _fork_hook_installed
    if not _fork_hook_installed:
        os.register_at_fork(after_in_child=_dispose_engine_in_child)
        _fork_hook_installed = True
    db.session.remove()  # nothing open in the parent when it forks
    return _Worker(queues, connection=connection)
