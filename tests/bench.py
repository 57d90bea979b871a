"""`make bench`: the e-tax file import against merely reading the same workbook with calamine.

The goal (a later issue holds us to it): a whole import of a 10 MB export in at most twice the
time calamine needs to read it, with bounded memory. Prints the figures as JSON.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path


def calamine_read(path: Path) -> float:
    """Seconds to read every row of both sheets, and nothing else."""
    from python_calamine import CalamineWorkbook

    start = time.perf_counter()
    workbook = CalamineWorkbook.from_path(str(path))
    for name in ("信息汇总表", "发票基础信息"):
        for _row in workbook.get_sheet_by_name(name).iter_rows():
            pass
    return time.perf_counter() - start


def full_import(path: Path, folder: Path) -> dict:
    """Seconds from upload to the batch's end: parse + every month's subtask, on a real RQ worker."""
    os.environ["DATA_DIR"] = str(folder / "data")
    os.environ.pop("REDIS_URL", None)
    from flask_migrate import upgrade
    from sqlalchemy import select

    from jobs.queue import get_queue, redis_connection
    from jobs.worker import make_worker
    from webapp import create_app
    from webapp.accounts import seed_demo
    from webapp.batches import create_file_batch
    from webapp.extensions import db
    from webapp.models import Batch, Company, User
    from webapp.pool import pool_stats
    from webapp.transactions import write_transaction

    app = create_app({"SQLALCHEMY_DATABASE_URI": os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{folder / 'bench.db'}")})
    with app.app_context():
        upgrade()
        with write_transaction():
            seed_demo()
        user = db.session.scalar(select(User).filter_by(username="caiwu"))
        company = db.session.scalar(select(Company))
        worker = make_worker([get_queue()], redis_connection(), quiet=True)
        try:
            start = time.perf_counter()
            batch = create_file_batch(user, company, path, path.name)
            worker.work(burst=True, logging_level="WARNING")
            elapsed = time.perf_counter() - start
            db.session.rollback()
            status = db.session.scalar(select(Batch.status).filter_by(id=batch.id))
            stats = pool_stats(company.tax_id)
        finally:
            redis_connection().shutdown(nosave=True)
    return {"import_s": round(elapsed, 3), "status": status, "invoices": stats["invoices"], "lines": stats["lines"]}


POOL_QUERIES = {
    "first page": "/pool",
    "number prefix": "/pool?q=2503",
    "buyer name": "/pool?buyer=测试电子",
    "red only": "/pool?color=red",
    "company + month range + type": "/pool?tax_id=91330100MA2H4K7Q1X&date_from=2024-03-01&date_to=2024-03-31&type_code=81",
    "usage never fetched, page 20": "/pool?vat_usage=none&page=20",
    "sorted by amount": "/pool?sort=amount_desc",
}


def _synthetic_pool(count: int, tax_ids: list[str]):
    """Invoice headers shaped like the real ones, spread over five years and several companies."""
    import random
    from datetime import datetime, timedelta

    rng = random.Random(7)
    buyers = ["深圳测试电子有限公司", "北京示例贸易有限公司", "杭州模拟商贸有限公司", "张三", "成都虚构餐饮管理有限公司"]
    start = datetime(2021, 1, 1)
    for n in range(count):
        issued = start + timedelta(seconds=rng.randrange(5 * 365 * 86400))
        digital = f"{issued:%y}{n:018d}"
        red = rng.random() < 0.03
        amount = f"{(-1 if red else 1) * rng.randrange(100, 10_000_000) / 100:.2f}"
        yield ((digital, tax_ids[n % len(tax_ids)], "示例公司", None, None, digital, f"91{rng.randrange(10**15):016d}",
                rng.choice(buyers), issued.strftime("%Y-%m-%d %H:%M:%S.%f"), issued.strftime("%Y-%m"), amount, "0.00", amount,
                "电子发票服务平台", "数电发票（普通发票）", rng.choice(["81", "82"]), "正常", red, "正常", "赵", "", None), [])


def pool_list(folder: Path, count: int) -> dict:
    """Median milliseconds of the pool list's typical requests at `count` invoices (SQLite)."""
    import statistics

    from flask_migrate import upgrade
    from sqlalchemy import select

    from webapp import create_app
    from webapp.accounts import save_company, seed_demo
    from webapp.extensions import db
    from webapp.models import Org, User
    from webapp.pool import refresh_statistics, save_staged
    from webapp.transactions import write_transaction

    app = create_app({"SQLALCHEMY_DATABASE_URI": os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{folder / 'pool.db'}"),
                      "WTF_CSRF_ENABLED": False})
    with app.app_context():
        upgrade()
        with write_transaction():
            seed_demo()
            org = db.session.scalar(select(Org))
            others = [save_company(f"9133010{n}MA2BENCH{n}", f"基准公司{n}", org).tax_id for n in range(4)]
            user = db.session.scalar(select(User).filter_by(username="caiwu"))
            user.companies = list(user.companies) + [c for c in org_companies(org)]
        start = time.perf_counter()
        rows = list(_synthetic_pool(count, ["91330100MA2H4K7Q1X", *others]))
        for offset in range(0, count, 50_000):
            with write_transaction():
                save_staged(rows[offset:offset + 50_000], source="file", batch_id=None, error_goods=frozenset())
        loaded = time.perf_counter() - start
        start = time.perf_counter()
        refresh_statistics()  # what the worker does when a batch ends
        analyzed = time.perf_counter() - start
    client = app.test_client()
    client.post("/login", data={"username": "caiwu", "password": "caiwu123"})
    timings = {}
    for name, url in POOL_QUERIES.items():
        samples = []
        for _ in range(5):
            began = time.perf_counter()
            response = client.get(url, headers={"HX-Request": "true", "HX-Target": "pool-table"})
            samples.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200, response.status_code
        timings[name] = round(statistics.median(samples), 1)
    return {"invoices": count, "load_s": round(loaded, 1), "analyze_s": round(analyzed, 2), "list_ms": timings}


def org_companies(org):
    from sqlalchemy import select

    from webapp.extensions import db
    from webapp.models import Company

    return db.session.scalars(select(Company).where(Company.org_id == org.id)).all()


def main() -> None:
    from tests.workbook_builder import build_sized_workbook

    megabytes = float(sys.argv[1]) if len(sys.argv) > 1 else 10
    pool_size = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "export.xlsx"
        build_sized_workbook(path, megabytes)
        read_s = min(calamine_read(path) for _ in range(3))
        result = full_import(path, folder)
        result.update({
            "file_mb": round(path.stat().st_size / 1e6, 2), "calamine_read_s": round(read_s, 3),
            "ratio": round(result["import_s"] / read_s, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "peak_rss_children_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        })
        result = {"file_import": result, "pool_list": pool_list(folder, pool_size)}
    print(json.dumps(result, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
