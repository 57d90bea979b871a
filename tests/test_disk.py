"""A nearly full disk: DATA_DIR on a real 30 MB filesystem (a tmpfs this test mounts), filled until
a few MB are left. The pages and the CLI name the disk (磁盘空间不足, the folder, the free space),
uploads are refused before anything is written, no partial file stays, a Redis that cannot save is
reported as the disk, and everything resumes once space is freed."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import func, select

from tests.conftest import DEMO_TAX_ID, SAMPLES, dispose, login, make_app
from tests.servers import redis_server, wait_for
from webapp.extensions import db
from webapp.models import Batch

MB = 1024 * 1024
SAMPLE = sorted(SAMPLES.glob("*.xlsx"))[0]


@pytest.fixture
def small_disk(tmp_path):
    """A 30 MB tmpfs at tmp_path/disk, unmounted afterwards; skipped where mounting is not allowed."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=30m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path, leave_mb: float) -> Path:
    """A filler file that leaves about `leave_mb` MB free on the disk."""
    import shutil

    filler = disk / "filler.bin"
    size = shutil.disk_usage(disk).free - int(leave_mb * MB)
    with open(filler, "wb") as fh:
        while size > 0:
            chunk = min(size, MB)
            fh.write(b"\0" * chunk)
            size -= chunk
    return filler


def files_in(folder: Path) -> list[Path]:
    """Every file left under a folder (the uploads)."""
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def upload(client):
    """The import dialog's upload of a real export workbook, as the browser sends it."""
    with open(SAMPLE, "rb") as fh:
        return client.post("/batches/import", data={"data_type": "invoices", "method": "file", "tax_ids": DEMO_TAX_ID,
                                                    "file": (fh, "导出.xlsx")},
                           headers={"HX-Request": "true"}, content_type="multipart/form-data")


def test_low_disk_is_named_uploads_refused_nothing_left_and_all_resumes(database_url, redis_url, small_disk):
    app = make_app(database_url, redis_url, small_disk / "data", DISK_WARN_MB=20, DISK_FAULT_MB=5)
    try:
        client, runner = app.test_client(), app.test_cli_runner()
        login(client)
        assert "磁盘空间不足" not in client.get("/batches").text
        filler = fill(small_disk, leave_mb=3)

        page = client.get("/batches").text
        assert "磁盘空间不足" in page and str(small_disk / "data") in page and "仅剩 " in page
        assert "Redis 不可用" not in page
        response = upload(client)
        assert response.status_code < 500
        assert "磁盘空间不足" in response.text and "文件未保存" in response.text
        assert files_in(small_disk / "data" / "uploads") == []
        result = runner.invoke(args=["import-file", "--tax-id", DEMO_TAX_ID, "--file", str(SAMPLE), "--as", "caiwu"])
        assert result.exit_code == 1 and "磁盘空间不足" in result.output and "Traceback" not in result.output
        assert files_in(small_disk / "data" / "uploads") == [] and files_in(small_disk / "data" / "staging") == []
        stats = runner.invoke(args=["pool", "stats", "--tax-id", DEMO_TAX_ID])
        assert stats.exit_code == 0 and "磁盘空间不足" in stats.stderr and json.loads(stats.stdout)
        doctor = json.loads(runner.invoke(args=["doctor", "--json"]).stdout)
        assert doctor["checks"]["disk"]["status"] == "fault" and "磁盘空间不足" in doctor["checks"]["disk"]["message"]
        with app.app_context():
            assert db.session.scalar(select(func.count()).select_from(Batch)) == 0

        filler.unlink()  # space freed: the notice goes and the same upload is taken
        assert "磁盘空间不足" not in client.get("/batches").text
        assert upload(client).status_code == 204
        assert files_in(small_disk / "data" / "uploads") == []  # parsed at receipt: its months are staged
        assert any(p.suffix == ".staged" for p in files_in(small_disk / "data" / "staging"))
    finally:
        dispose(app)


def test_a_redis_that_cannot_save_is_reported_as_the_disk(database_url, small_disk):
    """Redis on the full disk fails its save and refuses writes (MISCONF): every page names the disk,
    not a Redis outage; `doctor` says so too; once space is freed and Redis saves, writes resume."""
    redis_dir = small_disk / "redis"
    redis_dir.mkdir()
    with redis_server(redis_dir) as url:
        connection = Redis.from_url(url)
        app = make_app(database_url, url, small_disk / "data", DISK_WARN_MB=1, DISK_FAULT_MB=1)
        connection.set("ballast", os.urandom(6 * MB))  # a save needs room for this (random: no compression)
        try:
            client = app.test_client()
            login(client)
            filler = fill(small_disk, leave_mb=2)
            connection.config_set("save", "1 1")  # a save point: a failed save now stops writes (MISCONF)
            wait_for(lambda: connection.info("persistence")["rdb_last_bgsave_status"] == "err", 20, "a failed save")
            page = wait_for(lambda: (text := client.get("/batches").text) and "磁盘空间不足" in text and text, 10,
                            "the disk notice")
            assert "Redis 不可用" not in page and "无法写入" in page
            runner = app.test_cli_runner()
            doctor = json.loads(runner.invoke(args=["doctor", "--json"]).stdout)
            assert doctor["checks"]["redis"]["status"] == "fault"
            assert "磁盘空间不足" in doctor["checks"]["redis"]["message"]
            waited = runner.invoke(args=["import-file", "--tax-id", DEMO_TAX_ID, "--file", str(SAMPLE), "--as", "caiwu",
                                         "--wait"])
            assert waited.exit_code == 1 and "Traceback" not in waited.output
            assert "磁盘空间不足" in waited.output and str(small_disk / "data") in waited.output

            filler.unlink()  # Redis saves again by itself and takes writes: the notice goes
            wait_for(lambda: connection.info("persistence")["rdb_last_bgsave_status"] == "ok", 20, "a good save")
            wait_for(lambda: "磁盘空间不足" not in client.get("/batches").text, 10, "the notice gone")
        finally:
            connection.config_set("save", "")  # a Redis that cannot save would refuse to stop
            dispose(app)


def test_a_write_the_disk_cannot_hold_leaves_no_partial_file(small_disk):
    """Whatever gets past the room check (another process filling the disk meanwhile) and fails
    half-way leaves nothing: the file is written under a temporary name and removed on failure."""
    from webapp.disk import written_atomically

    fill(small_disk, leave_mb=1)
    target = small_disk / "uploads" / "B1.xlsx"
    target.parent.mkdir()
    with pytest.raises(OSError):
        with written_atomically(target) as temp:
            temp.write_bytes(os.urandom(3 * MB))
    assert files_in(small_disk / "uploads") == []


def test_a_save_that_hits_the_full_disk_names_the_disk_instead_of_a_500(database_url, redis_url, small_disk):
    """The SQLite file on the full disk: saving a form cannot write its journal; the page says
    磁盘空间不足 with the folder and what is left (HTTP 507), not 服务器内部错误."""
    import shutil

    if not database_url.startswith("sqlite:///"):
        pytest.skip("the SQLite file on the small disk is what cannot grow here")
    db_file = small_disk / "data" / "invoice_sync.db"
    db_file.parent.mkdir()
    shutil.copyfile(database_url.removeprefix("sqlite:///"), db_file)
    app = make_app(f"sqlite:///{db_file}", redis_url, small_disk / "data", DISK_WARN_MB=1, DISK_FAULT_MB=0,
                   PROPAGATE_EXCEPTIONS=False)  # as in production: the error page, not the exception
    try:
        client = app.test_client()
        login(client, "admin", "admin123")
        fill(small_disk, leave_mb=0)
        response = client.post("/admin/companies",
                               data={"tax_id": "91330100MA2H4K7Q2Y", "name": "新公司" * 50, "receipt_channel": ""})
        assert response.status_code == 507, response.text[-3000:]
        assert "磁盘空间不足" in response.text and str(small_disk / "data") in response.text
        assert "服务器内部错误" not in response.text
    finally:
        dispose(app)
