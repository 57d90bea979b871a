"""Run a command so that it stops when the process that started it dies, even by SIGKILL, and (under
supervisord) so that its output reaches the terminal prefixed by its program's name.

Who starts commands through it: supervisord (supervisord.conf, `make run`) for web, redis, worker and
scheduler, and jobs.redis_server for a bundled Redis a command-line call starts for itself. Killed
with SIGKILL, the starter cannot stop anything: its children would run on, holding the port, the queue
and the bundled Redis, and the next `make run` would meet them (docs/deploy.md, "One host").

``python -m jobs.lifeline CMD ARGS…`` forks a small keeper and then *becomes* the command (exec: same
pid, so the starter's signals reach the command directly and once). The keeper:

- watches the command's parent (the starter) every POLL seconds; when it has gone, sends the command
  SIGTERM, as supervisord would on Ctrl-C, and after GRACE seconds SIGKILLs the command's process group
  (a job's work horse included). Pid 1 (systemd, a container's init) is never watched: it does not die.
- under supervisord (SUPERVISOR_PROCESS_NAME set) also carries the command's output: the command
  writes into a pipe, the keeper writes each line on to supervisord as ``name      | line``.
  supervisord has no prefix option; with every program's stdout on supervisord's own (/dev/fd/1) the
  terminal would show lines without saying whose. The keeper reads until the last writer (the command
  and its children) has closed the pipe, so the goodbye lines of a stopping process are shown.

Without a pipe to drain the keeper dies with the command (PR_SET_PDEATHSIG), so it never outlives what
it watches; with one it ends when the pipe closes, that is with the command and its children.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

import settings

POLL = 1.0  # seconds between two looks at the starter
GRACE = 30  # seconds the command has to stop on SIGTERM (a worker finishes its month) before SIGKILL
PR_SET_PDEATHSIG = 1
NAME_WIDTH = 9  # "scheduler", the longest program name: the prefixes line up


def parent_of(pid: int) -> int | None:
    """The parent pid of a live process, None when it is gone or a zombie (from /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if fields[0] in ("Z", "X") else int(fields[1])


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send ``sig`` to this process when its parent exits (no-op elsewhere)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


def starter_gone(command_pid: int, starter: int) -> bool | None:
    """True once the command has been orphaned (its starter died), None once the command has ended."""
    parent = parent_of(command_pid)
    return None if parent is None else parent != starter


def stop(command_pid: int, name: str) -> None:
    """Stop the command as its starter would have: SIGTERM, then SIGKILL to its whole group after GRACE."""
    _write(f"{name}: 启动它的进程已退出，停止 {name} (pid {command_pid}) / its supervisor is gone, stopping\n"
           .encode(), fd=2)
    try:
        own_group = os.getpgid(command_pid) == command_pid
        os.kill(command_pid, signal.SIGTERM)
    except ProcessLookupError:  # it ended on its own meanwhile
        return
    deadline = time.monotonic() + GRACE
    while parent_of(command_pid) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    try:  # a worker's work horse or anything else the command left in its group goes too
        if own_group:
            os.killpg(command_pid, signal.SIGKILL)
        else:
            os.kill(command_pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def watch(command_pid: int, starter: int, name: str) -> None:
    """Poll until the starter is gone (then stop the command) or the command has ended."""
    if starter == 1:
        return
    while (gone := starter_gone(command_pid, starter)) is False:
        time.sleep(POLL)
    if gone:
        stop(command_pid, name)


def relay(read_end: int, prefix: bytes) -> None:
    """Copy the command's output to this process's stdout, each line prefixed, until the pipe closes.

    A write that fails (supervisord gone, its pipe closed) drops the line but the pipe is still read,
    so the command never blocks on a full pipe."""
    pending = b""
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while chunk := pipe.read(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            if len(pending) > 65536:  # a very long line without an end: shown in pieces
                lines, pending = [*lines, pending], b""
            _write(b"".join(prefix + line + b"\n" for line in lines))
    if pending:
        _write(prefix + pending + b"\n")


def _write(data: bytes, fd: int = 1) -> None:
    """Write to stdout (or ``fd``), ignoring a reader that has gone away (supervisord killed)."""
    if not data:
        return
    try:
        os.write(fd, data)
    except OSError:
        pass


def keep(command_pid: int, starter: int, name: str, read_end: int | None) -> None:
    """The keeper's life: relay the output (if any) while watching the starter, or only watch."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C and a group's SIGTERM are for the command;
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the keeper goes when the pipe closes
    if read_end is None:
        die_with_parent()
        if os.getppid() != command_pid:  # the command ended before the request above took effect
            return
        watch(command_pid, starter, name)
        return
    threading.Thread(target=watch, args=(command_pid, starter, name), daemon=True).start()
    relay(read_end, f"{name:<{NAME_WIDTH}} | ".encode())


def main(argv: list[str]) -> None:
    """Fork the keeper, point the command's output at it when under supervisord, exec the command."""
    if not argv:
        sys.exit("usage: python -m jobs.lifeline COMMAND [ARGS…]")
    name = settings.supervisor_process_name() or os.path.basename(argv[0])
    command_pid, starter = os.getpid(), os.getppid()
    read_end, write_end = os.pipe() if settings.supervisor_process_name() else (None, None)
    if os.fork() == 0:
        try:
            if write_end is not None:
                os.close(write_end)
            keep(command_pid, starter, name, read_end)
        finally:
            os._exit(0)
    if write_end is not None:
        os.dup2(write_end, 1)
        os.dup2(write_end, 2)
        os.close(write_end)
        os.close(read_end)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
