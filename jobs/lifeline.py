"""Run a command of the Procfile so that it stops when `make run`'s honcho dies, even by SIGKILL.

honcho starts each Procfile line as honcho → its keeper process (multiprocessing) → the command, in
a session of its own. Killed with SIGKILL, honcho cannot stop anything: the keepers and the commands
(web, worker, scheduler, the bundled Redis) would run on, holding the port and the queue, and the
next `make run` would meet them. ``prctl(PR_SET_PDEATHSIG)`` alone does not help, because the
command's parent (the keeper) survives honcho.

``python -m jobs.lifeline CMD ARGS…`` therefore forks a small watchdog and then *becomes* the command
(exec: same pid, signals reach it directly and once). The watchdog notes the command's ancestors
(its parent and grandparent: honcho's keeper and honcho), looks every second whether they are still
there, and when one has gone sends the command SIGTERM (SIGKILL after GRACE seconds), the way
honcho would on Ctrl-C. The watchdog itself dies with the command (PR_SET_PDEATHSIG), so it never
outlives what it watches. Pid 1 (systemd, a container's init) is never watched: it does not die.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

ANCESTORS = 2  # the command's parent and grandparent: honcho's keeper process and honcho itself
POLL = 1.0  # seconds between two looks at the ancestors
GRACE = 30  # seconds the command has to stop on SIGTERM (a worker finishes its month) before SIGKILL
PR_SET_PDEATHSIG = 1


def parent_of(pid: int) -> int | None:
    """The parent pid of a live process, None when it is gone or a zombie (from /proc)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if fields[0] in ("Z", "X") else int(fields[1])


def ancestors(pid: int, levels: int = ANCESTORS) -> list[tuple[int, int]]:
    """[(ancestor, its parent)] for up to ``levels`` ancestors of ``pid``, stopping at pid 1."""
    chain, current = [], parent_of(pid)
    while current and current != 1 and len(chain) < levels:
        above = parent_of(current)
        if above is None:
            break
        chain.append((current, above))
        current = above
    return chain


def orphaned(chain: list[tuple[int, int]]) -> bool:
    """Whether an ancestor noted at start has died or been re-parented (its own parent died)."""
    return any(parent_of(pid) != parent for pid, parent in chain)


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send ``sig`` to this process when its parent exits (no-op elsewhere)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


def watch(command_pid: int, name: str) -> None:
    """The watchdog's life: wait until the command's supervisors are gone, then stop the command."""
    die_with_parent()
    if os.getppid() != command_pid:  # the command ended before the request above took effect
        os._exit(0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is honcho's to handle
    chain = ancestors(command_pid)
    while not orphaned(chain):
        time.sleep(POLL)
    print(f"{name}: honcho 已退出，停止 {name} (pid {command_pid}) / honcho is gone, stopping", file=sys.stderr,
          flush=True)
    os.kill(command_pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE
    while time.monotonic() < deadline:  # SIGKILL reaches this process as soon as the command exits
        time.sleep(0.2)
    os.kill(command_pid, signal.SIGKILL)
    os._exit(0)


def main(argv: list[str]) -> None:
    """Fork the watchdog, then exec the command in this process."""
    if not argv:
        sys.exit("usage: python -m jobs.lifeline COMMAND [ARGS…]")
    command_pid = os.getpid()
    if os.fork() == 0:
        try:
            watch(command_pid, os.path.basename(argv[0]))
        finally:
            os._exit(0)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
