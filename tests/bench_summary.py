"""Benchmark of 销项汇总 at a pool of `count` invoices (default 1,000,000): p95 of the page for one
company-year and for all companies' year. Run `python -m tests.bench_summary [count]`; `make bench`
(tests/bench.py) runs it too, as its `summary` section.

The pool is tests/bench.py's synthetic one (five companies over five years) with one to four lines
per invoice at the usual rates, written through the pool's own bulk write.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

RATES = ("13%", "9%", "6%", "3%", "1%", "免税", "不征税")
SUMMARY_PAGES = {
    "company-year": "/summary?tax_id=91330100MA2H4K7Q1X&year=2024",
    "all companies' year": "/summary?tax_id=all&year=2024",
}


def _with_lines(headers):
    """The synthetic headers with 1–4 lines each, split by rate; amounts as text like staged rows."""
    from decimal import Decimal

    from channels.records import LineRow, StagedInvoice

    for n, (header, _lines) in enumerate(headers):
        count = n % 4 + 1
        amount = Decimal(header.amount)
        share = (amount / count).quantize(Decimal("0.01"))
        lines = []
        for line_no in range(1, count + 1):
            part = amount - share * (count - 1) if line_no == count else share
            lines.append(LineRow(line_no, "*信息技术服务*运维服务", None, None, None, None, None, None, str(part),
                                 RATES[(n + line_no) % len(RATES)], "0.00", str(part), False))
        yield StagedInvoice(header, lines)


def summary_bench(folder: Path, count: int, samples: int = 20, url: str | None = None) -> dict:
    """Load `count` invoices with lines and end the load as a batch ends (statistics, then every
    touched month summed: `precompute_s`), then time the summary pages (ms): the first view after
    the import, the median and p95 of the views that follow, and a view after a one-month import
    whose batch ended the same way."""
    from tests.bench import _load, _migrated_app, _synthetic_pool, bench_companies
    from webapp.extensions import db
    from webapp.pool import refresh_statistics
    from webapp.pool.month_stats import mark_months_changed
    from webapp.summary import refresh_summaries
    from webapp.transactions import write_transaction

    app = _migrated_app(url or os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{folder / 'summary.db'}"))
    with app.app_context():
        others = bench_companies()
        start = time.perf_counter()
        _load(_with_lines(_synthetic_pool(count, ["91330100MA2H4K7Q1X", *others])))
        loaded = time.perf_counter() - start
        refresh_statistics()
        start = time.perf_counter()
        refresh_summaries()  # what jobs.tasks.run_subtask does when a batch ends
        precomputed = time.perf_counter() - start
    client = app.test_client()
    client.post("/login", data={"username": "caiwu", "password": "caiwu123"})
    timings = {}
    for name, url in SUMMARY_PAGES.items():
        timings[name] = {"first_view_ms": _timed(client, url)}  # the first view after the import
        taken = sorted(_timed(client, url) for _ in range(samples))
        timings[name].update(median_ms=round(statistics.median(taken), 1),
                             p95_ms=round(taken[math.ceil(len(taken) * 0.95) - 1], 1))
        with app.app_context():  # what importing one month, then its batch ending, does to the kept figures
            with write_transaction():
                mark_months_changed(db.session.connection(), {("91330100MA2H4K7Q1X", "2024-05")})
            refresh_summaries()
        timings[name]["after_one_month_import_ms"] = _timed(client, url)
    worst = max(max(t["first_view_ms"], t["p95_ms"], t["after_one_month_import_ms"]) for t in timings.values())
    return {"invoices": count, "load_s": round(loaded, 1), "precompute_s": round(precomputed, 2),
            "summary_ms": timings, "target_p95_ms": 200, "worst_ms": worst, "met": worst < 200}


def _timed(client, url: str) -> float:
    began = time.perf_counter()
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return round((time.perf_counter() - began) * 1000, 1)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps({"summary": summary_bench(Path(tmp), count)}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
