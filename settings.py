"""Every environment variable the product reads, read here and nowhere else (README, Configuration).

The web app, the jobs and the sandbox bureau all start from the environment; one module below all
of them (wsgi → jobs → webapp → channels → settings) lets each read what it needs without importing
Flask or another layer. An empty variable counts as unset. Values are read when asked for, not at
import, so a process (or a test) that changes its environment is seen. Side effects (the time zone,
DATA_DIR's folder, the generated secret key) are the app factory's (webapp.create_app).
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

DEFAULT_TIME_ZONE = "Asia/Shanghai"


def get(name: str, default: str | None = None) -> str | None:
    """One variable's text; unset or empty: `default`."""
    return os.environ.get(name) or default


def data_dir() -> Path:
    """DATA_DIR (default ./instance), absolute: every process of an install finds the same folder."""
    return Path(get("DATA_DIR", "instance")).resolve()


def redis_url() -> str | None:
    """REDIS_URL, the operator's Redis; None: the install's bundled server (jobs/redis_server.py)."""
    return get("REDIS_URL")


def reconcile_interval() -> int:
    """RECONCILE_INTERVAL: seconds between the scheduler's cycles (jobs/reconciler.py), default 15."""
    return int(get("RECONCILE_INTERVAL", "15"))


def web_address() -> tuple[str, int]:
    """HOST and PORT the web server listens on (127.0.0.1:5000 unless set)."""
    return get("HOST", "127.0.0.1"), int(get("PORT", "5000"))


def web_idle_timeout(default: int) -> int:
    """WEB_IDLE_TIMEOUT: seconds a connection may stay silent before the web server closes it."""
    return int(get("WEB_IDLE_TIMEOUT") or default)


def supervised() -> bool:
    """Whether supervisord started this process (it sets SUPERVISOR_ENABLED in its programs)."""
    return bool(get("SUPERVISOR_ENABLED"))


def supervisor_process_name() -> str | None:
    """The program name supervisord gave this process (SUPERVISOR_PROCESS_NAME), None outside it."""
    return get("SUPERVISOR_PROCESS_NAME")


def environment() -> os._Environ:
    """The whole environment, for a library that reads the variables it documents itself (supervisor's
    childutils finds supervisord's socket there) and for handing settings on to a program started by
    exec (jobs/supervision.py writes what supervisord.conf expands)."""
    return os.environ


def trusted_proxies() -> int:
    """TRUSTED_PROXIES: how many proxies in front of the web server add X-Forwarded-For (0: none, the
    header is ignored, since any client could write it). ValueError in Chinese for anything else."""
    text = get("TRUSTED_PROXIES", "0").strip()
    if not text.isdigit() or int(text) > 10:
        raise ValueError(f"TRUSTED_PROXIES 应为 0 到 10 的整数（Web 服务器前的代理层数），当前为：{text}")
    return int(text)


def use_time_zone() -> str:
    """Run this process on Chinese time (TZ, default Asia/Shanghai) whatever the host's clock says:
    a 乐企 quota day, a 开票日期 and the 5th of the month are all Beijing dates. TZ is written back so
    the processes this one starts keep the same zone."""
    os.environ["TZ"] = get("TZ", DEFAULT_TIME_ZONE)
    time.tzset()
    return os.environ["TZ"]


def sandbox_config(keys: Iterable[str]) -> dict:
    """The sandbox bureau's SANDBOX_DB (default DATA_DIR/sandbox.db) and those of its `keys` (its
    SANDBOX_* defaults) that are set, so `flask --app channels.sandbox run` needs no code."""
    config = {"SANDBOX_DB": get("SANDBOX_DB") or str(data_dir() / "sandbox.db")}
    config.update({key: get(key) for key in keys if get(key)})
    return config


def app_config() -> dict:
    """The web app's settings (Flask config keys) as the environment gives them; SECRET_KEY None
    means one generated into DATA_DIR by the factory."""
    folder = data_dir()
    cookie_secure = get("COOKIE_SECURE") == "1"
    return {
        "DATA_DIR": str(folder),
        "UPLOAD_DIR": str(folder / "uploads"),
        "SQLALCHEMY_DATABASE_URI": get("DATABASE_URL") or f"sqlite:///{folder / 'invoice_sync.db'}",
        "REDIS_URL": redis_url(),  # None: the bundled server
        "SECRET_KEY": get("SECRET_KEY"),
        # up to 10 files of 10 MB in one import (channels.etax.container.MAX_UPLOAD_FILES); each file's
        # own limit is checked with a clear message
        "MAX_CONTENT_LENGTH": 101 * 1024 * 1024,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": cookie_secure,  # set when served over HTTPS
        "REMEMBER_COOKIE_SECURE": cookie_secure,
        # failed logins allowed per user name before its lockout, and per client address before each further
        # wrong password from it locks the user name it named (webapp.accounts.login_throttle)
        "LOGIN_LIMIT_PER_USER": get("LOGIN_LIMIT_PER_USER", "5 per 15 minutes"),
        "LOGIN_LIMIT_PER_ADDRESS": get("LOGIN_LIMIT_PER_ADDRESS", "30 per 15 minutes"),
        # proxies whose X-Forwarded-For names the client address (werkzeug's ProxyFix, webapp.create_app)
        "TRUSTED_PROXIES": trusted_proxies(),
        "PAGE_SIZE": 20,
        "RQ_QUEUE": "invoice-sync",
        # channels (channels/clients.py): "sandbox" serves them in-process from channels/sandbox
        **{key: get(key, "sandbox") for key in ("LEQI_BASE_URL", "LEQI_APP_ID", "LEQI_APP_SECRET", "RPA_BASE_URL",
                                                 "RPA_API_KEY")},
        "CHANNEL_TIMEOUT": float(get("CHANNEL_TIMEOUT", "30")),
        "SANDBOX_DB": str(folder / "sandbox.db"),
        # health (webapp/health): free space in DATA_DIR under which a warning, then a fault, is
        # raised and uploads are refused; when a month waiting for quota is mailed to the admins
        "DISK_WARN_MB": int(get("DISK_WARN_MB", "1024")),
        "DISK_FAULT_MB": int(get("DISK_FAULT_MB", "200")),
        "QUOTA_WAIT_ALERT_HOURS": float(get("QUOTA_WAIT_ALERT_HOURS", "48")),
        # e-mail to admins (webapp/health/mail.py): no SMTP_HOST, no mail
        **{key: get(key) for key in ("SMTP_HOST", "SMTP_USER", "SMTP_PASSWORD", "SMTP_FROM", "SMTP_SECURITY",
                                     "PUBLIC_URL")},
        "SMTP_PORT": int(get("SMTP_PORT", "0")),
        # nightly backup into DATA_DIR/backups (webapp/backup/runs.py): local time, or "off"; archives kept
        "BACKUP_TIME": get("BACKUP_TIME", "02:30"),
        "BACKUP_KEEP": int(get("BACKUP_KEEP", "7")),
        # retention (README, Retention): audit rows, and the uploads and staging files of ended batches
        "AUDIT_KEEP_DAYS": int(get("AUDIT_KEEP_DAYS", "365")),
        "FILE_KEEP_DAYS": int(get("FILE_KEEP_DAYS", "30")),
    }
