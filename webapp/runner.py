"""Run the whole product in one terminal: ``python -m webapp.runner`` (what ``make run`` ends with).

Why: an on-premises install should start with one command and stop with Ctrl-C. The runner starts
the bundled Redis (unless REDIS_URL is set or it already runs), then the web server, the RQ worker
and the scheduler as child processes, prefixes their output with their names (as honcho does), and
stops them all together: on Ctrl-C or SIGTERM, or as soon as one of them dies unexpectedly.

Environment: DATA_DIR (default ./instance), HOST (default 127.0.0.1), PORT (default 5000),
REDIS_URL, BUNDLED_REDIS_PORT (see webapp.redis_server).
"""

from __future__ import annotations

import ctypes
import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from webapp import redis_server

STOP_TIMEOUT = 10  # seconds a child gets to stop after SIGTERM before SIGKILL
READY_TIMEOUT = 60  # seconds the web server gets to start listening
BANNER = """\
  历史发票数据同步 is running: {url}
  Demo logins: admin / admin123 (管理员)    caiwu / caiwu123 (财务)
  Press Ctrl-C to stop."""

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _detach() -> None:
    """In the child: die with the runner, so a killed runner leaves no orphan holding the port."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    """A set of named child processes whose output is prefixed and which stop together.

    Each child gets its own session, so a Ctrl-C in the terminal reaches the runner only and the
    runner decides the order of shutdown (the queue's Redis last).
    """

    def __init__(self, out=None):
        """Start with no children; ``out`` is where prefixed lines go (stdout by default)."""
        self.out = out or sys.stdout
        self.lock = threading.Lock()
        self.children: list[tuple[str, subprocess.Popen]] = []  # stopped first
        self.last: list[tuple[str, subprocess.Popen]] = []  # stopped after the others
        self.readers: list[threading.Thread] = []

    def say(self, name: str, text: str) -> None:
        """Print text under a name, line by line, without interleaving with other children's lines."""
        with self.lock:
            for line in text.splitlines() or [""]:
                self.out.write(f"{name:<9} | {line}\n")
            self.out.flush()

    def popen_options(self) -> dict:
        """The Popen arguments every child gets: piped output, own session, death with the runner."""
        return dict(
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_detach,
        )

    def start(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        """Start a child and forward its output under its name."""
        proc = subprocess.Popen(argv, env=env, **self.popen_options())
        self.adopt(name, proc)
        return proc

    def adopt(self, name: str, proc: subprocess.Popen, last: bool = False) -> None:
        """Take charge of a child started elsewhere (the bundled Redis); ``last`` stops it last."""
        (self.last if last else self.children).append((name, proc))
        if proc.stdout is not None:
            reader = threading.Thread(target=self._forward, args=(name, proc.stdout), daemon=True)
            reader.start()
            self.readers.append(reader)

    def _forward(self, name: str, stream) -> None:
        """Copy a child's output line by line under its name until it closes."""
        for raw in iter(stream.readline, b""):
            self.say(name, raw.decode("utf-8", "replace").rstrip("\r\n"))
        stream.close()

    def first_exit(self) -> tuple[str, str] | None:
        """Return (name, "exit code N") of a child that has exited, or None while all run."""
        for name, proc in self.children + self.last:
            code = proc.poll()
            if code is not None:
                return name, f"exit code {code}"
        return None

    def wait(self, stop: threading.Event) -> tuple[str, str] | None:
        """Block until ``stop`` is set (return None) or a child exits (return its name and why)."""
        while not stop.is_set():
            exited = self.first_exit()
            if exited:
                return exited
            stop.wait(0.2)
        return None

    def stop_all(self) -> None:
        """Stop every child: SIGTERM, up to STOP_TIMEOUT seconds' grace, then SIGKILL; Redis last."""
        self._stop(self.children)
        self._stop(self.last)
        for reader in self.readers:
            reader.join(timeout=2)

    def _stop(self, group: list[tuple[str, subprocess.Popen]]) -> None:
        """Stop one tier of children together, then clear out whatever they left in their sessions."""
        for name, proc in group:
            if proc.poll() is None:
                proc.terminate()  # the leader only: gunicorn and rq stop their own workers
        deadline = time.monotonic() + STOP_TIMEOUT
        for name, proc in group:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(name, f"did not stop within {STOP_TIMEOUT} s; killing it")
                proc.kill()
                proc.wait()
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # stragglers in its session, if any
            except (ProcessLookupError, PermissionError):
                pass


def product_commands(host: str, port: int) -> dict[str, list[str]]:
    """The product's processes, run with this interpreter (the project's virtualenv)."""
    python = sys.executable
    return {
        "web": [python, "-m", "gunicorn", "--workers", "2", "--threads", "4", "--timeout", "600",
                "--bind", f"{host}:{port}", "wsgi:app"],
        "worker": [python, "-m", "flask", "--app", "wsgi", "worker"],
        "scheduler": [python, "-m", "flask", "--app", "wsgi", "scheduler"],
    }


def wait_serving(host: str, port: int, supervisor: Supervisor, stop: threading.Event) -> bool:
    """Wait until the web server answers an HTTP request; False if stopped, a child died or timed out.

    Why HTTP and not a bare connect: gunicorn's master listens before its workers have loaded the
    app, so only an answer (any status) shows the product is really up.
    """
    target = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    deadline = time.monotonic() + READY_TIMEOUT
    while not stop.is_set() and not supervisor.first_exit() and time.monotonic() < deadline:
        connection = http.client.HTTPConnection(target, port, timeout=2)
        try:
            connection.request("GET", "/")
            connection.getresponse()
            return True
        except (OSError, http.client.HTTPException):
            stop.wait(0.2)
        finally:
            connection.close()
    return False


def run(commands: dict[str, list[str]], env: dict, data_dir: Path,
        host: str, port: int, out=None) -> int:
    """Start Redis if needed and the given commands, supervise them, and return the exit code.

    Why separate from ``main``: the tests drive the same supervision with stand-in commands.
    """
    supervisor = Supervisor(out)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    try:
        if not os.environ.get("REDIS_URL") and not redis_server.bundled_redis_answers():
            redis_proc = redis_server.run_foreground(
                data_dir, start_new_session=True, preexec_fn=_detach
            )
            supervisor.adopt("redis", redis_proc, last=True)
            supervisor.say("redis", f"bundled Redis started: {redis_server.redis_url()} "
                                    f"(log: {data_dir / 'redis' / 'redis.log'})")
        else:
            supervisor.say("redis", f"using the Redis already running at {redis_server.redis_url()}")
        env = {**env, "REDIS_URL": redis_server.redis_url()}

        for name, argv in commands.items():
            supervisor.start(name, argv, env)

        if wait_serving(host, port, supervisor, stop):
            supervisor.say("runner", "")
            for line in BANNER.format(url=f"http://{host}:{port}/").splitlines():
                supervisor.say("runner", line)
            supervisor.say("runner", "")
            failure = supervisor.wait(stop)
        elif stop.is_set():
            failure = None
        else:
            failure = supervisor.first_exit() or ("web", f"not listening on {host}:{port} "
                                                         f"after {READY_TIMEOUT} s")
    except redis_server.RedisStartError as error:
        supervisor.say("runner", str(error))
        failure = ("redis", "could not start")
    finally:
        supervisor.say("runner", "stopping…")
        supervisor.stop_all()

    if failure:
        name, why = failure
        supervisor.say("runner", f"{name} failed ({why}); everything stopped")
        return 1
    supervisor.say("runner", "stopped")
    return 0


def main() -> int:
    """Read the environment, then run the product until Ctrl-C."""
    data_dir = Path(os.environ.get("DATA_DIR") or "instance").resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    host = os.environ.get("HOST") or "127.0.0.1"
    port = int(os.environ.get("PORT") or 5000)
    env = {**os.environ, "DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    return run(product_commands(host, port), env, data_dir, host, port)


if __name__ == "__main__":
    sys.exit(main())
