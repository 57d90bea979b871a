"""Files a file import leaves in DATA_DIR, removed once no batch can need them (README, Retention).

An upload (DATA_DIR/uploads/<batch>.xlsx) is kept until its parse has staged every month, and the
staged months (DATA_DIR/staging/<batch>/) until the batch succeeds; a batch that failed, ended
partly or was terminated keeps them so 重试 can run its months again. Once such a batch has been
ended for FILE_KEEP_DAYS days its files go (a later 重试 then says to import the file again), and
so do files no batch row names (a batch whose creation rolled back). A batch still to end, whatever
its age, keeps every file. Nothing in the pool, nor any batch row, is ever deleted here.
"""
from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import Batch
from webapp.statuses import BatchStatus


def _candidates() -> dict[str, list[Path]]:
    """The upload files and staging folders on disk, by the batch number they belong to."""
    found: dict[str, list[Path]] = {}
    uploads = Path(current_app.config["UPLOAD_DIR"])
    staging = Path(current_app.config["DATA_DIR"]) / "staging"
    for path in [*uploads.glob("*.xlsx"), *(staging.iterdir() if staging.is_dir() else [])]:
        found.setdefault(path.name.removesuffix(".xlsx"), []).append(path)
    return found


def _removable(batch: Batch | None, paths: list[Path], cutoff: datetime) -> bool:
    """Whether a batch's files may go: it ended before the cutoff, or no row names them and they are
    older than the cutoff (a batch being created writes its upload before its row commits)."""
    if batch is None:
        return all(datetime.fromtimestamp(path.stat().st_mtime) < cutoff for path in paths)
    return batch.status in BatchStatus.FINISHED and batch.finished_at is not None and batch.finished_at < cutoff


def remove_ended_batch_files(moment: datetime) -> list[str]:
    """Delete the uploads and staging folders no batch needs any more; the batch numbers cleaned."""
    cutoff = moment - timedelta(days=int(current_app.config.get("FILE_KEEP_DAYS", 30)))
    found = _candidates()
    batches = {b.batch_no: b for b in db.session.scalars(select(Batch).where(Batch.batch_no.in_(list(found))))}
    cleaned = []
    for batch_no, paths in sorted(found.items()):
        batch = batches.get(batch_no)
        if _removable(batch, paths, cutoff):
            for path in paths:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
            cleaned.append(batch_no)
    db.session.rollback()
    return cleaned

