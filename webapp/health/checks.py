"""The checks themselves, and CHECKS: the one list `flask doctor`, /healthz, 系统状态 and the alerts
run. Adding a check is one line in CHECKS (a Check with a name, a Chinese label and a function
returning a Finding)."""
from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

from flask import current_app
from sqlalchemy.exc import SQLAlchemyError

from channels import is_sandbox
from channels.records import SourceRejected, TransientError
from webapp.background import background
from webapp.disk import MB, data_dir, free_bytes
from webapp.extensions import db
from webapp.health import CHANNEL_SETTINGS, Check, Finding
from webapp.statuses import Channel, HealthCode, HealthStatus

OK, WARNING, FAULT = HealthStatus.OK, HealthStatus.WARNING, HealthStatus.FAULT
HEARTBEAT_MAX_AGE = 60  # seconds: a worker or scheduler silent longer is not running
RESTARTS_WARN = 3  # unexpected exits within RESTART_WINDOW that make a process "keeps restarting"
RESTART_WINDOW = 3600
RUNNING_STATES = ("RUNNING", "STARTING")


def database() -> Finding:
    """Reachable, and at the head migration (else every page may fail on a missing column)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    try:
        with db.engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as error:
        return Finding(FAULT, HealthCode.DB_UNREACHABLE, {"error": type(error).__name__})
    head = ScriptDirectory(current_app.extensions["migrate"].directory).get_current_head()
    if current != head:
        return Finding(FAULT, HealthCode.DB_BEHIND, {"current": current or "空", "head": head})
    return Finding(OK, HealthCode.DB_OK, {"revision": head})


def redis() -> Finding:
    """Reachable and taking writes; a Redis that cannot save for lack of disk is named as the disk."""
    state = background().queue_state()
    if state == "disk_full":
        return Finding(FAULT, HealthCode.REDIS_DISK, {"folder": str(data_dir())})
    if state != "ok":
        return Finding(FAULT, HealthCode.REDIS_UNREACHABLE)
    return Finding(OK, HealthCode.REDIS_OK)


def _heartbeat(age_of, ok: HealthCode, silent: HealthCode) -> Finding:
    """A process seen alive within HEARTBEAT_MAX_AGE seconds (no Redis: not seen)."""
    age = age_of() if background().queue_state() == "ok" else None
    if age is None or age > HEARTBEAT_MAX_AGE:
        return Finding(FAULT, silent)
    return Finding(OK, ok, {"seconds": int(age)})


def worker() -> Finding:
    """A worker beat within a minute: else no batch runs."""
    return _heartbeat(background().worker_heartbeat_age, HealthCode.WORKER_OK, HealthCode.WORKER_SILENT)


def scheduler() -> Finding:
    """The scheduler's cycle ran within a minute: else no auto-update and no released quota waits."""
    return _heartbeat(background().scheduler_heartbeat_age, HealthCode.SCHEDULER_OK, HealthCode.SCHEDULER_SILENT)


def channel(which: Channel) -> Finding:
    """The sandbox is a warning (a demo); a real service must answer our credentials, within
    PROBE_TIMEOUT and without retries (channels/http.py, ApiClient.probe)."""
    from channels.clients import make_clients  # httpx: loaded only when a real channel is probed
    from channels.http import PROBE_TIMEOUT

    config = current_app.config
    setting = CHANNEL_SETTINGS[which]
    if is_sandbox(config.get(setting)):
        return Finding(WARNING, HealthCode.CHANNEL_SANDBOX, {"channel": which.label, "setting": setting})
    leqi, rpa = make_clients({**config, "CHANNEL_TIMEOUT": PROBE_TIMEOUT, "CHANNEL_ATTEMPTS": 1})
    with leqi, rpa:
        try:
            (leqi if which == Channel.LEQI else rpa).probe()
        except (SourceRejected, TransientError) as error:
            return Finding(FAULT, HealthCode.CHANNEL_FAILED, {"channel": which.label, "reason": str(error)})
    return Finding(OK, HealthCode.CHANNEL_OK, {"channel": which.label})


def disk_finding() -> Finding:
    """Free space in DATA_DIR against DISK_WARN_MB and DISK_FAULT_MB (also every page's notice)."""
    config, folder = current_app.config, data_dir()
    free = free_bytes(folder)
    for status, limit_mb in ((FAULT, config["DISK_FAULT_MB"]), (WARNING, config["DISK_WARN_MB"])):
        if free < limit_mb * MB:
            return Finding(status, HealthCode.DISK_LOW, {"folder": str(folder), "free_mb": free // MB,
                                                          "limit_mb": limit_mb})
    return Finding(OK, HealthCode.DISK_OK, {"folder": str(folder), "free_mb": free // MB})


def processes_file() -> Path:
    """Where the process supervisor writes its processes' states (`make run`)."""
    return data_dir() / "run" / "processes.json"


def supervised() -> dict[str, dict] | None:
    """{name: {"state", "restarts", "since"}} from the supervisor's file; None when not supervised."""
    try:
        return json.loads(processes_file().read_text())["processes"]
    except FileNotFoundError:
        return None


def restarts_within_window(process: dict, moment: float | None = None) -> list[float]:
    """A process's unexpected exits within the last RESTART_WINDOW seconds."""
    moment = time.time() if moment is None else moment
    return [t for t in process.get("restarts", []) if moment - t <= RESTART_WINDOW]


def processes() -> Finding:
    """FATAL (the supervisor gave up) is a fault; RESTARTS_WARN restarts within an hour, or a process
    not running, a warning; no supervisor file: said, as fine (the systemd way, or tests)."""
    found = supervised()
    if found is None:
        return Finding(OK, HealthCode.PROCESSES_UNSUPERVISED, {"file": str(processes_file())})
    if fatal := [name for name, p in found.items() if p.get("state") == "FATAL"]:
        return Finding(FAULT, HealthCode.PROCESS_FATAL, {"names": "、".join(fatal)})
    if restarting := [name for name, p in found.items() if len(restarts_within_window(p)) >= RESTARTS_WARN]:
        return Finding(WARNING, HealthCode.PROCESS_RESTARTING, {"names": "、".join(restarting), "count": RESTARTS_WARN})
    if down := {name: p.get("state") for name, p in found.items() if p.get("state") not in RUNNING_STATES}:
        return Finding(WARNING, HealthCode.PROCESS_DOWN, {"names": "、".join(down),
                                                           "states": "、".join(map(str, down.values()))})
    return Finding(OK, HealthCode.PROCESSES_OK, {"names": "、".join(found)})


CHANNEL_CACHE = 30  # seconds a channel probe's finding is reused (monitors poll often; the bureau is remote)

def backup() -> Finding:
    """The newest good backup: none, or older than two days, is a warning (README, Health and
    alerts; the data must outlive the disk: the nightly run or 立即备份 makes one)."""
    from webapp.backup.runs import WARN_AFTER, newest_good_backup_age

    age = newest_good_backup_age()
    if age is None:
        return Finding(WARNING, HealthCode.BACKUP_NONE)
    if age > WARN_AFTER:
        return Finding(WARNING, HealthCode.BACKUP_OLD, {"days": age.days})
    return Finding(OK, HealthCode.BACKUP_OK, {"hours": int(age.total_seconds() // 3600)})


CHECKS: list[Check] = [
    Check("database", "数据库", database),
    Check("redis", "任务队列（Redis）", redis),
    Check("worker", "后台任务进程", worker),
    Check("scheduler", "调度进程", scheduler),
    Check("leqi", "乐企通道", partial(channel, Channel.LEQI), cache_seconds=CHANNEL_CACHE),
    Check("rpa", "RPA 通道", partial(channel, Channel.RPA), cache_seconds=CHANNEL_CACHE),
    Check("disk", "磁盘空间", disk_finding),
    Check("processes", "进程守护", processes),
    Check("backup", "备份", backup),
]
