"""`make run`'s supervision: supervisord keeps web, the bundled Redis, the worker and the scheduler up
(supervisord.conf), and this module's event listener reports the ones that keep dying.

``python -m jobs.supervision`` is what `make run` runs: it settles this install's DATA_DIR, PATH and
whether Redis is bundled, then becomes supervisord in the foreground. Its pid file, control socket and
log live in ``DATA_DIR/run/``, so two installs on one machine never share them.

``python -m jobs.supervision listen`` is the event listener supervisord.conf starts. supervisord
restarts a program that dies and gives up (FATAL) after ``startretries`` quick deaths, but a program
that runs a little longer before each death would be restarted forever; and nobody watching the
terminal would know. The listener therefore records every state change and every unexpected exit
(EXITED after running, BACKOFF after a quick death) in ``DATA_DIR/run/processes.json``::

    {"updated": <epoch s>, "processes": {"web": {"state": "RUNNING", "restarts": [<epoch s>…],
                                                 "since": <epoch s>}, …}}

(read by the health checks and the admins' e-mails; written whole, temp file + rename), and stops a
program restarted more than MAX_RESTARTS_PER_HOUR times in an hour, recording it FATAL like one
supervisord gave up on. Times are epoch seconds (time.time()): the file is read by other processes
and tools, outside any app and its clock (webapp/clock.py needs an app).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import settings
from jobs.redis_server import MAX_SOCKET_PATH

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "supervisord.conf"
STATE_FILE = "processes.json"
KEEP_RESTARTS = 24 * 3600  # seconds of restarts kept in the file
MAX_RESTARTS_PER_HOUR = 10  # more unexpected exits than this in an hour: stopped and reported FATAL
UNEXPECTED = ("EXITED", "BACKOFF")  # states reached only when a program died without being asked to
LISTENER_GROUP = "supervision"


def run_dir(folder: Path) -> Path:
    """DATA_DIR/run: supervisord's pid file, socket and log, and processes.json."""
    return Path(folder).resolve() / "run"


def supervise() -> int:
    """Become supervisord in the foreground with this install's settings (Ctrl-C stops everything)."""
    folder = settings.data_dir()
    run = run_dir(folder)
    if len(str(run / "supervisor.sock")) > MAX_SOCKET_PATH:
        print(f"DATA_DIR 路径过长（{folder}），请换一个较短的路径。\n"
              f"DATA_DIR ({folder}) is too long for supervisord's control socket; use a shorter one.",
              file=sys.stderr)
        return 1
    run.mkdir(parents=True, exist_ok=True)
    bin_dir = str(Path(sys.executable).parent)
    settings.environment().update(DATA_DIR=str(folder), PYTHONUNBUFFERED="1",
                                  PATH=f"{bin_dir}{os.pathsep}{settings.get('PATH', '')}",
                                  BUNDLED_REDIS="false" if settings.redis_url() else "true")
    supervisord = os.path.join(bin_dir, "supervisord")
    os.execv(supervisord, [supervisord, "--configuration", str(CONFIG)])
    return 1  # not reached


def record(processes: dict, name: str, state: str, now: float) -> bool:
    """Apply one state change to ``processes`` (the file's "processes"); True when the program has
    now exited unexpectedly more than MAX_RESTARTS_PER_HOUR times within the last hour."""
    entry = processes.setdefault(name, {"state": state, "restarts": [], "since": now})
    if entry.get("given_up") and state != "RUNNING":  # stopped by us: FATAL until started again by hand
        state = "FATAL"
    else:
        entry.pop("given_up", None)
    if state in UNEXPECTED:
        entry["restarts"].append(now)
    entry["restarts"] = [moment for moment in entry["restarts"] if moment > now - KEEP_RESTARTS]
    entry.update(state=state, since=now)
    recent = sum(moment > now - 3600 for moment in entry["restarts"])
    return state in UNEXPECTED and recent > MAX_RESTARTS_PER_HOUR


def load(path: Path) -> dict:
    """The processes recorded so far (restarts of an earlier run within 24 h count too)."""
    try:
        return json.loads(path.read_text())["processes"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def save(path: Path, processes: dict, now: float) -> None:
    """Write the file whole (temp file + rename): a reader never sees half of it."""
    shown = {name: {key: entry[key] for key in ("state", "restarts", "since")} for name, entry in processes.items()}
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps({"updated": time.time(), "processes": shown}, ensure_ascii=False, indent=1))
    os.replace(temporary, path)


def give_up(name: str) -> None:
    """Stop a program that keeps dying, through supervisord's own interface (it would restart it)."""
    from supervisor import childutils

    try:
        childutils.getRPCInterface(settings.environment()).supervisor.stopProcess(name, False)
    except Exception as error:  # noqa: BLE001 - already stopped, or supervisord going away: said, not fatal
        say(f"无法停止 {name} / could not stop {name}: {error}")


def say(text: str) -> None:
    """A line on the terminal (stderr: the listener's stdout belongs to supervisord's protocol)."""
    print(f"supervision | {text}", file=sys.stderr, flush=True)


def handle(processes: dict, headers: dict, payload: str, now: float) -> bool:
    """Apply one supervisord event; True when it changed what the file says."""
    from supervisor import childutils

    fields, _ = childutils.eventdata(payload + "\n")
    name, state = fields.get("processname"), headers["eventname"].removeprefix("PROCESS_STATE_")
    if not name or fields.get("groupname") == LISTENER_GROUP:
        return False
    if record(processes, name, state, now):
        say(f"{name} 一小时内意外退出超过 {MAX_RESTARTS_PER_HOUR} 次，已停止，不再重启；请查看日志后重新运行 make run。"
            f" / {name} exited more than {MAX_RESTARTS_PER_HOUR} times in an hour: stopped, not restarted")
        processes[name]["given_up"] = True
        processes[name]["state"] = "FATAL"
        give_up(name)
    elif state in UNEXPECTED:
        say(f"{name} 意外退出，正在重启 / {name} exited unexpectedly, restarting")
    elif state == "FATAL":
        say(f"{name} 多次启动失败，已放弃；请查看上面的输出后重新运行 make run。 / "
            f"{name} keeps failing to start: given up")
    return True


def listen(stdin=sys.stdin, stdout=sys.stdout) -> int:
    """The event listener's loop (supervisord's protocol: READY, one event, RESULT) until stdin closes."""
    from supervisor import childutils

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # supervisord's stop: a clean exit
    path = run_dir(settings.data_dir()) / STATE_FILE
    processes = load(path)
    while True:
        childutils.listener.ready(stdout)
        line = stdin.readline()
        if not line:  # supervisord has gone
            return 0
        headers = childutils.get_headers(line)
        payload = stdin.read(int(headers["len"]))
        if headers["eventname"].startswith("PROCESS_STATE_") and handle(processes, headers, payload, time.time()):
            save(path, processes, time.time())
        childutils.listener.ok(stdout)


def main(argv: list[str]) -> int:
    """`python -m jobs.supervision` starts supervisord; `… listen` is its event listener."""
    return listen() if argv[1:] == ["listen"] else supervise()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
