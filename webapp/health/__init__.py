"""系统状态: one list of named checks (webapp/health/checks.py, CHECKS), each giving a Finding, run
time-boxed in parallel for `flask doctor`, GET /healthz, the 系统状态 page and the alert e-mails.

Why one list: the three ways to look at the product's health and the alerts must never disagree,
and a new check (say, the last backup's age) is one line added to CHECKS.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from flask import Flask, current_app

from channels import is_sandbox
from webapp.statuses import Channel, HealthCode, HealthStatus

log = logging.getLogger(__name__)
CHECK_TIMEOUT = 5.0  # seconds all checks together may take: a monitor's probe must answer fast
CHANNEL_SETTINGS = {Channel.LEQI: "LEQI_BASE_URL", Channel.RPA: "RPA_BASE_URL"}
SANDBOX_NOTICE = "演示环境：下载通道连接内置沙箱税局，数据不是真实税局数据"


@dataclass(frozen=True)
class Finding:
    """What a check found: a status, the reason's code and the parameters its message names."""

    status: HealthStatus
    code: HealthCode
    params: dict = field(default_factory=dict)

    @property
    def message(self) -> str:
        """The reason in Chinese, its parameters filled in."""
        return self.code.label.format(**self.params)


@dataclass(frozen=True)
class Check:
    """A named check: `run` gives a Finding; `cache_seconds` spares the expensive ones (a probe of a
    remote channel) from running on every monitor's request."""

    name: str
    label: str
    run: Callable[[], Finding]
    cache_seconds: float = 0


@dataclass(frozen=True)
class Result:
    """A check with what it found, as every view of the health shows it."""

    check: Check
    finding: Finding

    def json(self) -> dict:
        """The check by name, for /healthz and `doctor --json`: codes, a message, no secrets."""
        return {"label": self.check.label, "status": self.finding.status.value,
                "status_label": self.finding.status.label, "code": self.finding.code.value,
                "message": self.finding.message}


def run_checks(checks: list[Check] | None = None) -> list[Result]:
    """Every check (or `checks`) at once, each in its own thread; one still running after
    CHECK_TIMEOUT is a fault. A check that hangs (a frozen Redis, say) is not started again while it
    runs: the next request waits on the same one, so monitors polling a stuck server add no threads."""
    from webapp.health.checks import CHECKS

    checks = CHECKS if checks is None else checks
    app = current_app._get_current_object()
    futures = [(check, _running(app, check)) for check in checks]
    deadline = time.monotonic() + CHECK_TIMEOUT
    results = []
    for check, future in futures:
        try:
            finding = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            finding = Finding(HealthStatus.FAULT, HealthCode.CHECK_TIMEOUT, {"seconds": f"{CHECK_TIMEOUT:g}"})
        results.append(Result(check, finding))
    return results


_RUNNING_LOCK = threading.Lock()


def _running(app: Flask, check: Check) -> Future:
    """The check's run in progress in this process, or a new one in a daemon thread (a hung check
    must not keep the process from exiting)."""
    with _RUNNING_LOCK:
        running = app.extensions.setdefault("health_running", {})
        future = running.get(check.name)
        if future is None or future.done():
            future = running[check.name] = Future()
            threading.Thread(target=lambda: future.set_result(_run_one(app, check)), daemon=True,
                             name=f"health-{check.name}").start()
        return future


def _run_one(app: Flask, check: Check) -> Finding:
    """One check in its own app context; a crash is a fault naming the error's kind (never its text,
    which may hold a connection string), logged in full for the operator."""
    cache = app.extensions.setdefault("health_cache", {})
    cached_at, finding = cache.get(check.name, (0.0, None))
    if finding is not None and time.monotonic() - cached_at < check.cache_seconds:
        return finding
    with app.app_context():
        try:
            finding = check.run()
        except Exception as error:
            log.exception("health check %s failed", check.name)
            finding = Finding(HealthStatus.FAULT, HealthCode.CHECK_ERROR, {"error": type(error).__name__})
    cache[check.name] = (time.monotonic(), finding)
    return finding


def overall(results: list[Result]) -> HealthStatus:
    """The worst status found: any fault is a fault, else any warning a warning."""
    statuses = {r.finding.status for r in results}
    for status in (HealthStatus.FAULT, HealthStatus.WARNING):
        if status in statuses:
            return status
    return HealthStatus.OK


def sandbox_channels(config) -> list[Channel]:
    """The channels pointing at the built-in sandbox tax bureau: while any does, the product is a demo."""
    return [channel for channel, setting in CHANNEL_SETTINGS.items() if is_sandbox(config.get(setting))]


def _layout_notices() -> dict:
    """What every page's notice area says besides the queue (templates/base.html): a demo install,
    and a disk running out of room (or a Redis refusing writes for lack of it) named as the disk."""
    from webapp.background import background
    from webapp.health.checks import disk_finding

    disk = disk_finding()
    if disk.status == HealthStatus.OK and background().queue_state() == "disk_full":
        disk = Finding(HealthStatus.FAULT, HealthCode.REDIS_DISK, {"folder": current_app.config["DATA_DIR"]})
    return {"sandbox_notice": SANDBOX_NOTICE if sandbox_channels(current_app.config) else None,
            "disk_notice": disk.message if disk.status != HealthStatus.OK else None}


def init_app(app: Flask) -> None:
    """The notices on every page, the /healthz and 系统状态 views, and `flask doctor`."""
    from webapp.health.cli import doctor_command
    from webapp.health.views import bp

    app.context_processor(_layout_notices)
    app.register_blueprint(bp)
    app.cli.add_command(doctor_command)
