"""Backup runs: the nightly backup (BACKUP_TIME, local time), 立即备份, pruning to BACKUP_KEEP archives,
and what 系统管理 → 备份 and the health checks read (the newest good backup's age).

A nightly run is claimed by inserting its row, unique on the night (as auto-update runs are unique on
(schedule, period): docs in jobs/scheduler.py), so two scheduler cycles or processes never run one
night twice, and a night missed while the scheduler was down is caught up at its next cycle.
"""
from __future__ import annotations

import os
from datetime import date, datetime, time, timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from webapp import backup
from webapp.background import background
from webapp.clock import now
from webapp.extensions import db
from webapp.models import BackupRun, Org
from webapp.statuses import BackupFailure, BackupStatus, BackupTrigger
from webapp.transactions import write_transaction

STALE_AFTER = timedelta(hours=1)  # a run not finished by then lost its job (killed, queue lost)
WARN_AFTER = timedelta(days=2)  # the health check warns when the newest good backup is older


def backup_time() -> time | None:
    """BACKUP_TIME as a local time of day, None when nightly backups are turned off ("off")."""
    value = str(current_app.config.get("BACKUP_TIME", "02:30")).strip().lower()
    if value in ("off", "", "none"):
        return None
    return datetime.strptime(value, "%H:%M").time()


def night_of(moment: datetime, at: time) -> date:
    """The night whose backup is due at `moment`: today once today's time has passed, else yesterday."""
    return moment.date() if moment.time() >= at else moment.date() - timedelta(days=1)


def claim_nightly(moment: datetime) -> BackupRun | None:
    """The nightly run due at `moment` if nobody has claimed it yet (its row is then committed)."""
    at = backup_time()
    if at is None:
        return None
    night = night_of(moment, at)
    if db.session.scalar(select(BackupRun.id).filter_by(night=night)) is not None:
        return None
    try:
        with write_transaction():
            run = BackupRun(trigger=BackupTrigger.NIGHTLY, night=night, status=BackupStatus.PENDING,
                            requested_by="系统", requested_at=moment)
            db.session.add(run)
    except IntegrityError:  # another scheduler cycle or process claimed it first
        return None
    return run


def request_backup(username: str) -> BackupRun:
    """立即备份: a run queued now; the archive is written by a worker, not in the request."""
    with write_transaction():
        run = BackupRun(trigger=BackupTrigger.MANUAL, status=BackupStatus.PENDING, requested_by=username[:64],
                        requested_at=now())
        db.session.add(run)
    background().enqueue_backup(run)
    return run


def fail_stale(moment: datetime) -> int:
    """Runs pending or running for over an hour lost their job: failed, so the page says so."""
    with write_transaction():
        result = db.session.execute(
            update(BackupRun).where(BackupRun.status.in_([BackupStatus.PENDING, BackupStatus.RUNNING]),
                                    BackupRun.requested_at < moment - STALE_AFTER)
            .values(status=BackupStatus.FAILED, failure=BackupFailure.LOST, finished_at=moment))
    return result.rowcount


def scheduled_cycle(moment: datetime) -> BackupRun | None:
    """What the scheduler does every cycle: fail lost runs, claim and queue the nightly one if due."""
    fail_stale(moment)
    run = claim_nightly(moment)
    if run is not None:
        background().enqueue_backup(run)
    return run


def run_backup(run_id: int) -> BackupRun:
    """The job: write the archive into DATA_DIR/backups, record the outcome, prune old archives."""
    run = db.session.get(BackupRun, run_id)
    if run is None or run.status not in (BackupStatus.PENDING, BackupStatus.RUNNING):
        return run
    with write_transaction():
        run.status = BackupStatus.RUNNING
    try:
        result = backup.create_backup(backup.default_path(f"-{run.id}"))
    except OSError as error:
        return _finish(run, failure=BackupFailure.DISK, failure_detail=str(error)[:500])
    except SQLAlchemyError as error:
        return _finish(run, failure=BackupFailure.DATABASE, failure_detail=str(error.orig or error)[:500])
    except Exception as error:  # recorded for the page, then raised for the worker's log
        _finish(run, failure=BackupFailure.OTHER, failure_detail=f"{type(error).__name__}: {error}"[:500])
        raise
    _finish(run, file_name=Path(result["path"]).name, size=result["size"],
            invoices=result["tables"].get("invoice", {}).get("rows", 0))
    prune()
    return run


def _finish(run: BackupRun, failure: BackupFailure | None = None, **values) -> BackupRun:
    """Record a run's end (its own transaction: the backup itself wrote nothing to the database)."""
    db.session.rollback()
    with write_transaction():
        run.status = BackupStatus.FAILED if failure else BackupStatus.SUCCEEDED
        run.failure = failure
        run.finished_at = now()
        for name, value in values.items():
            setattr(run, name, value)
    return run


def archive_path(run: BackupRun) -> Path | None:
    """A run's archive on disk, None once pruned (or never written)."""
    if not run.file_name:
        return None
    path = backup.backup_dir() / Path(run.file_name).name
    return path if path.is_file() else None


def prune(keep: int | None = None) -> list[str]:
    """Keep the newest BACKUP_KEEP archives in DATA_DIR/backups, delete older ones (and leftover
    '.partial' files of runs that died); the rows stay, as the history the page lists."""
    keep = current_app.config.get("BACKUP_KEEP", 7) if keep is None else keep
    folder = backup.backup_dir()
    archives = sorted(folder.glob("invoice-sync-*.zip"), key=lambda path: path.name, reverse=True)
    running = db.session.scalar(select(BackupRun.id).filter_by(status=BackupStatus.RUNNING)) is not None
    stale = [] if running else list(folder.glob("*.partial"))
    removed = archives[max(keep, 1):] + stale
    for path in removed:
        os.unlink(path)
    return [path.name for path in removed]


def newest_good_backup_age(moment: datetime | None = None) -> timedelta | None:
    """How old the newest successful backup is (None: there is none), for the health checks."""
    finished = db.session.scalar(select(BackupRun.finished_at).filter_by(status=BackupStatus.SUCCEEDED)
                                 .order_by(BackupRun.finished_at.desc()).limit(1))
    return None if finished is None else (moment or now()) - finished


def install_org_id() -> int | None:
    """The install's own org, the first one (`make install` seeds it): its admins keep the backups,
    which hold every org's rows; another org's admins manage their own org only."""
    return db.session.scalar(select(func.min(Org.id)))


def recent_runs(limit: int = 30) -> list[BackupRun]:
    """The page's list, newest first."""
    return db.session.scalars(select(BackupRun).order_by(BackupRun.requested_at.desc(), BackupRun.id.desc())
                              .limit(limit)).all()


def last_failure() -> BackupRun | None:
    """The newest failed run, if it is newer than the newest good one (else it no longer matters)."""
    failed = db.session.scalar(select(BackupRun).filter_by(status=BackupStatus.FAILED)
                               .order_by(BackupRun.requested_at.desc()).limit(1))
    good = db.session.scalar(select(BackupRun.requested_at).filter_by(status=BackupStatus.SUCCEEDED)
                             .order_by(BackupRun.requested_at.desc()).limit(1))
    return failed if failed is not None and (good is None or failed.requested_at > good) else None
