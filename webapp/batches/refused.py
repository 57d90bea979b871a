"""A file refused at receipt for unreadable rows, kept a short while for its 错误清单.

Why (docs/etax-export.md, What refuses a file): such a file becomes no batch, yet the user needs every
unreadable place to fix the file, from the import dialog's answer (the download link) as from a batch page before. The
rows are kept in DATA_DIR/refused/<token>.json, readable only by the user who uploaded the file,
for KEEP (the scheduler's daily clean-up removes older ones: README, Retention).
"""
from __future__ import annotations

import json
import re
import secrets
from datetime import datetime, timedelta
from pathlib import Path

from flask import current_app

from channels.etax.parser import RowsRejected
from webapp.clock import now
from webapp.disk import written_atomically
from webapp.models import User

KEEP = timedelta(days=1)
TOKEN = re.compile(r"[0-9a-f]{32}")


def _folder() -> Path:
    """Where refused files' rows are kept."""
    return Path(current_app.config["DATA_DIR"]) / "refused"


def keep_refused(user: User, file_name: str, refusal: RowsRejected) -> str | None:
    """Keep a refused file's bad rows for `user`; the token naming them (None: they could not be
    written, e.g. a full disk: the refusal itself still stands and says the first place)."""
    token = secrets.token_hex(16)
    record = {"user_id": user.id, "file_name": file_name, "at": now().isoformat(), "total": refusal.total,
              "rows": [row.as_dict() for row in refusal.rows]}
    try:
        _folder().mkdir(parents=True, exist_ok=True)
        with written_atomically(_folder() / f"{token}.json") as temp:
            temp.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    except OSError:
        return None
    return token


def refused_rows(user: User, token: str) -> dict | None:
    """The kept record ({"file_name", "rows", "total", …}) of `token` if `user` uploaded it and it is
    not yet older than KEEP; None otherwise (the caller answers 404, naming nothing)."""
    path = _folder() / f"{token}.json"
    if not TOKEN.fullmatch(token) or not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    if record["user_id"] != user.id or datetime.fromisoformat(record["at"]) < now() - KEEP:
        return None
    return record


def remove_expired(moment: datetime) -> int:
    """Delete the kept records older than KEEP; how many went."""
    removed = 0
    for path in _folder().glob("*.json") if _folder().is_dir() else []:
        if datetime.fromtimestamp(path.stat().st_mtime) < moment - KEEP:
            path.unlink(missing_ok=True)
            removed += 1
    return removed
