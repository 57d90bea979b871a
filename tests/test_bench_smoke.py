"""`make bench` in its small size: every step runs and the JSON carries every figure (no timing asserted)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("cold_start", "export", "file_import", "live_import", "pool_sqlite", "download", "subtask_overhead",
            "bulk_plan", "summary", "batch_list", "backup_sqlite", "pages_under_load", "coverage_two_sources",
            "postgres_5m")


def test_small_bench_completes_with_every_figure():
    env = {k: v for k, v in os.environ.items() if k not in ("BENCH_DATABASE_URL", "BENCH_PLANS", "REDIS_URL")}
    out = subprocess.run([sys.executable, "-m", "tests.bench"], cwd=ROOT, env={**env, "BENCH_SIZE": "small"},
                         capture_output=True, text=True, timeout=420, check=True)
    result = json.loads(out.stdout)
    assert set(SECTIONS) <= set(result)
    assert result["file_import"]["status"] == "succeeded"
    assert result["live_import"]["statuses"] == ["succeeded"]
    assert result["export"]["invoices"] == 2000
    assert result["bulk_plan"]["subtasks"] == 2 * 60
    run = result["bulk_plan"]["simulated_run"]  # the plan run to its end over simulated days
    assert run["batches"] == {"succeeded": 3} and run["days"] == 2
    assert run["applications"] == run["applications_the_bureau_saw"] == 3 * 60 * 6 and run["most_a_day_per_key"] == 1
    assert result["backup_sqlite"]["checksums_equal"] and result["backup_sqlite"]["invoices"] == 5000
    assert result["backup_sqlite"]["restored_rows"] == result["backup_sqlite"]["rows"]
    assert result["batch_list"]["polls_on_page"] == 1
    assert result["batch_list"]["polls_on_page_with_nothing_running"] == 0
    load = result["pages_under_load"]
    assert load["batches"] == 5 and all(load[path]["requests"] for path in ("/pool", "/batches"))
    assert all(load["never_pausing"][path]["requests"] for path in ("/pool", "/batches"))
    two_sources = result["coverage_two_sources"]["sqlite"]
    assert two_sources["second_source_invoices"] == 1500 and all(two_sources["marked_months"].values())
    assert all("met" in result[name] for name in SECTIONS)
