"""Moving a single-server install from SQLite to PostgreSQL, step by step as
docs/deploy.md ("Moving from SQLite to PostgreSQL") says, with the real `flask` commands in their own
processes: a populated SQLite install is backed up, DATABASE_URL is pointed at a new PostgreSQL
database, the backup is restored there, and the product started on it gives the same figures.
Runs where PostgreSQL is at hand (TEST_DATABASE_URL, as CI sets it)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import DEMO_TAX_ID, ROOT
from .test_backup import fresh_postgresql

pytestmark = pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="needs PostgreSQL (TEST_DATABASE_URL)")


def flask(env: dict, *args) -> dict | list | None:
    """One `flask --app wsgi …` command as an operator runs it; what it printed."""
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout) if done.stdout.strip().startswith(("{", "[")) else None


def _figures(env: dict) -> dict:
    return {"stats": flask(env, "pool", "stats", "--tax-id", DEMO_TAX_ID),
            "summary": flask(env, "pool", "summary", "--tax-id", DEMO_TAX_ID, "--year", "2025"),
            "diff": flask(env, "pool", "diff", "--tax-id", DEMO_TAX_ID, "--month", "2025-02"),
            "checksums": flask(env, "backup", "checksums")}


def test_a_sqlite_install_moves_to_postgresql_with_every_figure_kept(tmp_path, redis_url):
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    sqlite = {**base, "DATA_DIR": str(tmp_path / "install"), "REDIS_URL": redis_url}
    flask(sqlite, "db", "upgrade")  # what `make install` does on a fresh machine
    flask(sqlite, "seed-demo")
    flask(sqlite, "download", "--tax-id", DEMO_TAX_ID, "--channel", "rpa", "--from", "2025-01", "--to", "2025-03",
          "--data", "both", "--as", "admin", "--wait")
    before = _figures(sqlite)
    assert before["stats"]["invoices"] > 5000

    # stop (nothing runs here), back up, point DATABASE_URL at PostgreSQL, restore, start
    archive = tmp_path / "move.zip"
    flask(sqlite, "backup", "create", "--to", str(archive))
    with fresh_postgresql() as url:
        postgresql = {**sqlite, "DATABASE_URL": url}
        restored = flask(postgresql, "backup", "restore", str(archive))
        assert restored["engine"] == "postgresql"
        assert restored["restored"]["invoice"] == before["stats"]["invoices"]
        flask(postgresql, "db", "upgrade")  # `make run` migrates before serving: nothing left to do
        assert _figures(postgresql) == before
        # the moved install keeps working: a new download adds to the restored pool
        flask(postgresql, "download", "--tax-id", DEMO_TAX_ID, "--channel", "rpa", "--from", "2025-04", "--to",
              "2025-04", "--as", "admin", "--wait")
        assert flask(postgresql, "pool", "stats", "--tax-id", DEMO_TAX_ID)["invoices"] > before["stats"]["invoices"]
