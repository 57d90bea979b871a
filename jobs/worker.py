"""The RQ worker: forks per job (so a running job can really be stopped) inside the app context;
a file import's months, short database writes of rows staged at receipt, and the job making their
subtasks run in the worker itself (IN_PROCESS in the job's meta: jobs.queue.enqueue_subtasks, enqueue_parse).

``run_forever`` is the ``flask worker`` process: it survives Redis outages (a restarted or crashed
bundled Redis, an external Redis going away) by waiting for Redis and starting a fresh RQ worker,
where a bare RQ worker would exit with "found an unhandled exception, quitting".
"""
from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
from contextlib import contextmanager

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from rq import SimpleWorker, Worker

from jobs import queue
from webapp.extensions import db

log = logging.getLogger(__name__)
_fork_hook_installed = False


def _dispose_engine_in_child() -> None:
    """A forked work horse must not share the parent's database connections."""
    db.engine.dispose(close=False)


class QueueWorker(Worker):
    """RQ's worker, reconnecting within seconds and remembering that it was asked to stop.

    Why ``stopping``: RQ stops an idle worker by raising inside its loop, which looks the same to
    the caller as a Redis outage; ``run_forever`` must tell the two apart.
    """

    max_connection_wait_time = float(queue.RECONNECT_MAX)
    stopping = False
    in_process = False  # the current job runs in this process (no horse)

    def execute_job(self, job, queue_):
        """Fork a work horse for the job, or run it here when its meta says IN_PROCESS.

        Why: a file import's month only writes rows staged at receipt (a tenth of a second for a
        month of 900 invoices); a horse for it cost a fork, a new database connection and cold
        statement caches each time, as much again as the write (docs/performance.md, The live import).
        Such a job cannot be killed from outside: a 终止 lets it end, and it commits nothing once
        its subtask is terminated (as InProcessWorker's jobs)."""
        if not job.meta.get(queue.IN_PROCESS):
            super().execute_job(job, queue_)
            return
        self._horse_pid, self.in_process = 0, True
        try:
            with self._beating(job):
                SimpleWorker.execute_job(self, job, queue_)
        finally:
            self.in_process = False
            db.session.remove()  # the next job starts with a clean session, as a horse would

    @contextmanager
    def _beating(self, job):
        """Keep the job's and the worker's heartbeats going while it runs here, as the parent of a
        horse does, so the reconciler never takes a long month for a dead one (jobs.queue.job_fate)."""
        stop = threading.Event()

        def beat():
            while not stop.wait(self.job_monitoring_interval):
                self.maintain_heartbeats(job)

        beater = threading.Thread(target=beat, name="heartbeat", daemon=True)
        beater.start()
        try:
            yield
        finally:
            stop.set()
            beater.join()

    def get_heartbeat_ttl(self, job) -> int:
        """A job run here has no parent beating for it every few seconds: its whole timeout (RQ's rule
        for jobs run in the worker process), else RQ's rule for a horse."""
        if self.in_process:
            return SimpleWorker.get_heartbeat_ttl(self, job)
        return super().get_heartbeat_ttl(job)

    def kill_horse(self, sig=signal.SIGKILL):
        """Kill the running job's horse; with no horse (a job run here) there is nothing to kill: RQ would
        signal this process's own group."""
        if not self.horse_pid:
            self.log.info("job %s runs in this process: it ends on its own", self.get_current_job_id())
            return
        super().kill_horse(sig)

    def unsubscribe(self):
        """End without a one-second wait: RQ sends UNSUBSCRIBE and then stops its command-channel
        thread; when the reply arrives first the thread is already blocked on its next read and RQ
        waits a whole second for it. Stopping the thread first lets the reply wake it to a stopped
        loop (docs/performance.md)."""
        if self.pubsub_thread:
            self.pubsub_thread.stop()
        super().unsubscribe()

    def request_stop(self, signum, frame):
        """Remember the stop request, then let RQ do its warm shutdown."""
        self.stopping = True
        super().request_stop(signum, frame)


class _OncePerOutage(logging.Filter):
    """Let through the first log line about an unreachable Redis, drop the rest until it is back.

    Why: RQ logs a line (with a traceback) at every reconnection try; an outage of an hour must
    not fill the log.
    """

    down = False

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep other records (they also end the outage); keep the first outage record, bare.

        A record that is about the outage only through its exception (RQ's "found an unhandled
        exception, quitting..." when Redis went away between two jobs) does not say so: it is kept
        bare too, and the outage still waits for a line that names it ("队列 Redis 不可达")."""
        error = record.exc_info[1] if record.exc_info else None
        named = getattr(record, "redis_outage", False) or "could not connect to Redis" in str(record.msg)
        if not (named or isinstance(error, (RedisConnectionError, OSError))):
            self.down = False
            return True
        if self.down:
            return False
        self.down = named
        record.exc_info = record.exc_text = None
        return True


class InProcessWorker(SimpleWorker, QueueWorker):
    """QueueWorker running each job in the calling process, without a fork (SimpleWorker first:
    its `execute_job` must win over the forking one QueueWorker inherits from RQ's Worker).

    Why: a command that works the queue itself (`import-file --wait`) runs one parse and a job per
    month back to back; a fork per job cost each a new database connection, cold statement caches
    and the copied pages, about 40 ms a job (docs/performance.md). The fork is what lets a job be
    stopped from outside; here a stopped (终止) job runs to its end and commits nothing (see kill_horse).
    """

    def kill_horse(self, sig=None):
        """A stop request (终止) kills nothing: RQ would signal this process's whole group, there being
        no horse. The terminated subtask's job finds its row terminated and commits nothing."""
        self.log.info("job %s runs in this process: it ends on its own", self.get_current_job_id())


def make_worker(queues, connection, quiet: bool = False, fork: bool = True) -> Worker:
    """A forking worker; the app context pushed by the caller is inherited by each work horse.

    `quiet`: warnings only, on stderr (a CLI command working the queue keeps stdout for its JSON).
    `fork=False`: jobs run in this process (InProcessWorker), for a command working the queue itself.
    A busy worker beats every MONITORING_INTERVAL seconds, so the reconciler sees a killed job soon;
    an idle one every WORKER_TTL − 15 seconds, so `flask doctor` sees a live worker within a minute.
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
    worker_class = QueueWorker if fork else InProcessWorker
    return worker_class(queues, connection=connection, job_monitoring_interval=queue.MONITORING_INTERVAL,
                        worker_ttl=queue.WORKER_TTL)


def run_forever(burst: bool = False) -> None:
    """`flask worker`: work the queue until SIGINT/SIGTERM, waiting out Redis outages."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    _prepare_to_fork()
    once = _OncePerOutage()
    for name in ("rq.worker", __name__, queue.__name__):
        logging.getLogger(name).addFilter(once)
    stop = threading.Event()
    while _wait(stop):
        worker = None
        try:
            worker = make_worker([queue.get_queue()], queue.redis_connection())
            worker.work(burst=burst)
        except RedisError:  # Redis went away while RQ was registering or tearing down: wait for it
            if not (worker and worker.stopping):
                continue
        if (worker and worker.stopping) or burst:
            return
        stop.wait(1)  # RQ quit on an error of its own: a pause, so a repeating one cannot spin


def _prepare_to_fork() -> None:
    """Import the job functions here, once, and freeze what is loaded: every work horse forks from
    this process, so each then starts with them (a file import's twelve months were twelve imports
    of jobs.tasks), and the horse's garbage collector leaves the frozen objects alone instead of
    touching, so copying, every page of them (docs/performance.md, The live import)."""
    import jobs.tasks  # noqa: F401  (loaded for the horses)

    gc.freeze()


def _wait(stop: threading.Event) -> bool:
    """Wait for Redis with our own signal handlers (RQ's are gone between two workers)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return queue.wait_for_redis(stop, log)
