"""Configuration from the environment, with defaults that run on a fresh machine."""
from __future__ import annotations

import os
import secrets
import time
from pathlib import Path


def data_dir() -> Path:
    """DATA_DIR holds everything the product writes: database, Redis data, uploads, secret key."""
    path = Path(os.environ.get("DATA_DIR", "instance")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _secret_key(folder: Path) -> str:
    """SECRET_KEY from the environment, else one generated once and kept in DATA_DIR."""
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    key_file = folder / "secret_key"
    try:  # O_EXCL: processes starting together agree on the one key the first of them wrote
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    for _ in range(100):  # another process may be between creating the file and writing it
        if key := key_file.read_text().strip():
            return key
        time.sleep(0.01)
    raise RuntimeError(f"{key_file} is empty: delete it and start again")


def trusted_proxies() -> int:
    """TRUSTED_PROXIES: how many proxies in front of the web server add X-Forwarded-For (0: none, the
    header is ignored, since any client could write it). ValueError in Chinese for anything else."""
    text = os.environ.get("TRUSTED_PROXIES", "0").strip()
    if not text.isdigit() or int(text) > 10:
        raise ValueError(f"TRUSTED_PROXIES 应为 0 到 10 的整数（Web 服务器前的代理层数），当前为：{text}")
    return int(text)


def use_local_time_zone() -> str:
    """Run every process on Chinese time (TZ, default Asia/Shanghai) whatever the host's clock says:
    a 乐企 quota day, a 开票日期 and the 5th of the month are all Beijing dates."""
    os.environ.setdefault("TZ", "Asia/Shanghai")
    time.tzset()
    return os.environ["TZ"]


def load_config() -> dict:
    """The settings a production process starts with."""
    use_local_time_zone()
    folder = data_dir()
    return {
        "DATA_DIR": str(folder),
        "UPLOAD_DIR": str(folder / "uploads"),
        "SQLALCHEMY_DATABASE_URI": os.environ.get("DATABASE_URL") or f"sqlite:///{folder / 'invoice_sync.db'}",
        "REDIS_URL": os.environ.get("REDIS_URL"),  # None: the bundled server
        "SECRET_KEY": _secret_key(folder),
        # up to 10 files of 10 MB in one import (channels.etax_file.MAX_UPLOAD_FILES); each file's
        # own limit is checked with a clear message
        "MAX_CONTENT_LENGTH": 101 * 1024 * 1024,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": os.environ.get("COOKIE_SECURE") == "1",  # set when served over HTTPS
        "REMEMBER_COOKIE_SECURE": os.environ.get("COOKIE_SECURE") == "1",
        # failed logins allowed per user name before its lockout, and per client address before each further
        # wrong password from it locks the user name it named (webapp.accounts.login_throttle)
        "LOGIN_LIMIT_PER_USER": os.environ.get("LOGIN_LIMIT_PER_USER", "5 per 15 minutes"),
        "LOGIN_LIMIT_PER_ADDRESS": os.environ.get("LOGIN_LIMIT_PER_ADDRESS", "30 per 15 minutes"),
        # proxies whose X-Forwarded-For names the client address (werkzeug's ProxyFix, webapp.create_app)
        "TRUSTED_PROXIES": trusted_proxies(),
        "PAGE_SIZE": 20,
        "RQ_QUEUE": "invoice-sync",
        # channels (channels/clients.py): "sandbox" serves them in-process from channels/sandbox
        "LEQI_BASE_URL": os.environ.get("LEQI_BASE_URL", "sandbox"),
        "LEQI_APP_ID": os.environ.get("LEQI_APP_ID", "sandbox"),
        "LEQI_APP_SECRET": os.environ.get("LEQI_APP_SECRET", "sandbox"),
        "RPA_BASE_URL": os.environ.get("RPA_BASE_URL", "sandbox"),
        "RPA_API_KEY": os.environ.get("RPA_API_KEY", "sandbox"),
        "CHANNEL_TIMEOUT": float(os.environ.get("CHANNEL_TIMEOUT", "30")),
        "SANDBOX_DB": str(folder / "sandbox.db"),
        # health (webapp/health): free space in DATA_DIR under which a warning, then a fault, is
        # raised and uploads are refused; when a month waiting for quota is mailed to the admins
        "DISK_WARN_MB": int(os.environ.get("DISK_WARN_MB") or 1024),
        "DISK_FAULT_MB": int(os.environ.get("DISK_FAULT_MB") or 200),
        "QUOTA_WAIT_ALERT_HOURS": float(os.environ.get("QUOTA_WAIT_ALERT_HOURS") or 48),
        # e-mail to admins (webapp/health/mail.py): no SMTP_HOST, no mail
        **{key: os.environ.get(key) or None for key in ("SMTP_HOST", "SMTP_USER", "SMTP_PASSWORD", "SMTP_FROM",
                                                          "SMTP_SECURITY", "PUBLIC_URL")},
        "SMTP_PORT": int(os.environ.get("SMTP_PORT") or 0),
    }
