"""The backup job: run by the worker for a nightly or 立即备份 run (webapp/backup/runs.py)."""
from __future__ import annotations

from webapp.backup import runs
from webapp.extensions import db


def run_backup_job(run_id: int) -> dict:
    """Write one run's archive; what it recorded, for RQ's result."""
    try:
        run = runs.run_backup(run_id)
        return {"run": run_id, "status": run.status if run else None, "file": run.file_name if run else None}
    finally:
        db.session.remove()
