"""`python -m tests.bench_screens [INVOICES] [BATCHES]`: what the screens cost at scale, as JSON.

- The pool list and its summary (count and sums of 金额/税额/价税合计) at INVOICES invoices (default
  1,000,000, the headers of tests/bench.py's generator), for each typical filter.
- The batch list at BATCHES batches (default 10,000) of 12 months each, of which 50 are running:
  the page, the filter partial and the page's one poll (docs/performance.md: p95 < 30 ms), both when no
  running row changed and when every one did (all re-rendered).

SQLite by default; BENCH_DATABASE_URL runs it on PostgreSQL (an empty database: its tables are dropped).
"""
from __future__ import annotations

import json
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from .bench import POOL_QUERIES, _load, _migrated_app, _synthetic_pool, bench_companies

RUNNING = 50
REPEATS = 20


def _timed(client, url: str, headers: dict | None = None) -> dict:
    """Median and p95 milliseconds of REPEATS requests (after one warm-up)."""
    client.get(url, headers=headers)
    samples = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        response = client.get(url, headers=headers)
        samples.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    samples.sort()
    return {"median_ms": round(statistics.median(samples), 1),
            "p95_ms": round(samples[int(0.95 * len(samples)) - 1], 1)}


def _app(folder: Path):
    return _migrated_app(os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{folder / 'screens.db'}"))


def load_pool(app, count: int) -> list[str]:
    """COUNT invoices over the demo company and four more, all granted to caiwu."""
    from webapp.pool import refresh_statistics

    with app.app_context():
        others = bench_companies()
        _load(_synthetic_pool(count, ["91330100MA2H4K7Q1X", *others]))
        refresh_statistics()
    return others


def load_batches(app, count: int) -> None:
    """COUNT download batches of 12 monthly subtasks; the newest RUNNING are running."""
    from sqlalchemy import insert, select

    from webapp.extensions import db
    from webapp.models import Batch, Company, Subtask, User
    from webapp.transactions import write_transaction

    with app.app_context():
        user = db.session.scalar(select(User).filter_by(username="caiwu"))
        company = db.session.scalar(select(Company).filter_by(tax_id="91330100MA2H4K7Q1X"))
        start = datetime(2026, 1, 1)
        for offset in range(0, count, 2000):
            with write_transaction():
                batches = [{"batch_no": f"B{n:019d}", "org_id": user.org_id, "company_id": company.id,
                            "tax_id": company.tax_id, "seller_name": company.name, "data_type": "invoices",
                            "method": "download", "channel": "rpa", "kinds": ["全部"], "type_codes": [],
                            "status": "syncing" if n >= count - RUNNING else "succeeded", "total": 1200,
                            "success": 1200, "filtered_lines": 0, "creator_name": "caiwu", "created_by_id": user.id,
                            "created_at": start + timedelta(minutes=n)}
                           for n in range(offset, min(count, offset + 2000))]
                db.session.execute(insert(Batch), batches)
                ids = dict(db.session.execute(select(Batch.batch_no, Batch.id).where(
                    Batch.batch_no.in_([b["batch_no"] for b in batches]))).all())
                subtasks = []
                for b in batches:
                    live = b["status"] == "syncing"
                    for month in range(1, 13):
                        status = ("running" if month == 1 else "pending") if live and month <= 6 else "succeeded"
                        subtasks.append({"batch_id": ids[b["batch_no"]], "period": f"2025-{month:02d}",
                                         "status": status, "total": 100, "success": 100 if status == "succeeded" else 0,
                                         "filtered_lines": 0, "attempts": 0})
                db.session.execute(insert(Subtask), subtasks)
        from webapp.pool import refresh_statistics

        refresh_statistics()


def batch_list_live(app, batches: int) -> dict:
    """The batch list loaded (load_batches): how many polls the page holds (one,
    whatever the number of running rows), its p95 with no row changed and with every one changed
    (all re-rendered), and that a page with nothing running holds no poll at all."""
    client = _signed_in(app)
    page = client.get("/batches").text
    polls = re.findall(r'id="batch-poll" hidden hx-get="([^"]+)"', page)
    poll = polls[0].replace("&amp;", "&")
    idle = client.get("/batches?status=succeeded").text
    timed = {
        "page": _timed(client, "/batches"),
        "filter_partial": _timed(client, "/batches?status=syncing", {"HX-Request": "true", "HX-Target": "batch-table"}),
        "poll": _timed(client, poll, {"HX-Request": "true"}),
        "poll_every_row_changed": _timed(client, re.sub(r"\.[0-9a-f]{8}", ".stale000", poll), {"HX-Request": "true"}),
    }
    return {"batches": batches, "running": RUNNING, "running_rows_on_page": poll.count(",") + 1,
            "polls_on_page": len(polls), "polls_on_page_with_nothing_running": idle.count("hx-trigger=\"every"),
            **timed, "target_p95_ms": 30,
            "met": len(polls) == 1 and "hx-trigger=\"every" not in idle
            and max(timed["poll"]["p95_ms"], timed["poll_every_row_changed"]["p95_ms"]) < 30}


def batch_list_bench(folder: Path, batches: int) -> dict:
    """make bench's step for item 6: BATCHES batches (RUNNING running) in a fresh SQLite database."""
    app = _migrated_app(f"sqlite:///{folder / 'batches.db'}")
    load_batches(app, batches)
    return batch_list_live(app, batches)


def _signed_in(app):
    """A test client signed in as the demo finance user."""
    client = app.test_client()
    client.post("/login", data={"username": "caiwu", "password": "caiwu123"})
    return client


def main() -> None:
    invoices = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    batches = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        app = _app(Path(tmp))
        began = time.perf_counter()
        others = load_pool(app, invoices)
        load_batches(app, batches)
        loaded = time.perf_counter() - began
        client = _signed_in(app)
        partial = {"HX-Request": "true", "HX-Target": "pool-table"}
        queries = {**POOL_QUERIES, "one company": f"/pool?tax_id={others[0]}"}
        pool = {name: {"list": _timed(client, url, partial),
                       "summary": _timed(client, url.replace("/pool", "/pool/summary", 1), {"HX-Request": "true"})}
                for name, url in queries.items()}
        batch_list = batch_list_live(app, batches)
    print(json.dumps({"invoices": invoices, "batches": batches, "running": RUNNING, "load_s": round(loaded, 1),
                      "database": "postgresql" if os.environ.get("BENCH_DATABASE_URL") else "sqlite",
                      "pool": pool, "batch_list": batch_list}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
