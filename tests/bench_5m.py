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
from datetime import datetime
from decimal import Decimal
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


def _second_source() -> int:
    """30 % of the demo company's invoices of MONTH delivered again by 乐企 (read back from the pool), one
    in 200 with another buyer name, as the job that saves a 乐企 month writes them: so 来源核对 has two
    sources to compare."""
    from sqlalchemy import select

    from channels.records import HEADER_COLUMNS, LINE_COLUMNS, TIMESTAMP, InvoiceRow, LineRow, StagedInvoice
    from webapp.extensions import db
    from webapp.models import Invoice, InvoiceLine
    from webapp.pool import save_staged
    from webapp.reconcile import record_sources
    from webapp.transactions import write_transaction

    def staged(value):  # as a channel stages it: timestamps and decimals as text
        if isinstance(value, datetime):
            return value.strftime(TIMESTAMP)
        return str(value) if isinstance(value, Decimal) else value

    headers = db.session.execute(select(*(Invoice.__table__.c[c] for c in HEADER_COLUMNS)).where(
        Invoice.tax_id == DEMO_TAX_ID, Invoice.month == MONTH).order_by(Invoice.key)).all()
    chosen = [InvoiceRow(*(staged(v) for v in header)) for n, header in enumerate(headers) if n % 10 < 3]
    lines: dict = {}
    for key, *line in db.session.execute(select(InvoiceLine.invoice_key,
                                                *(InvoiceLine.__table__.c[c] for c in LINE_COLUMNS))
                                         .where(InvoiceLine.invoice_key.in_([h[0] for h in chosen]))):
        lines.setdefault(key, []).append(LineRow(*(staged(v) for v in line)))
    again = [StagedInvoice(h._replace(buyer_name="乐企给出的另一购买方名称") if n % 200 == 0 else h,
                           lines.get(h.key, []))
             for n, h in enumerate(chosen)]
    with write_transaction():
        save_staged(again, source="leqi", batch_id=None, error_goods=frozenset())
        record_sources(again, source="leqi", batch_id=None)
    return len(again)


_TOP_UP = """
CREATE TEMPORARY TABLE top_up AS
SELECT n, to_char(issued, 'YY') || lpad(n::text, 18, '0') AS key, issued,
       round((CASE WHEN red THEN -cents ELSE cents END) / 100.0, 2) AS amount, red, type_code, buyer, buyer_tax_id
FROM (SELECT n, timestamp '2021-01-01' + floor(random() * 5 * 365 * 86400) * interval '1 second' AS issued,
             random() < 0.03 AS red, 100 + floor(random() * 9999900)::bigint AS cents,
             CASE WHEN random() < 0.5 THEN '81' ELSE '82' END AS type_code,
             (%(buyers)s::text[])[1 + floor(random() * 5)::int] AS buyer,
             '91' || lpad(floor(random() * 1e15)::bigint::text, 16, '0') AS buyer_tax_id
      FROM generate_series(%(first)s, %(last)s) AS n) AS drawn;
INSERT INTO invoice (key, tax_id, seller_name, code, number, digital_number, buyer_tax_id, buyer_name, issued_at,
                     month, amount, tax, total, origin, type_name, type_code, status, is_red, risk_level, issuer,
                     remark, red_of, source, batch_id, synced_at)
SELECT key, (%(tax_ids)s::text[])[1 + n %% %(companies)s], '示例公司', NULL, NULL, key, buyer_tax_id, buyer, issued,
       to_char(issued, 'YYYY-MM'), amount, 0, amount, '电子发票服务平台', '数电发票（普通发票）', type_code, '正常',
       red, '正常', '赵', '', NULL, 'file', NULL, now() FROM top_up;
INSERT INTO invoice_line (invoice_key, line_no, name, tax_code, special_type, spec, unit, quantity, unit_price,
                          amount, tax_rate, tax, total, is_discount)
SELECT key, k, '*信息技术服务*服务费' || k, '3040201', NULL, NULL, '次', '1', round(amount / 3, 2)::text,
       round(amount / 3, 2), '6%%', 0, round(amount / 3, 2), false FROM top_up CROSS JOIN generate_series(1, 3) AS k;
INSERT INTO invoice_source (invoice_key, source, tax_id, month, batch_id, first_seen_at, last_seen_at, status,
                            amount, tax, total, buyer_tax_id, buyer_name)
SELECT i.key, 'file', i.tax_id, i.month, NULL, now(), now(), i.status, i.amount, i.tax, i.total, i.buyer_tax_id,
       i.buyer_name FROM invoice i JOIN top_up USING (key);
INSERT INTO invoice_month_summary (tax_id, month, version) SELECT DISTINCT tax_id, month, 1 FROM invoice
ON CONFLICT (tax_id, month) DO UPDATE SET version = invoice_month_summary.version + 1;
"""


def _top_up(url: str, tax_ids: list[str], invoices: int) -> dict:
    """Where the bench machine's time does not allow writing every invoice through the pool write
    (`--top-up N`): the invoices from the pool's count up to N generated by the server, shaped as the
    synthetic ones (three lines, a 来源核对 row, the month marked), the secondary indexes dropped and
    built again afterwards, as a bulk load would. Seconds of the insert and of the index builds."""
    import psycopg

    buyers = ["深圳测试电子有限公司", "北京示例贸易有限公司", "杭州模拟商贸有限公司", "张三",
              "成都虚构餐饮管理有限公司"]
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), cursor_factory=psycopg.ClientCursor) as conn:
        held = conn.execute("SELECT count(*) FROM invoice").fetchone()[0]
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('invoice', 'invoice_line', "
            "'invoice_source') "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint)").fetchall()
        start = time.perf_counter()
        for name, _definition in indexes:
            conn.execute(f"DROP INDEX {name}")
        conn.execute(_TOP_UP, {"buyers": buyers, "first": held, "last": invoices - 1, "tax_ids": tax_ids,
                               "companies": len(tax_ids)})
        inserted = time.perf_counter() - start
        start = time.perf_counter()
        for _name, definition in indexes:
            conn.execute(definition)
        conn.commit()  # one transaction: a failure leaves the pool and its indexes as they were
    return {"loaded_through_the_pool_write": held, "generated_by_the_server": invoices - held,
            "generate_s": round(inserted, 1), "index_builds_s": round(time.perf_counter() - start, 1)}


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
            "last_tenth_over_first_tenth": round(statistics.mean(seconds[-tenth:]) / statistics.mean(seconds[:tenth]),
                                                 2)}


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
    print(f"{time.strftime('%H:%M:%S', time.gmtime())} chunk {chunk} {seconds:.2f} s", file=sys.stderr, flush=True)


def postgres_5m(folder: Path, url: str, redis_url: str, invoices: int, samples: int, loaded: bool = False,
                restore: bool = True, top_up: int = 0) -> dict:
    """Load `invoices` over 50 companies and five years into `url` (`loaded`: measure what an earlier run
    loaded instead, `top_up`: and generate the rest up to that many, _top_up), then time the pages and a
    backup (and its restore)."""
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
        if top_up:
            figures["top_up"] = _top_up(url, tax_ids, top_up)
            invoices = top_up
        figures["second_source_invoices"] = _second_source()
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
    """`BENCH_DATABASE_URL=… BENCH_SCALE=5m python -m tests.bench_5m [--loaded [--top-up N]] [--no-restore]`:
    this step alone; `--loaded` measures the pool an earlier run left (its load figures are that
    run's), `--top-up N` first generates the rest up to N invoices (_top_up), `--no-restore` times the
    backup without restoring it."""
    from tests.bench import bench_folder

    with bench_folder() as (folder, redis_url):
        load = round(os.getloadavg()[0], 2)
        result = postgres_5m(folder, os.environ["BENCH_DATABASE_URL"], redis_url, large_pool_size("full"), 20,
                             loaded="--loaded" in sys.argv, restore="--no-restore" not in sys.argv,
                             top_up=int(sys.argv[sys.argv.index("--top-up") + 1]) if "--top-up" in sys.argv else 0)
    print(json.dumps({"postgres_5m": {"load_1min_at_start": load, "load_1min_at_end": round(os.getloadavg()[0], 2),
                                      **result}}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
