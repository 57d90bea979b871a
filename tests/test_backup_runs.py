"""Scheduled backups and 系统管理 → 备份 (README, Backup and restore): one nightly run a night, caught up when
missed, run by a real worker; pruning to BACKUP_KEEP; 立即备份, download (audit-logged) and the last
failure on the page, admins only; the health check on the newest good backup's age."""
from __future__ import annotations

import zipfile
from datetime import datetime

from sqlalchemy import select

from webapp.backup import runs
from webapp.extensions import db
from webapp.models import AuditLog, BackupRun

from .conftest import login


def _cycle(app, moment: datetime):
    """One scheduler cycle at `moment`: the night it claimed, if any."""
    with app.app_context():
        run = runs.scheduled_cycle(moment)
        night = run.night if run else None
        db.session.remove()
    return night


def _runs(app) -> list[tuple]:
    with app.app_context():
        rows = [(r.night, r.status, r.invoices, r.file_name is not None)
                for r in db.session.scalars(select(BackupRun).order_by(BackupRun.id))]
        db.session.remove()
    return rows


def test_the_nightly_backup_runs_once_a_night_and_a_missed_night_is_caught_up(app, work):
    app.config["BACKUP_TIME"] = "02:30"
    assert _cycle(app, datetime(2026, 3, 10, 2, 40)).isoformat() == "2026-03-10"
    work()
    assert _cycle(app, datetime(2026, 3, 10, 2, 41)) is None  # never twice a night
    assert _cycle(app, datetime(2026, 3, 11, 2, 29)) is None  # the 11th's time has not come
    assert _cycle(app, datetime(2026, 3, 11, 2, 31)).isoformat() == "2026-03-11"
    work()
    # the scheduler was down on the night of the 12th: its next cycle, on the 13th's morning, catches up
    assert _cycle(app, datetime(2026, 3, 13, 1, 0)).isoformat() == "2026-03-12"
    work()
    assert [(str(night), status, has_file) for night, status, _, has_file in _runs(app)] == [
        ("2026-03-10", "succeeded", True), ("2026-03-11", "succeeded", True), ("2026-03-12", "succeeded", True)]
    with app.app_context():
        assert sorted(p.name for p in runs.backup.backup_dir().iterdir()) == sorted(
            r.file_name for r in db.session.scalars(select(BackupRun)))


def test_old_archives_are_pruned_to_backup_keep(app, work):
    app.config["BACKUP_KEEP"] = 2
    for day in (1, 2, 3):
        app.config["CLOCK_NOW"] = datetime(2026, 4, day, 3, 0)
        _cycle(app, app.config["CLOCK_NOW"])
        work()
    with app.app_context():
        kept = sorted(p.name for p in runs.backup.backup_dir().iterdir())
        newest = [r.file_name for r in db.session.scalars(select(BackupRun).order_by(BackupRun.id))][1:]
    assert kept == sorted(newest)


def test_a_run_whose_job_was_lost_is_failed_after_an_hour(app):
    _cycle(app, datetime(2026, 3, 10, 2, 40))  # queued, but no worker ever runs it
    _cycle(app, datetime(2026, 3, 10, 3, 41))
    with app.app_context():
        assert runs.last_failure().failure == "lost"


def test_nightly_backups_can_be_turned_off(app):
    app.config["BACKUP_TIME"] = "off"
    assert _cycle(app, datetime(2026, 3, 10, 12, 0)) is None


def test_admin_backs_up_now_downloads_and_sees_the_last_failure(app, client, work):
    login(client, "admin", "admin123")
    page = client.get("/admin/backups")
    assert page.status_code == 200 and "还没有备份" in page.text and "立即备份" in page.text
    assert client.post("/admin/backups").status_code == 302
    assert "排队中" in client.get("/admin/backups").text  # queued, not run in the request
    work()
    page = client.get("/admin/backups").text
    assert "成功" in page and "下载" in page
    with app.app_context():
        run = db.session.scalar(select(BackupRun))
        assert run.invoices == 0 and run.size > 0
    download = client.get(f"/admin/backups/{run.id}/download")
    assert download.status_code == 200
    assert zipfile.ZipFile(__import__("io").BytesIO(download.data)).read("manifest.json")
    with app.app_context():
        assert [e.action for e in db.session.scalars(select(AuditLog).where(AuditLog.action.like("backup.%"))
                                                     .order_by(AuditLog.id))] == ["backup.request", "backup.download"]

    # the backups folder cannot be written: the run fails, and the page says why and what to do
    with app.app_context():
        backups = runs.backup.backup_dir()
    for path in backups.iterdir():
        path.unlink()
    backups.rmdir()
    backups.write_text("a file where the folder should be")
    client.post("/admin/backups")
    work()
    page = client.get("/admin/backups").text
    assert "最近一次备份失败" in page and "磁盘空间不足或目录不可写" in page


def test_finance_users_cannot_see_or_download_backups(app, client, work):
    with app.app_context():
        run = runs.request_backup("admin")
        run_id = run.id
    work()
    login(client)
    assert client.get("/admin/backups").status_code == 403
    assert client.post("/admin/backups").status_code == 403
    assert client.get(f"/admin/backups/{run_id}/download").status_code == 403


def test_the_health_check_warns_when_the_newest_good_backup_is_over_two_days_old(app, work, runner):
    """flask doctor's 备份 line: a warning with no good backup yet, fine after one, a warning again
    once it is over two days old."""
    from webapp.health.checks import backup

    app.config["CLOCK_NOW"] = datetime(2026, 5, 1, 3, 0)
    with app.app_context():
        finding = backup()
        assert finding.status == "warning" and "还没有成功的备份" in finding.message
        runs.request_backup("admin")
    work()
    app.config["CLOCK_NOW"] = datetime(2026, 5, 2, 12, 0)
    with app.app_context():
        assert backup().status == "ok"
    app.config["CLOCK_NOW"] = datetime(2026, 5, 3, 4, 0)
    with app.app_context():
        finding = backup()
        assert finding.status == "warning" and "2 天前" in finding.message
    doctor = runner.invoke(args=["doctor", "--json"])
    assert '"backup"' in doctor.output and "2 天前" in doctor.output


def test_another_orgs_admin_cannot_see_the_installs_backups(app, client, runner):
    from .conftest import cli_json

    cli_json(runner, "user", "add", "other-admin", "--password", "pw-123456", "--org", "另一个组织", "--role", "admin")
    login(client, "other-admin", "pw-123456")
    assert client.get("/admin/backups").status_code == 403
    assert "/admin/backups" not in client.get("/admin/companies").text  # no tab that would answer 403


def test_the_scheduler_process_queues_the_nightly_backup_and_a_worker_writes_it(app, tmp_path, monkeypatch):
    """The real `flask scheduler` and worker processes: a night whose backup time has passed is backed
    up once, however many cycles the scheduler runs meanwhile."""
    import time

    from .test_faults import start_scheduler, start_worker, stop

    monkeypatch.setenv("BACKUP_TIME", "00:00")  # today's time has passed: due at the scheduler's start
    scheduler, worker = start_scheduler(app, tmp_path / "scheduler.log"), start_worker(app, tmp_path / "worker.log")
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not [r for r in _runs(app) if r[1] == "succeeded"]:
            time.sleep(0.5)
        time.sleep(5)  # two more reconcile cycles (every 2 s here): still one run for the night
    finally:
        stop(scheduler)
        stop(worker)
    [(night, status, invoices, has_file)] = _runs(app)
    assert (status, invoices, has_file) == ("succeeded", 0, True), (tmp_path / "scheduler.log").read_text()[-2000:]


def test_a_restored_nightly_archive_does_not_leave_its_own_run_running(app, runner, tmp_path, work):
    """The nightly archive is taken while its run is 备份中: restored, that run is closed with a reason
    at once, not failed as lost an hour later."""
    from .conftest import cli_json
    from .test_backup import fresh_app

    _cycle(app, datetime(2026, 3, 10, 2, 40))
    work()
    with app.app_context():
        archive = runs.archive_path(db.session.scalar(select(BackupRun)))
    with fresh_app(f"sqlite:///{tmp_path / 'restored.db'}") as restored:
        cli_json(restored.test_cli_runner(), "backup", "restore", str(archive))
        with restored.app_context():
            [run] = db.session.scalars(select(BackupRun)).all()
            assert (run.status, run.failure) == ("failed", "restored")
