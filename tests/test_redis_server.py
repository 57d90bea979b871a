"""The bundled Redis: started on demand, reused, safe under a race, clear when it cannot start."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from webapp import redis_server
from webapp.redis_server import RedisStartError, ensure_redis, redis_url, run_foreground

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """Ask the kernel for a port nobody uses, so tests never meet a real server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port_closed(port: int, timeout: float = 10) -> None:
    """Wait until nothing listens on the port, so the next test starts clean."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return
        time.sleep(0.05)
    raise AssertionError(f"port {port} still open")


@pytest.fixture
def port(monkeypatch):
    """A free BUNDLED_REDIS_PORT and no REDIS_URL; stop whatever server a test left behind."""
    port = free_port()
    monkeypatch.setenv("BUNDLED_REDIS_PORT", str(port))
    monkeypatch.delenv("REDIS_URL", raising=False)
    yield port
    try:
        pid = redis.Redis(port=port, socket_timeout=1).info("server")["process_id"]
        os.kill(pid, signal.SIGKILL)
    except (redis.RedisError, OSError):
        pass
    wait_port_closed(port)


def test_redis_url_prefers_env(monkeypatch, port):
    assert redis_url() == f"redis://127.0.0.1:{port}/0"
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:1/2")
    assert redis_url() == "redis://elsewhere:1/2"


def test_default_port(monkeypatch):
    monkeypatch.delenv("BUNDLED_REDIS_PORT", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert redis_url() == "redis://127.0.0.1:6479/0"


def test_configured_url_is_returned_untouched(monkeypatch, port, tmp_path):
    monkeypatch.setenv("REDIS_URL", "redis://192.0.2.1:1/0")
    assert ensure_redis(tmp_path) == "redis://192.0.2.1:1/0"
    assert not (tmp_path / "redis").exists()


def test_starts_daemonized_persistent_server_then_reuses_it(port, tmp_path):
    url = ensure_redis(tmp_path)
    assert url == f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, decode_responses=True)
    pid = client.info("server")["process_id"]
    assert int((tmp_path / "redis" / "redis.pid").read_text()) == pid
    assert os.getpid() != _parent_pid(pid), "the server should be daemonized, not our child"
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("dir")["dir"] == str((tmp_path / "redis").resolve())
    assert (tmp_path / "redis" / "redis.log").exists()

    assert ensure_redis(tmp_path) == url
    assert client.info("server")["process_id"] == pid


def test_racing_starts_give_one_server(port, tmp_path):
    """Four processes share a data dir and two use their own: all get the URL, one server runs."""
    code = "import sys; from pathlib import Path; from webapp.redis_server import ensure_redis; print(ensure_redis(Path(sys.argv[1])))"
    dirs = [tmp_path / "a"] * 4 + [tmp_path / "b", tmp_path / "c"]
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(d)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for d in dirs
    ]
    outputs = [p.communicate(timeout=30)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs)
    assert set(outputs) == {f"redis://127.0.0.1:{port}/0"}
    pid = redis.Redis(port=port).info("server")["process_id"]
    servers = [
        d for d in ("a", "b", "c") if (tmp_path / d / "redis" / "redis.pid").exists()
    ]
    assert len(servers) == 1
    assert int((tmp_path / servers[0] / "redis" / "redis.pid").read_text()) == pid


def test_port_taken_by_something_else_fails_clearly(port, tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        started = time.monotonic()
        with pytest.raises(RedisStartError) as error:
            ensure_redis(tmp_path, timeout=10)
        assert time.monotonic() - started < 5
        assert "BUNDLED_REDIS_PORT" in str(error.value)
        assert "端口" in str(error.value)
        with pytest.raises(RedisStartError):
            run_foreground(tmp_path)


def test_foreground_server_is_a_child_that_stops_with_us(port, tmp_path):
    proc = run_foreground(tmp_path)
    try:
        assert proc.poll() is None
        client = redis.Redis(port=port, decode_responses=True)
        assert client.info("server")["process_id"] == proc.pid
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert ensure_redis(tmp_path) == redis_url()  # reused, not doubled
        with pytest.raises(RedisStartError):
            run_foreground(tmp_path)
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    wait_port_closed(port)


def test_failed_start_reports_the_log(port, tmp_path, monkeypatch):
    """A server that cannot start (here: an option it rejects) fails with its own words."""
    real_argv = redis_server._server_argv
    monkeypatch.setattr(
        redis_server,
        "_server_argv",
        lambda *a, **k: real_argv(*a, **k) + ["--maxmemory-policy", "no-such-policy"],
    )
    with pytest.raises(RedisStartError) as error:
        run_foreground(tmp_path, timeout=5)
    assert "无法启动内置 Redis" in str(error.value)
    with pytest.raises(RedisStartError) as error:
        ensure_redis(tmp_path, timeout=5)
    assert "no-such-policy" in str(error.value) or "argument" in str(error.value).lower()


def _parent_pid(pid: int) -> int:
    """Read a process's parent id from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])
