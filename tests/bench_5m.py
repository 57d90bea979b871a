"""`make bench`'s `postgres_5m` (docs/performance.md, Five million invoices on PostgreSQL): a large group,
50 companies over five years, loaded into PostgreSQL through the pool's own write; the load's
chunks, then p95 of every page a user opens on it, then a backup of it and its restore.

`BENCH_SCALE=5m` makes the full size (5,000,000 invoices and 15,000,000 lines): about an hour on the
bench machine, so `make bench` runs it at a smaller size unless asked, and its one full run is
recorded in docs/performance.md. `python -m tests.bench_5m` runs this step alone (with
`BENCH_DATABASE_URL`; the database is emptied first).
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

from tests.bench import DEMO_TAX_ID, POOL_QUERIES, _load, _migrated_app, _p95, _synthetic_pool

SCALES = {"5m": 5_000_000, "full": 200_000, "small": 5_000}  # invoices, three lines each
COMPANIES = 50
MONTH = "2024-05"
PAGES = {
    "coverage, five years": f"/pool/coverage?tax_id={DEMO_TAX_ID}",
    "coverage, one year": f"/pool/coverage?tax_id={DEMO_TAX_ID}&year=2024",
    "summary, company-year": f"/summary?tax_id={DEMO_TAX_ID}&year=2024",
    "summary, all 50 companies' year": "/summary?tax_id=all&year=2024",
    "reconcile, one month (two sources)": f"/reconcile?tax_id={DEMO_TAX_ID}&month={MONTH}",
}


def _group(companies: int) -> list[str]:
    """The demo company and `companies - 1` more in its org, all granted to caiwu: their tax IDs."""
    from sqlalchemy import select

    from webapp.accounts import save_company
    from webapp.extensions import db
    from webapp.models import Company, Org, User
    from webapp.transactions import write_transaction

    with write_transaction():
        org = db.session.scalar(select(Org))
        others = [save_company(f"913301{n:04d}MA2BENCH", f"集团成员{n}", org).tax_id for n in range(1, companies)]
        user = db.session.scalar(select(User).filter_by(username="caiwu"))
        user.companies = list(db.session.scalars(select(Company).where(Company.org_id == org.id)))
    return [DEMO_TAX_ID, *others]


def _second_source(count: int, tax_ids: list[str]) -> int:
    """30 % of the demo company's invoices of MONTH delivered again by 乐企, one in 200 with another
    buyer name, as the job that saves a 乐企 month writes them: so 来源核对 has two sources to compare."""
    from webapp.pool import save_staged
    from webapp.reconcile import record_sources
    from webapp.transactions import write_transaction

    again = []
    for n, (header, lines) in enumerate(_synthetic_pool(count, tax_ids)):
        if header[1] == DEMO_TAX_ID and header[9] == MONTH and n % 10 < 3:
            again.append(((*header[:7], "乐企给出的另一购买方名称", *header[8:]) if n % 200 == 0 else header, lines))
    with write_transaction():
        save_staged(again, source="leqi", batch_id=None, error_goods=frozenset())
        record_sources(again, source="leqi", batch_id=None)
    return len(again)


def _settle(url: str) -> dict:
    """What follows a load: the planner's statistics (VACUUM ANALYZE, as autovacuum would) and 销项汇总's
    kept months summed (as a batch's end does); seconds of each."""
    from sqlalchemy import text

    from webapp.extensions import db
    from webapp.summary import refresh_summaries

    start = time.perf_counter()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    analyzed = time.perf_counter() - start
    start = time.perf_counter()
    refresh_summaries()
    return {"vacuum_analyze_s": round(analyzed, 1), "summaries_s": round(time.perf_counter() - start, 1)}


def _chunks(seconds: list[float]) -> dict:
    """The load's transactions of 50,000 invoices: flat means linear."""
    tenth = max(1, len(seconds) // 10)
    return {"count": len(seconds), "first_s": round(seconds[0], 2), "last_s": round(seconds[-1], 2),
            "median_s": round(statistics.median(seconds), 2), "max_s": round(max(seconds), 2),
            "every_tenth_s": [round(s, 2) for s in seconds[::tenth]],
            "last_tenth_over_first_tenth": round(statistics.mean(seconds[-tenth:]) / statistics.mean(seconds[:tenth]), 2)}


def _reads(app, key: str, samples: int) -> dict:
    """p95 ms of every pool filter, the detail page and the other pages, as caiwu (all 50 companies) opens
    them; each page's first view apart (it may count the kept figures once)."""
    client = app.test_client()
    client.post("/login", data={"username": "caiwu", "password": "caiwu123"})

    def get(path: str, partial: bool) -> float:
        headers = {"HX-Request": "true", "HX-Target": "pool-table"} if partial else {}
        start = time.perf_counter()
        response = client.get(path, headers=headers)
        assert response.status_code == 200, (path, response.status_code)
        return time.perf_counter() - start

    paths = {**{f"pool: {name}": (path, True) for name, path in POOL_QUERIES.items()},
             "invoice detail": (f"/pool/{key}", False), **{name: (path, False) for name, path in PAGES.items()}}
    first = {name: round(get(*how) * 1000, 1) for name, how in paths.items()}
    p95 = {name: _p95([get(*how) for _ in range(samples)]) for name, how in paths.items()}
    return {"first_view_ms": first, "p95_ms": p95}


def _loaded_pool(url: str):
    """(app, the group's tax IDs, invoices held) of a pool an earlier run of this step loaded (`--loaded`)."""
    from flask_migrate import upgrade
    from sqlalchemy import func, select

    from webapp.extensions import db
    from webapp.models import Company, Invoice
    from wsgi import create_app

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "WTF_CSRF_ENABLED": False})
    with app.app_context():
        upgrade()
        others = db.session.scalars(select(Company.tax_id).where(Company.tax_id.like("%BENCH")).order_by(Company.id))
        tax_ids = [DEMO_TAX_ID, *others]
        held = db.session.scalar(select(func.count()).select_from(Invoice).where(Invoice.batch_id.is_(None)))
        db.session.remove()
    return app, tax_ids, held


def _progress(chunk: int, seconds: float) -> None:
    """A long load says how far it is (stderr), so a run that must stop early still tells its chunks."""
    print(f"{time.strftime('%H:%M:%S')} chunk {chunk} {seconds:.2f} s", file=sys.stderr, flush=True)


def postgres_5m(folder: Path, url: str, redis_url: str, invoices: int, samples: int, loaded: bool = False,
                restore: bool = True) -> dict:
    """Load `invoices` over 50 companies and five years into `url` (`loaded`: measure what an earlier run
    loaded instead), then time the pages and a backup (and its restore)."""
    from sqlalchemy import select

    from tests.bench_backup import backup_bench
    from webapp.extensions import db
    from webapp.models import Invoice

    figures: dict = {}
    if loaded:
        app, tax_ids, invoices = _loaded_pool(url)
    else:
        app = _migrated_app(url)
    with app.app_context():
        if not loaded:
            tax_ids = _group(COMPANIES)
            start = time.perf_counter()
            chunks = _load(_synthetic_pool(invoices, tax_ids), progress=_progress)
            seconds = time.perf_counter() - start
            figures = {"load_s": round(seconds, 1), "load_rows_per_s": round(4 * invoices / seconds),
                       "chunks": _chunks(chunks)}
        figures["second_source_invoices"] = _second_source(invoices, tax_ids)
        figures.update(_settle(url))
        key = db.session.scalar(select(Invoice.key).where(Invoice.tax_id == DEMO_TAX_ID).order_by(Invoice.key)
                                .limit(1).offset(invoices // COMPANIES // 2))
        db.session.remove()
    reads = _reads(app, key, samples)
    worst = max(reads["p95_ms"].values())
    backup = backup_bench(folder, url, redis_url, "postgresql-5m", restore=restore)
    return {"invoices": invoices, "lines": 3 * invoices, "companies": len(tax_ids), **figures, **reads,
            "target_p95_ms": 100, "worst_p95_ms": worst, "backup": backup,
            "met": worst < 100 and backup.get("checksums_equal", True)}


def large_pool_size(size_name: str) -> int:
    """Invoices of this step: `BENCH_SCALE` when given (5m: five million), else by the bench's size."""
    return SCALES[os.environ.get("BENCH_SCALE") or size_name]


def main() -> None:
    """`BENCH_DATABASE_URL=… BENCH_SCALE=5m python -m tests.bench_5m [--loaded] [--no-restore]`: this step
    alone; `--loaded` measures the pool an earlier run left (its load figures are that run's),
    `--no-restore` times the backup without restoring it."""
    from tests.bench import bench_folder

    with bench_folder() as (folder, redis_url):
        load = round(os.getloadavg()[0], 2)
        result = postgres_5m(folder, os.environ["BENCH_DATABASE_URL"], redis_url, large_pool_size("full"), 20,
                             loaded="--loaded" in sys.argv, restore="--no-restore" not in sys.argv)
    print(json.dumps({"postgres_5m": {"load_1min_at_start": load, "load_1min_at_end": round(os.getloadavg()[0], 2),
                                      **result}}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
