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
    os.environ["BUNDLED_REDIS_PORT"] = str(_free_port())
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


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    from tests.workbook_builder import build_sized_workbook

    megabytes = float(sys.argv[1]) if len(sys.argv) > 1 else 10
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
        })
    print(json.dumps(result, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
