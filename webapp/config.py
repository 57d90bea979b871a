"""Configuration from the environment, with defaults that run on a fresh machine."""
from __future__ import annotations

import os
import secrets
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
    if not key_file.exists():
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


def load_config() -> dict:
    """The settings a production process starts with."""
    folder = data_dir()
    return {
        "DATA_DIR": str(folder),
        "UPLOAD_DIR": str(folder / "uploads"),
        "SQLALCHEMY_DATABASE_URI": os.environ.get("DATABASE_URL") or f"sqlite:///{folder / 'invoice_sync.db'}",
        "REDIS_URL": os.environ.get("REDIS_URL"),  # None: the bundled server
        "SECRET_KEY": _secret_key(folder),
        "MAX_CONTENT_LENGTH": 11 * 1024 * 1024,  # the 10 MB limit is checked with a clear message
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "PAGE_SIZE": 20,
        "RQ_QUEUE": "invoice-sync",
    }
