"""`make bench`'s `coverage_two_sources` (docs/performance.md, 同步覆盖 with two sources): the pool step's
database, 30 % of its invoices delivered a second time by 乐企 (one in 200 of those with another buyer
name), then p95 of 同步覆盖 for five years and for one year, as caiwu opens it.

Run after the pool step (tests/bench.py, pool_at_scale) on the same database; `python -m
tests.bench_coverage URL [count]` runs it alone on a pool that step loaded.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from datetime import datetime
from itertools import islice

from tests.bench import DEMO_TAX_ID, _p95, _synthetic_pool

SECOND_SOURCE_SHARE = 10  # of every ten invoices, the first three come from a second source
RENAMED_EVERY = 200  # of those, one in 200 with another buyer name
TODAY = datetime(2025, 12, 31, 12, 0)  # five years back from here span the synthetic pool
PAGES = {"five years": f"/pool/coverage?tax_id={DEMO_TAX_ID}",
         "one year": f"/pool/coverage?tax_id={DEMO_TAX_ID}&year=2024"}


def _bench_tax_ids() -> list[str]:
    """The pool step's companies in the order its synthetic invoices were spread over them (an invoice
    given to another company would move there)."""
    from sqlalchemy import select

    from webapp.extensions import db
    from webapp.models import Company

    others = db.session.scalars(select(Company.tax_id).where(Company.tax_id.like("%BENCH%")).order_by(Company.id))
    return [DEMO_TAX_ID, *others]


def _second_delivery(count: int, tax_ids: list[str]):
    """30 % of the synthetic invoices again, as 乐企 gives them; one in 200 names the buyer differently."""
    for n, invoice in enumerate(_synthetic_pool(count, tax_ids)):
        if n % SECOND_SOURCE_SHARE < 3:
            if n % RENAMED_EVERY == 0:
                invoice = invoice._replace(header=invoice.header._replace(buyer_name="乐企给出的另一购买方名称"))
            yield invoice


def _deliver_again(count: int, step: int = 50_000) -> tuple[int, float]:
    """Write the second delivery as the job that saves a 乐企 month does (jobs.tasks._saver): (invoices, seconds)."""
    from webapp.pool import refresh_statistics, save_staged
    from webapp.reconcile import record_sources
    from webapp.transactions import write_transaction

    rows, delivered, start = _second_delivery(count, _bench_tax_ids()), 0, time.perf_counter()
    while chunk := list(islice(rows, step)):
        with write_transaction():
            save_staged(chunk, source="leqi", batch_id=None, error_goods=frozenset())
            record_sources(chunk, source="leqi", batch_id=None)
        delivered += len(chunk)
    refresh_statistics()
    return delivered, time.perf_counter() - start


def _touch(month: str) -> None:
    """Mark one month changed, as a pool write touching it does (the next view counts it again)."""
    from webapp.extensions import db
    from webapp.pool.month_stats import mark_months_changed
    from webapp.transactions import write_transaction

    with write_transaction():
        mark_months_changed(db.session.connection(), {(DEMO_TAX_ID, month)})


def coverage_two_sources(url: str, count: int, samples: int) -> dict:
    """Deliver 30 % of the pool step's `count` invoices again from 乐企, then time 同步覆盖 (ms): the first
    view (which counts every month's findings once), p95 of the views that follow, and a view after
    one month changed."""
    from wsgi import create_app

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "WTF_CSRF_ENABLED": False, "CLOCK_NOW": TODAY})
    with app.app_context():
        delivered, seconds = _deliver_again(count)
    client = app.test_client()
    client.post("/login", data={"username": "caiwu", "password": "caiwu123"})
    pages: dict = {}

    def view(path: str) -> float:
        start = time.perf_counter()
        response = client.get(path)
        assert response.status_code == 200, response.status_code
        pages.setdefault("marked_months", {})[path] = response.text.count("来源差异")
        return time.perf_counter() - start

    first = round(view(PAGES["five years"]) * 1000, 1)
    medians = {}
    for name, path in PAGES.items():
        taken = [view(path) for _ in range(samples)]
        pages[name], medians[name] = _p95(taken), round(statistics.median(taken) * 1000, 1)
    with app.app_context():
        _touch("2024-06")
    pages["one year, after a write to one of its months"] = round(view(PAGES["one year"]) * 1000, 1)
    worst = max(pages[name] for name in PAGES)
    return {"invoices": count, "second_source_invoices": delivered, "second_delivery_s": round(seconds, 1),
            "first_view_ms": first, "p95_ms": {name: pages[name] for name in PAGES}, "median_ms": medians,
            "after_one_month_changed_ms": pages["one year, after a write to one of its months"],
            "marked_months": pages["marked_months"], "samples": samples, "target_p95_ms": 100,
            "worst_p95_ms": worst, "met": worst < 100}


def _load_pool(url: str, count: int) -> None:
    """The pool step's pool at `url`, loaded afresh (`--load`: to time 同步覆盖 on its own)."""
    from tests.bench import _load, _migrated_app, bench_companies

    with _migrated_app(url).app_context():
        _load(_synthetic_pool(count, [DEMO_TAX_ID, *bench_companies()]))


def main() -> None:
    """`python -m tests.bench_coverage URL [count] [samples] [--load]`."""
    args = [a for a in sys.argv[1:] if a != "--load"]
    url, count, samples = args[0], int(args[1]) if len(args) > 1 else 1_000_000, int(args[2]) if len(args) > 2 else 20
    if "--load" in sys.argv:
        _load_pool(url, count)
    print(json.dumps({"coverage_two_sources": coverage_two_sources(url, count, samples)}, ensure_ascii=False,
                     indent=1))


if __name__ == "__main__":
    main()
