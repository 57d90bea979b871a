"""`make run`: supervisord (supervisord.conf, started by `python -m jobs.supervision` as the Makefile does)
keeps web, the bundled Redis, the worker and the scheduler up in one terminal: each process killed comes
back within seconds and the product goes on working; a process that keeps dying is given up on and
reported in DATA_DIR/run/processes.json; Ctrl-C stops everything, and so does killing supervisord."""

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import wsgi
from jobs.cli import BACKGROUND_NICE
from jobs.lifeline import parent_of
from jobs.supervision import MAX_RESTARTS_PER_HOUR, record
from tests.conftest import DEMO_TAX_ID, SAMPLES
from tests.servers import Output, Product, alive, processes_of, wait_for

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HTMX_SHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"  # htmx.org 2.0.11
PROGRAMS = ("web", "redis", "worker", "scheduler")
SAMPLE = SAMPLES / "etax-export-2024.xlsx"
BACK_WITHIN = 30  # seconds: the bound for a killed process to serve again


def get(url: str, timeout: float = 10) -> tuple[int, str]:
    """Status and body of a GET, the way a browser would see it."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read().decode()


def answers(url: str) -> bool:
    """GET answers 200 (False while nothing listens)."""
    try:
        return get(url, 5)[0] == 200
    except OSError:
        return False


@pytest.fixture
def product():
    """A started product; everything of it stopped afterwards whatever the test did."""
    running = Product()
    try:
        running.start()
        yield running
    finally:
        running.close()


def test_each_killed_process_comes_back_and_a_batch_still_finishes_then_ctrl_c_stops_all(product):
    """(docs/deploy.md, One host) SIGKILL the worker, the web server, the scheduler and the redis program in turn, then
    the redis server: each is back within seconds (supervisord; the redis program for its server), a
    file imported afterwards is synchronised, processes.json counts the restarts; Ctrl-C then stops
    every process, each on SIGTERM."""
    login = f"http://127.0.0.1:{product.port}/login"
    product.output.wait_for("worker    | ")  # each program's output prefixed by its name
    product.output.wait_for("Listening on invoice-sync")
    wait_for(lambda: all(product.running(name, 0) for name in PROGRAMS), 30, "all four RUNNING in processes.json")
    back_in = {}
    for name in ("worker", "web", "scheduler", "redis"):
        first, killed_at = product.pid(name), time.time()
        os.kill(first, signal.SIGKILL)
        wait_for(lambda name=name, at=killed_at: product.running(name, at), BACK_WITHIN, f"{name} RUNNING again")
        back_in[name] = round(time.time() - killed_at, 1)
        assert product.pid(name) != first and alive(product.pid(name))
    wait_for(lambda: answers(login), BACK_WITHIN, "the web answering again")
    assert all(len(product.states()[name]["restarts"]) == 1 for name in PROGRAMS)
    os.kill(int((product.data / "redis" / "redis.pid").read_text()), signal.SIGKILL)  # the server itself
    wait_for(lambda: sum("bundled Redis started" in line for line in product.output.lines) == 2, BACK_WITHIN,
             "the redis program starting the server again")

    batch_no = json.loads(product.flask("import-file", "--tax-id", DEMO_TAX_ID, "--file", str(SAMPLE), "--as",
                                        "caiwu"))["batch_no"]
    finished = wait_for(lambda: (status := json.loads(product.flask("batch", "show", batch_no))["status"])
                        in ("succeeded", "partial", "failed") and status, 90, "the batch finishing")
    assert finished == "succeeded", product.output.text()
    print(f"back within (s): {back_in}")

    pids = [product.pid(name) for name in PROGRAMS]
    product.proc.send_signal(signal.SIGINT)  # Ctrl-C in the terminal reaches supervisord
    assert product.proc.wait(timeout=60) == 0
    wait_for(lambda: not product.leftovers(), 10, "every process of the install gone")
    assert not [pid for pid in pids if alive(pid)]
    stopped = [line for line in product.output.lines if " stopped: " in line]
    assert len(stopped) == 5 and all("(exit status 0)" in line for line in stopped), product.output.text()


def test_the_web_answers_from_several_processes_and_the_background_yields_the_cpu(product):
    """(docs/deploy.md, The web server) The web serves its one port from wsgi.PROCESSES processes; the worker and
    the scheduler run below its CPU priority (jobs.cli.BACKGROUND_NICE). A server process that dies takes
    the web down whole, and supervisord starts it again."""
    login = f"http://127.0.0.1:{product.port}/login"
    wait_for(lambda: all(product.running(name, 0) for name in PROGRAMS), 30, "all four RUNNING in processes.json")
    web = product.pid("web")
    servers = [pid for pid, cmd in processes_of(product.data) if parent_of(pid) == web and "lifeline" not in cmd]
    assert len(servers) == wsgi.PROCESSES and answers(login)
    own = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, web) == own
    for name in ("worker", "scheduler"):  # each lowers its own priority once its command starts (jobs.cli)
        wait_for(lambda name=name: os.getpriority(os.PRIO_PROCESS, product.pid(name)) == max(own, BACKGROUND_NICE),
                 30, f"{name} at nice {BACKGROUND_NICE}")
    killed_at = time.time()
    os.kill(servers[0], signal.SIGKILL)
    wait_for(lambda: product.running("web", killed_at), BACK_WITHIN, "web RUNNING again")
    assert not alive(servers[1]) and product.pid("web") != web
    wait_for(lambda: answers(login), BACK_WITHIN, "the web answering again")


def test_supervisord_killed_with_sigkill_leaves_nothing_running(product):
    """supervisord SIGKILLed cannot stop anything itself: each program notices (jobs.lifeline) and stops,
    so nothing keeps the port, the queue or the bundled Redis."""
    product.output.wait_for("Listening on invoice-sync")
    wait_for(lambda: all(product.running(name, 0) for name in PROGRAMS), 30, "all four RUNNING")
    assert (product.data / "run" / "supervisor.sock").exists(), "supervisord's files are in DATA_DIR/run"
    assert len(product.leftovers()) >= 6  # supervisord, listener, four programs (and their keepers)
    os.kill(product.proc.pid, signal.SIGKILL)
    product.proc.wait(10)
    wait_for(lambda: not product.leftovers(), 40, "no process of the install left")
    with pytest.raises(OSError):
        get(f"http://127.0.0.1:{product.port}/login", 3)
    product.start()  # the next `make run` meets no stale pid file, socket or process
    assert get(f"http://127.0.0.1:{product.port}/login")[0] == 200


def test_a_process_that_keeps_dying_ends_fatal_and_is_reported():
    """The web cannot listen (its port is taken): supervisord retries it a few times with a growing pause,
    then gives up (FATAL) instead of looping; processes.json says so with each death, and the rest runs."""
    running = Product()
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", running.port))
        taken.listen()
        try:
            running.proc = subprocess.Popen([sys.executable, "-m", "jobs.supervision"], cwd=ROOT, env=running.env,
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                            start_new_session=True)
            running.output = Output(running.proc.stdout)
            running.output.wait_for("gave up: web entered FATAL state", 60)
            web = wait_for(lambda: running.states().get("web", {}).get("state") == "FATAL"
                           and running.states()["web"], 10, "web FATAL in processes.json")
            assert len(web["restarts"]) >= 4, web  # the first start and each retry died
            assert all(abs(moment - time.time()) < 120 for moment in web["restarts"])
            running.output.wait_for("web 多次启动失败，已放弃")
            assert running.running("worker", 0) and running.running("scheduler", 0)
        finally:
            running.close()


def test_a_program_restarted_too_often_in_an_hour_is_given_up():
    """supervisord retries only quick deaths; a process dying after each minute of work would be
    restarted forever: past MAX_RESTARTS_PER_HOUR exits in an hour the listener stops it (FATAL)."""
    processes, start = {}, 1_000_000.0
    for minute in range(MAX_RESTARTS_PER_HOUR):
        assert not record(processes, "worker", "RUNNING", start + minute * 60)
        assert not record(processes, "worker", "EXITED", start + minute * 60 + 30)
    assert record(processes, "worker", "EXITED", start + 3000)
    assert len(processes["worker"]["restarts"]) == MAX_RESTARTS_PER_HOUR + 1
    processes["worker"]["given_up"] = True
    record(processes, "worker", "STOPPED", start + 3001)
    assert processes["worker"]["state"] == "FATAL"
    record(processes, "worker", "RUNNING", start + 89_000)  # started again by hand the next day
    record(processes, "worker", "EXITED", start + 90_000)  # the old exits are forgotten
    assert len(processes["worker"]["restarts"]) == 1


def test_half_open_connections_do_not_stall_the_web_and_idle_ones_are_closed():
    """(docs/deploy.md, The web server) 200 connections that send half a request and wait (no login needed) must not
    stop /login for everyone; a connection silent longer than the read timeout is closed by the server."""
    running = Product(WEB_IDLE_TIMEOUT="4")
    try:
        running.start()
        login = f"http://127.0.0.1:{running.port}/login"
        assert answers(login)
        idle, sent = [], 0.0
        for _ in range(200):
            conn = socket.create_connection(("127.0.0.1", running.port), timeout=30)
            conn.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n")
            idle.append(conn)
            sent = sent or time.monotonic()  # when the first one fell silent
        for _ in range(5):
            started = time.monotonic()
            assert get(login, 2)[0] == 200
            assert time.monotonic() - started < 2
        assert idle[0].recv(1024) == b"", "the server closed the silent connection"
        assert 4 <= time.monotonic() - sent < 15, "after the read timeout (4 s here), not before"
        for conn in idle:
            conn.close()
    finally:
        running.close()


def test_supervisord_conf_names_the_products_processes():
    """supervisord.conf is the one list of what `make run` starts, each through jobs.lifeline."""
    config = (ROOT / "supervisord.conf").read_text()
    assert re.findall(r"^\[program:(\w+)\]", config, re.M) == ["redis", "web", "worker", "scheduler"]
    assert "$(PY) -m jobs.supervision" in (ROOT / "Makefile").read_text()
    assert not (ROOT / "Procfile").exists() and "honcho" not in (ROOT / "pyproject.toml").read_text()
    commands = re.findall(r"^\[program:\w+\]\ncommand = (.*)$", config, re.M)
    assert len(commands) == 4 and all(c.startswith("python -m jobs.lifeline ") for c in commands)


def test_htmx_is_the_pinned_release_committed_in_the_repository():
    """htmx 2.0.11 ships with the code (nothing fetched at install, no npm); its bytes are checked."""
    script = ROOT / "webapp" / "static" / "vendor" / "htmx.min.js"
    assert hashlib.sha256(script.read_bytes()).hexdigest() == HTMX_SHA256
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", str(script)], cwd=ROOT, capture_output=True)
    assert tracked.returncode == 0, "htmx.min.js must be committed, not ignored"
    assert "fetch_htmx" not in (ROOT / "Makefile").read_text()


@pytest.mark.parametrize("args",
                         [["user", "add", "wang", "--password", "secret123"],
                          ["pool", "stats", "--tax-id", "91330100MA2H4K7Q1X"],
                                  ["seed-demo"], ["autoupdate", "run-due"]])
def test_a_command_on_an_unmigrated_database_says_what_to_run(tmp_path, args):
    """No traceback: the operator is told, in Chinese and English, to migrate first."""
    env = {**os.environ, "DATA_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    result = subprocess.run([str(BIN / "flask"), "--app", "wsgi", *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "flask --app wsgi db upgrade" in result.stderr and "make install" in result.stderr
    assert "数据库尚未初始化" in result.stderr and "has not been migrated" in result.stderr
