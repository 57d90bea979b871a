"""The runner's supervision, driven with stand-in children instead of the real product."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from webapp import runner
from webapp.redis_server import run_foreground

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

# A stand-in worker: says hello, and on SIGTERM reports whether Redis still answers (it must: Redis
# stops last), then exits.
WORKER = """
import os, signal, sys, time, redis
def bye(*_):
    alive = redis.Redis.from_url(os.environ["REDIS_URL"]).ping()
    print("redis alive at shutdown:", alive, flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
print("worker ready", flush=True)
while True: time.sleep(1)
"""
STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring SIGTERM", flush=True)
while True: time.sleep(1)
"""
CRASHER = "import time; time.sleep(1.5); print('crashing', flush=True); raise SystemExit(3)"


def free_port() -> int:
    """A port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    """Whether something accepts connections on the port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.3).close()
        return True
    except OSError:
        return False


@pytest.fixture
def ports(monkeypatch):
    """A free web port and a free bundled-Redis port, and no REDIS_URL."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    redis_port = free_port()
    monkeypatch.setenv("BUNDLED_REDIS_PORT", str(redis_port))
    return free_port(), redis_port


def start_runner(tmp_path, web_port, **commands):
    """Run webapp.runner.run in a child process with the given stand-in commands."""
    commands = {"web": [PY, "-m", "http.server", "--bind", "127.0.0.1", str(web_port)], **commands}
    code = (
        "import json, os, sys; from pathlib import Path; from webapp import runner\n"
        "runner.STOP_TIMEOUT = 1\n"
        "sys.exit(runner.run(json.loads(sys.argv[1]), dict(os.environ), Path(sys.argv[2]),"
        " '127.0.0.1', int(sys.argv[3])))\n"
    )
    return subprocess.Popen(
        [PY, "-c", code, json.dumps(commands), str(tmp_path), str(web_port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_for_line(proc, needle, timeout=20) -> list[str]:
    """Read the runner's output until a line contains ``needle``; return the lines read."""
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} not seen in:\n" + "\n".join(lines))


def test_starts_everything_prints_the_url_and_stops_cleanly_on_sigterm(ports, tmp_path):
    web_port, redis_port = ports
    proc = start_runner(tmp_path, web_port, worker=[PY, "-c", WORKER])
    lines = wait_for_line(proc, "Press Ctrl-C")
    assert any(line.startswith("redis     | bundled Redis started") for line in lines)
    assert any(line.startswith("worker    | worker ready") for line in lines)
    text = "\n".join(lines)
    assert f"http://127.0.0.1:{web_port}/" in text
    assert "admin / admin123 (管理员)" in text and "caiwu / caiwu123 (财务)" in text
    assert listening(redis_port) and listening(web_port)

    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, rest
    assert "worker    | redis alive at shutdown: True" in rest
    assert "runner    | stopped" in rest
    assert not listening(web_port) and not listening(redis_port)


def test_sigint_stops_too(ports, tmp_path):
    web_port, redis_port = ports
    proc = start_runner(tmp_path, web_port)
    wait_for_line(proc, "Press Ctrl-C")
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert not listening(web_port) and not listening(redis_port)


def test_a_child_dying_stops_everything_with_an_error(ports, tmp_path):
    web_port, redis_port = ports
    proc = start_runner(tmp_path, web_port, worker=[PY, "-c", CRASHER])
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1, out
    assert "worker    | crashing" in out
    assert "worker failed (exit code 3); everything stopped" in out
    assert not listening(web_port) and not listening(redis_port)


def test_a_child_ignoring_sigterm_is_killed(ports, tmp_path):
    web_port, _ = ports
    proc = start_runner(tmp_path, web_port, scheduler=[PY, "-c", STUBBORN])
    wait_for_line(proc, "Press Ctrl-C")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "scheduler | did not stop within 1 s; killing it" in out


def test_a_running_redis_is_used_and_left_running(ports, tmp_path):
    web_port, redis_port = ports
    server = run_foreground(tmp_path)
    try:
        proc = start_runner(tmp_path, web_port)
        lines = wait_for_line(proc, "Press Ctrl-C")
        assert any("using the Redis already running" in line for line in lines)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert redis.Redis(port=redis_port).ping()
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_children_die_with_a_killed_runner(ports, tmp_path):
    web_port, redis_port = ports
    proc = start_runner(tmp_path, web_port)
    wait_for_line(proc, "Press Ctrl-C")
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while (listening(web_port) or listening(redis_port)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not listening(web_port) and not listening(redis_port)


def test_product_commands_use_this_interpreter():
    commands = runner.product_commands("0.0.0.0", 8000)
    assert commands["web"] == [PY, "-m", "gunicorn", "--workers", "2", "--threads", "4", "--timeout", "600",
                               "--bind", "0.0.0.0:8000", "wsgi:app"]
    assert commands["worker"][-1] == "worker" and commands["scheduler"][-1] == "scheduler"
