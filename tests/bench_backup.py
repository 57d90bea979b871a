"""`make bench`'s backup step (docs/performance.md, Backup and restore): `flask backup create` of the
bench pool and `flask backup restore` of it into a fresh SQLite database, each timed as the whole
command an operator runs, with
the archive's size and whether the restored tables' checksums equal the manifest's."""
from __future__ import annotations

import json
import subprocess
import time
import zipfile
from pathlib import Path

from tests.bench import FLASK, ROOT, _env

DEMO_YEAR = 36_000  # invoices a year of the demo company (README)


def _flask(env: dict, *args) -> tuple[float, dict]:
    """Seconds of one `flask --app wsgi …` command and the JSON it printed."""
    start = time.perf_counter()
    done = subprocess.run([FLASK, "--app", "wsgi", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          check=True)
    return time.perf_counter() - start, json.loads(done.stdout)


def backup_bench(folder: Path, url: str, redis_url: str, name: str = "sqlite", restore: bool = True) -> dict:
    """Back up the database at `url` (the pool step's), restore it into a new SQLite file, compare
    (`restore` false: the backup alone, where time does not allow the restore)."""
    archive = folder / f"bench-backup-{name}.zip"
    backup_s, created = _flask(_env(folder, url, redis_url), "backup", "create", "--to", str(archive))
    if not restore:
        rows = sum(created["rows"].values())
        return {"invoices": created["rows"].get("invoice", 0), "rows": rows, "backup_s": round(backup_s, 1),
                "backup_rows_per_s": round(rows / backup_s), "size_mb": round(archive.stat().st_size / 2**20, 1),
                "restore": "not run"}
    restored_env = _env(folder, f"sqlite:///{folder / f'restored-{name}.db'}", redis_url)
    restore_s, restored = _flask(restored_env, "backup", "restore", str(archive))
    _, checksums = _flask(restored_env, "backup", "checksums")
    checksums.pop("sandbox", None)  # every command's JSON says so while a channel is the sandbox
    manifest = json.loads(zipfile.ZipFile(archive).read("manifest.json"))
    expected = {table: {"rows": t["rows"], "sha256": t["sha256"]} for table, t in manifest["tables"].items()}
    rows = sum(created["rows"].values())
    invoices = created["rows"].get("invoice", 0)
    per_year = backup_s * DEMO_YEAR / invoices if invoices >= DEMO_YEAR else None  # a small pool: start-up dominates
    return {"invoices": invoices, "lines": created["rows"].get("invoice_line", 0),
            "rows": rows, "size_mb": round(archive.stat().st_size / 2**20, 1), "backup_s": round(backup_s, 1),
            "backup_rows_per_s": round(rows / backup_s), "restore_s": round(restore_s, 1),
            "restore_rows_per_s": round(rows / restore_s), "restored_rows": sum(restored["restored"].values()),
            "checksums_equal": checksums == expected, "backup_s_per_36k_invoices": per_year and round(per_year, 1),
            "target": "a year of the demo company (about 36,000 invoices) backed up in under 10 s",
            "met": checksums == expected and (per_year is None or per_year < 10)}
