"""`make run`: honcho starts the Procfile (web, bundled Redis, worker, scheduler) in one terminal,
prints the address and logins, survives the bundled Redis dying, and Ctrl-C stops everything."""

import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HTMX_SHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"  # htmx.org 2.0.11


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


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def get(url: str) -> tuple[int, str]:
    """Status and body of a GET, the way a browser would see it."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


@pytest.fixture
def product(monkeypatch):
    """`make run`'s command (honcho with the Procfile) on its own DATA_DIR and port, migrated."""
    data = Path(tempfile.mkdtemp(prefix="run-")) / "data"
    port = free_port()
    env = {**os.environ, "DATA_DIR": str(data), "PORT": str(port), "HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1",
           "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    subprocess.run([str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    proc = subprocess.Popen([str(BIN / "honcho"), "--no-colour", "start", "-f", "Procfile"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output = Output(proc.stdout)
    yield proc, output, data, port
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    for line in output.lines:  # whatever the test left running
        if "started (pid=" in line:
            pid = int(line.rsplit("pid=", 1)[1].rstrip(")"))
            if alive(pid):
                os.killpg(pid, signal.SIGKILL)


def test_make_run_serves_outlives_a_redis_death_and_stops_on_ctrl_c(product):
    proc, output, data, port = product
    output.wait_for(f"is running: http://127.0.0.1:{port}/")
    output.wait_for("Demo logins: admin / admin123")
    assert get(f"http://127.0.0.1:{port}/login")[0] == 200
    pids = {name: int(output.wait_for(f"{name}.1 started (pid=").rsplit("pid=", 1)[1].rstrip(")"))
            for name in ("web", "redis", "worker", "scheduler")}
    output.wait_for("Listening on invoice-sync")
    output.wait_for("Registering birth")

    first_redis = int((data / "redis" / "redis.pid").read_text())
    os.kill(first_redis, signal.SIGKILL)
    output.wait_for("bundled Redis exited")
    output.wait_for("重启")
    restarted = [line for line in output.lines if "bundled Redis started" in line]
    deadline = time.monotonic() + 20
    while len(restarted) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        restarted = [line for line in output.lines if "bundled Redis started" in line]
    assert len(restarted) == 2, "\n".join(output.lines)
    assert get(f"http://127.0.0.1:{port}/login")[0] == 200
    time.sleep(3)  # the worker and the scheduler meet the dead Redis, then the new one
    assert all(alive(pid) for pid in pids.values()), "\n".join(output.lines)
    assert not any(" stopped (rc=" in line for line in output.lines)
    assert sum("could not connect to Redis" in line for line in output.lines) <= 1, "one line per outage"

    os.kill(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal reaches honcho
    assert proc.wait(timeout=20) is not None
    second_redis = int((data / "redis" / "redis.pid").read_text()) if (data / "redis" / "redis.pid").exists() else None
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in [*pids.values(), second_redis or 0]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [name for name, pid in pids.items() if alive(pid)]
    assert not (second_redis and alive(second_redis))
    assert not any("SIGKILL" in line for line in output.lines), "each process stopped on SIGTERM:\n" + "\n".join(
        output.lines)


def test_honcho_killed_with_sigkill_takes_its_children_along(product):
    """README, Run it: honcho SIGKILLed cannot stop anything itself; each process of the Procfile notices
    (jobs.lifeline) and stops, so nothing keeps the port, the queue or the bundled Redis."""
    proc, output, data, port = product
    output.wait_for(f"is running: http://127.0.0.1:{port}/")
    pids = {name: int(output.wait_for(f"{name}.1 started (pid=").rsplit("pid=", 1)[1].rstrip(")"))
            for name in ("web", "redis", "worker", "scheduler")}
    output.wait_for("Registering birth")
    redis_pid = int((data / "redis" / "redis.pid").read_text())
    keepers = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                              text=True).stdout.split()]  # honcho's process per Procfile line
    assert len(keepers) == 4 and all(alive(pid) for pid in [*pids.values(), redis_pid])

    os.kill(proc.pid, signal.SIGKILL)  # only honcho: its children are in sessions of their own
    proc.wait(10)
    deadline = time.monotonic() + 20
    while any(alive(pid) for pid in [*pids.values(), redis_pid, *keepers]) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = {name: pid for name, pid in [*pids.items(), ("redis-server", redis_pid)] if alive(pid)}
    assert not left, f"still running after honcho died: {left}"
    assert not [pid for pid in keepers if alive(pid)]
    with pytest.raises(OSError):
        get(f"http://127.0.0.1:{port}/login")


def test_procfile_names_the_products_processes():
    """The Procfile is the one list of what `make run` starts (web first: honcho gives it PORT)."""
    lines = [line.split(":", 1)[0] for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()]
    assert lines == ["web", "redis", "worker", "scheduler"]
    assert "honcho start -f Procfile" in (ROOT / "Makefile").read_text()
    assert not (ROOT / "webapp" / "runner.py").exists()
    commands = [line.split(":", 1)[1] for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()]
    assert all("exec python -m jobs.lifeline " in command for command in commands), "each dies with honcho"


def test_htmx_is_the_pinned_release_committed_in_the_repository():
    """htmx 2.0.11 ships with the code (nothing fetched at install, no npm); its bytes are checked."""
    script = ROOT / "webapp" / "static" / "vendor" / "htmx.min.js"
    assert hashlib.sha256(script.read_bytes()).hexdigest() == HTMX_SHA256
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", str(script)], cwd=ROOT, capture_output=True)
    assert tracked.returncode == 0, "htmx.min.js must be committed, not ignored"
    assert "fetch_htmx" not in (ROOT / "Makefile").read_text()


@pytest.mark.parametrize("args", [["user", "add", "wang", "--password", "secret123"], ["pool", "stats", "--tax-id", "X"],
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
