"""系统管理 → 备份 (admins only): the backup runs (time, size, invoices, result), 立即备份 (queued for the
worker, never run in the request), an archive's download (audit-logged), and the last failure."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, send_file, url_for
from flask_login import current_user
from flask_wtf import FlaskForm

from webapp.accounts import audit
from webapp.backup import runs
from webapp.extensions import db
from webapp.models import BackupRun
from webapp.statuses import BackupFailure, BackupStatus, BackupTrigger

bp = Blueprint("backup", __name__, url_prefix="/admin/backups")


@bp.before_request
def _operators_only():
    """A backup holds the whole database, every org's rows and password hashes: only admins of the
    install's own org (the first one, which `make install` seeds) see it; another org's admins manage
    their own org only (README, Access)."""
    if not current_user.is_authenticated or not current_user.is_admin:
        abort(403)
    if current_user.org_id != runs.install_org_id():
        abort(403)


@bp.app_template_global("install_org_id")
def _install_org_id() -> int | None:
    """For 系统管理's tabs: 备份 is shown to the admins who may open it."""
    return runs.install_org_id()


@bp.get("")
def index():
    """The runs, newest first, the settings they follow, and the last failure if newer than a success."""
    return render_template("backup/index.html", runs=runs.recent_runs(), form=FlaskForm(),
                           last_failure=runs.last_failure(), archive_path=runs.archive_path,
                           backup_time=runs.backup_time(), keep=current_app.config.get("BACKUP_KEEP", 7),
                           BackupStatus=BackupStatus, BackupTrigger=BackupTrigger, BackupFailure=BackupFailure)


@bp.post("")
def backup_now():
    """立即备份: queue a run for the worker; the page lists it as 排队中 until it ends."""
    if not FlaskForm().validate_on_submit():
        abort(400)
    run = runs.request_backup(current_user.username)
    audit.record("backup.request", f"backup-{run.id}")
    flash("已加入备份队列，稍后刷新本页查看结果", "info")
    return redirect(url_for("backup.index"))


@bp.get("/<int:run_id>/download")
def download(run_id: int):
    """An archive as a file download, recorded in the audit log (it holds every table)."""
    run = db.session.get(BackupRun, run_id)
    path = runs.archive_path(run) if run is not None else None
    if path is None:
        abort(404)
    audit.record("backup.download", run.file_name, size=run.size)
    return send_file(path, as_attachment=True, download_name=run.file_name, mimetype="application/zip")
