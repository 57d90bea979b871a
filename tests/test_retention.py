"""Retention (README, Retention): the uploads and staging files of a batch that ended FILE_KEEP_DAYS ago
are removed by the scheduler's daily clean-up; a batch still running keeps its files whatever its
age, and the pool and the batch rows are never touched. Audit rows follow AUDIT_KEEP_DAYS."""
from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select, text

from webapp.accounts import audit
from webapp.batches import staging_dir, upload_path
from webapp.batches.retention import remove_ended_batch_files
from webapp.extensions import db
from webapp.models import AuditLog, Batch

from .conftest import DEMO_TAX_ID, SAMPLES, cli_json

NOW = datetime(2026, 6, 1, 12, 0)


def _file_batch(runner, status: str, finished: datetime | None) -> str:
    """A file batch (its months staged at receipt, and an upload as an older version kept) in the given
    state; its number."""
    batch = cli_json(runner, "import-file", "--tax-id", DEMO_TAX_ID, "--file", str(SAMPLES / "etax-export-2024.xlsx"),
                     "--as", "admin")
    with runner.app.app_context():
        row = db.session.scalar(select(Batch).filter_by(batch_no=batch["batch_no"]))
        row.status, row.finished_at = status, finished
        db.session.commit()
        assert (staging_dir(row) / "2024-01.staged").is_file()
        upload_path(row).parent.mkdir(parents=True, exist_ok=True)
        upload_path(row).write_bytes(b"x")
        db.session.remove()
    return batch["batch_no"]


def _files(app, batch_no: str) -> bool:
    with app.app_context():
        row = db.session.scalar(select(Batch).filter_by(batch_no=batch_no))
        present = upload_path(row).exists() or staging_dir(row).exists()
        db.session.remove()
    return present


def test_files_of_batches_ended_long_ago_go_and_a_running_batchs_stay(app, runner):
    app.config["FILE_KEEP_DAYS"] = 30
    old_failed = _file_batch(runner, "failed", NOW - timedelta(days=31))
    recent_partial = _file_batch(runner, "partial", NOW - timedelta(days=3))
    old_running = _file_batch(runner, "syncing", None)
    with app.app_context():
        db.session.execute(text("UPDATE batch SET created_at = :at WHERE batch_no = :no"),
                           {"at": NOW - timedelta(days=200), "no": old_running})
        db.session.commit()
        orphan = Path(app.config["UPLOAD_DIR"]) / "B-ROLLED-BACK.xlsx"
        orphan.write_bytes(b"x")
        old = time.mktime((NOW - timedelta(days=40)).timetuple())
        os.utime(orphan, (old, old))
        assert remove_ended_batch_files(NOW) == sorted([old_failed, "B-ROLLED-BACK"])
        assert db.session.scalar(text("SELECT count(*) FROM batch")) == 3
    assert not _files(app, old_failed)
    assert _files(app, recent_partial) and _files(app, old_running)
    assert not orphan.exists()


def test_audit_rows_follow_audit_keep_days(app):
    app.config["AUDIT_KEEP_DAYS"] = 30
    with app.app_context():
        for days in (10, 40):
            db.session.add(AuditLog(at=NOW - timedelta(days=days), username="u", action="logout"))
        db.session.commit()
        assert audit.purge(NOW) == 1
        assert [row.at for row in db.session.scalars(select(AuditLog))] == [NOW - timedelta(days=10)]
