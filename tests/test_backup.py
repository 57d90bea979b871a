"""备份与恢复 (README, Backup and restore): `backup create` then `backup restore` into a fresh SQLite file and a fresh
PostgreSQL database gives the same figures and checksums; a backup taken while a download runs holds
each month whole or not at all; a damaged, tampered or foreign archive is refused with nothing written."""
from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from webapp.extensions import db
from wsgi import create_app

from .conftest import _SESSION_DIR, DEMO_TAX_ID, SandboxControl, cli_json
from .servers import scratch_postgresql
from .test_faults import start_worker, stop

PG_URL = os.environ.get("TEST_DATABASE_URL")
YEAR = "2025"


def _figures(runner) -> dict:
    """What a finance user compares after a restore: pool stats, 销项汇总, 来源核对 of a month, and
    every table's row count and checksum."""
    return {"stats": cli_json(runner, "pool", "stats", "--tax-id", DEMO_TAX_ID),
            "summary": cli_json(runner, "pool", "summary", "--tax-id", DEMO_TAX_ID, "--year", YEAR),
            "diff": cli_json(runner, "pool", "diff", "--tax-id", DEMO_TAX_ID, "--month", f"{YEAR}-03"),
            "checksums": cli_json(runner, "backup", "checksums")}


def _fill_pool(runner, months=("2025-01", "2025-03")) -> None:
    """Invoices from two sources (RPA and 乐企) with usage status, so every pool table holds rows."""
    SandboxControl(runner.app.config["SANDBOX_DB"]).company(volume={"82": 60, "81": 20, "01": 5})
    for channel in ("rpa", "leqi"):
        cli_json(runner, "download", "--tax-id", DEMO_TAX_ID, "--channel", channel, "--from", months[0], "--to",
                 months[1], "--data", "both", "--as", "admin", "--wait")


@contextmanager
def fresh_app(url: str):
    """An app on a database nobody has migrated or written (the target of a restore). Its DATA_DIR is in
    the session folder, not under tmp_path: its bundled Redis's socket path must stay under 100
    characters, and pytest-xdist lengthens tmp_path by a folder per worker."""
    data = tempfile.mkdtemp(prefix="restored-", dir=_SESSION_DIR)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "DATA_DIR": data, "TESTING": True})
    try:
        yield app
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        from jobs.redis_server import shutdown

        shutdown(Path(data))  # the bundled Redis its in-process commands started: nothing outlives the test


@contextmanager
def fresh_postgresql():
    """A new PostgreSQL database of our own next to TEST_DATABASE_URL's."""
    with scratch_postgresql(PG_URL, f"backup_{uuid.uuid4().hex[:10]}") as url:
        yield url


@contextmanager
def _target_url(kind: str, tmp_path):
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / f'restored-{uuid.uuid4().hex[:6]}.db'}"
    else:
        with fresh_postgresql() as url:
            yield url


TARGETS = ["sqlite"] + (["postgresql"] if PG_URL else [])


@pytest.mark.parametrize("target", TARGETS)
def test_backup_restores_into_a_fresh_database_with_the_same_figures(runner, tmp_path, target):
    _fill_pool(runner)
    before = _figures(runner)
    assert before["stats"]["invoices"] > 100 and before["checksums"]["invoice_source"]["rows"] > 100
    archive = tmp_path / "backup.zip"
    created = cli_json(runner, "backup", "create", "--to", str(archive))
    assert created["rows"]["invoice"] == before["stats"]["invoices"]
    manifest = json.loads(zipfile.ZipFile(archive).read("manifest.json"))
    assert {name: {"rows": t["rows"], "sha256": t["sha256"]} for name, t in manifest["tables"].items()} \
        == before["checksums"]

    with _target_url(target, tmp_path) as url, fresh_app(url) as restored:
        target_runner = restored.test_cli_runner()
        result = cli_json(target_runner, "backup", "restore", str(archive))
        assert result["restored"] == {name: t["rows"] for name, t in before["checksums"].items()}
        assert _figures(target_runner) == before
        # the restored install goes on: new rows get fresh ids (PostgreSQL's sequences were reset)
        cli_json(target_runner, "user", "add", "new-after-restore", "--password", "pw-123456", "--org", "演示组织")
        cli_json(target_runner, "download", "--tax-id", DEMO_TAX_ID, "--channel", "rpa", "--from", "2025-04",
                 "--to", "2025-04", "--as", "admin", "--wait")


def _damaged(archive, tmp_path) -> dict:
    """Each way an archive can be wrong, as a file."""
    data = archive.read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    flipped = tmp_path / "one-byte.zip"
    with zipfile.ZipFile(archive) as zipped:  # one byte changed inside the invoices' compressed rows
        info = zipped.getinfo("tables/invoice.jsonl")
    at = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
    flipped.write_bytes(data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:])
    tampered = _rewritten(archive, tmp_path / "tampered.zip", "tables/invoice.jsonl",
                          lambda rows: rows.replace(b".", b".9", 1))  # one amount changed, manifest as it was
    manifest = _rewritten(archive, tmp_path / "manifest.zip", "manifest.json",  # the manifest's count changed
                          lambda text: text.replace(b'"rows": ', b'"rows": 1', 1))
    incomplete = _rewritten(archive, tmp_path / "incomplete.zip", "manifest.json",  # a table's columns gone
                            lambda text: text.replace(b'"columns"', b'"kolumns"', 1))
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as out:
        out.writestr("readme.txt", "not a backup")
    return {"truncated": (truncated, "不是有效的备份文件"), "one byte changed": (flipped, "已损坏"),
            "tampered": (tampered, "校验和与清单不符"), "tampered manifest": (manifest, "校验和与清单不符"),
            "incomplete manifest": (incomplete, "说明不完整"),
            "foreign": (foreign, "不是本产品的备份"), "not a zip": (tmp_path / "not-a-zip.zip", "不是有效的备份文件")}


def _rewritten(archive, path, name: str, change):
    """A copy of the archive with one member's bytes changed."""
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(path, "w") as out:
        for item in source.infolist():
            content = source.read(item)
            out.writestr(item, change(content) if item.filename == name else content)
    return path


def test_a_damaged_tampered_or_foreign_archive_is_refused_with_nothing_written(runner, tmp_path):
    _fill_pool(runner, ("2025-01", "2025-01"))
    archive = tmp_path / "backup.zip"
    cli_json(runner, "backup", "create", "--to", str(archive))
    (tmp_path / "not-a-zip.zip").write_text("hello")
    for case, (path, reason) in _damaged(archive, tmp_path).items():
        with fresh_app(f"sqlite:///{tmp_path / f'{case}.db'}") as restored:
            result = restored.test_cli_runner().invoke(args=["backup", "restore", str(path)])
            assert result.exit_code != 0, case
            assert reason in result.output, (case, result.output)
            with restored.app_context():
                assert inspect(db.engine).get_table_names() == [], case  # not even migrated


def test_an_unmigrated_database_is_not_backed_up(tmp_path):
    with fresh_app(f"sqlite:///{tmp_path / 'empty.db'}") as empty:
        result = empty.test_cli_runner().invoke(args=["backup", "create", "--to", str(tmp_path / "x.zip")])
    assert result.exit_code != 0 and "db upgrade" in result.output
    assert not list(tmp_path.glob("x.zip*"))


def test_a_database_holding_rows_is_refused_unless_replace(app, runner, tmp_path):
    _fill_pool(runner, ("2025-01", "2025-01"))
    archive = tmp_path / "backup.zip"
    cli_json(runner, "backup", "create", "--to", str(archive))
    before = _figures(runner)
    cli_json(runner, "user", "add", "written-later", "--password", "pw-123456", "--org", "演示组织")
    refused = runner.invoke(args=["backup", "restore", str(archive)])
    assert refused.exit_code != 0 and "--replace" in refused.output and "不是空的" in refused.output
    assert cli_json(runner, "backup", "checksums")["user"]["rows"] == before["checksums"]["user"]["rows"] + 1

    cli_json(runner, "backup", "restore", str(archive), "--replace")
    assert _figures(runner) == before


def test_a_backup_taken_during_a_download_holds_each_month_whole_or_not_at_all(app, runner, tmp_path):
    """A 36-month download runs in a real worker process while backups are taken; a backup that
    caught it half-way restores with every month either as the finished download left it or empty."""
    box = SandboxControl(app.config["SANDBOX_DB"])
    box.company(volume={"82": 120, "81": 40})
    box.control(latency_ms=30)
    batch = cli_json(runner, "download", "--tax-id", DEMO_TAX_ID, "--channel", "rpa", "--from", "2023-01",
                     "--to", "2025-12", "--as", "admin")[0]
    worker = start_worker(app, tmp_path / "worker.log")
    archives = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            archive = tmp_path / f"during-{len(archives)}.zip"
            archives.append((archive, cli_json(runner, "backup", "create", "--to", str(archive))["rows"]["invoice"]))
            status = cli_json(runner, "batch", "show", batch["batch_no"])["status"]
            if status not in ("pending", "preprocessing", "syncing"):
                break
    finally:
        stop(worker)
    final = _months(app)
    assert len(final) == 36
    halfway = [path for path, invoices in archives if 0 < invoices < sum(final.values())]
    assert halfway, f"no backup caught the download half-way: {archives}"
    for path in halfway[:2]:
        with fresh_app(f"sqlite:///{tmp_path / (path.stem + '.db')}") as restored:
            cli_json(restored.test_cli_runner(), "backup", "restore", str(path))
            months = _months(restored)
            assert months and all(count == final[month] for month, count in months.items()), (months, final)


def _months(app) -> dict[str, int]:
    """Invoices per month in an app's pool."""
    with app.app_context():
        rows = db.session.execute(text("SELECT month, count(*) FROM invoice GROUP BY month")).all()
        db.session.remove()
    return dict(rows)


def test_a_backup_made_at_an_older_revision_restores_and_is_migrated_forward(tmp_path):
    from flask_migrate import upgrade

    from .test_migrations import ORDINARY, SPECIAL, _as_lists, _seed

    with fresh_app(f"sqlite:///{tmp_path / 'old.db'}") as old:
        with old.app_context():
            upgrade(revision="0012")  # as a version of the product before 0013 left it
            _seed()
        archive = tmp_path / "old.zip"
        assert cli_json(old.test_cli_runner(), "backup", "create", "--to", str(archive))["schema_revision"] == "0012"
    listed = ([([SPECIAL, ORDINARY], ["81", "82"]), (["全部"], []), ([], [])], [["B1", "B2"], []], 3)
    for target in ("unmigrated", "migrated to head, empty"):
        with fresh_app(f"sqlite:///{tmp_path / f'{target}.db'}") as restored:
            if target != "unmigrated":
                with restored.app_context():
                    upgrade()
            result = cli_json(restored.test_cli_runner(), "backup", "restore", str(archive))
            assert (result["from_revision"], result["to_revision"]) == ("0012", _head(restored))
            with restored.app_context():
                assert _as_lists() == listed, target


def _head(app) -> str:
    from alembic.script import ScriptDirectory

    with app.app_context():
        return ScriptDirectory.from_config(app.extensions["migrate"].migrate.get_config()).get_current_head()
