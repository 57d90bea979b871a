"""The pool's bulk write (webapp.pool.save_staged) on each database: replace, refuse, roll back."""
from __future__ import annotations

import dataclasses
from datetime import datetime
from decimal import Decimal

import pytest
from sqlalchemy import select

from channels.records import SourceRejected
from tests.records_support import InvoiceRecord, LineRecord, stage
from webapp.extensions import db
from webapp.models import Invoice, InvoiceLine
from webapp.pool import pool_stats, save_staged
from webapp.transactions import write_transaction

A, B = "91330100MA2H4K7Q1X", "91110000MA00000001"


def record(key: str, seller: str, *amounts: str) -> InvoiceRecord:
    """A 数电 invoice of `seller` with one line per amount."""
    return InvoiceRecord(
        key=key, seller_tax_id=seller, seller_name="销方", issued_at=datetime(2024, 3, 5, 9, 0, 0), digital_number=key,
        amount=sum((Decimal(a) for a in amounts), Decimal("0")), tax=Decimal("0"), type_name="数电发票（普通发票）",
        type_code="82", status="正常",
        lines=[LineRecord(line_no=n, name=f"*服务*第{n}项", amount=Decimal(a), tax_rate="6%")
               for n, a in enumerate(amounts, 1)])


def save(*records: InvoiceRecord) -> None:
    with write_transaction():
        save_staged(stage(records), source="file", batch_id=None, error_goods=frozenset())


def lines_of(key: str) -> list[tuple]:
    return [(line.line_no, str(line.amount)) for line in
            db.session.scalars(select(InvoiceLine).filter_by(invoice_key=key).order_by(InvoiceLine.line_no))]


def test_a_second_copy_replaces_the_first_with_its_lines(app):
    with app.app_context():
        save(record("24330000000000000001", A, "10.00", "20.00"), record("24330000000000000002", A, "5.00"))
        save(record("24330000000000000001", A, "99.00"), record("24330000000000000003", A, "7.00"))
        assert lines_of("24330000000000000001") == [(1, "99.00")]
        assert lines_of("24330000000000000002") == [(1, "5.00")]
        stats = pool_stats(A)
        assert (stats["invoices"], stats["lines"], stats["amount"]) == (3, 3, "111.00")


def test_the_last_copy_staged_twice_in_one_write_wins(app):
    with app.app_context():
        save(record("24330000000000000001", A, "10.00"), record("24330000000000000001", A, "30.00", "1.00"))
        assert lines_of("24330000000000000001") == [(1, "30.00"), (2, "1.00")]


def test_another_sellers_invoice_is_refused_and_the_write_rolls_back(app):
    with app.app_context():
        save(record("24330000000000000001", A, "10.00"))
        with pytest.raises(SourceRejected, match=f"24330000000000000001.*{A}"):
            save(record("24330000000000000009", B, "1.00"), record("24330000000000000001", B, "50.00"))
        db.session.rollback()
        assert db.session.scalar(select(Invoice.tax_id).filter_by(key="24330000000000000001")) == A
        assert lines_of("24330000000000000001") == [(1, "10.00")]
        assert pool_stats(B)["invoices"] == 0


def test_kept_month_figures_follow_each_write(app):
    """pool stats and the coverage grid read figures kept per company-month: a later write must show."""
    from datetime import date

    from webapp.pool.coverage import coverage

    with app.app_context():
        save(record("24330000000000000001", A, "10.00", "20.00"))
        assert (pool_stats(A)["invoices"], pool_stats(A)["lines"], pool_stats(A)["amount"]) == (1, 2, "30.00")
        assert coverage(A, date(2024, 12, 31), 2024)["2024-03"]["82"]["invoices"] == 1
        save(record("24330000000000000001", A, "99.00"), record("24330000000000000003", A, "7.00"))
        stats = pool_stats(A)
        assert (stats["invoices"], stats["lines"], stats["amount"], stats["months"]) == (2, 2, "106.00", ["2024-03"])
        cell = coverage(A, date(2024, 12, 31), 2024)["2024-03"]["82"]
        assert (cell["invoices"], cell["positive"], cell["gap"]) == (2, 2, False)


def test_a_write_after_statistics_of_a_tiny_pool_never_scans_the_pool(app):
    """SQLite plans with the statistics of the last ANALYZE (taken when a batch ends). After a first small
    file they describe a pool of a few rows; the next file's write must still find every row it touches
    through an index, or each chunk walks the whole pool (docs/performance.md, The live import — chain)."""
    from sqlalchemy import event

    from webapp.pool import refresh_statistics

    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            pytest.skip("PostgreSQL keeps its own statistics (autovacuum)")
        save(*(record(f"2433000000000000{n:04d}", A, "10.00") for n in range(20)))
        refresh_statistics()
        blues = [record(f"2433000000000001{n:04d}", A, "10.00") for n in range(600)]
        reds = [dataclasses.replace(record(f"2433000000000002{n:04d}", A, "-10.00"), is_red=True, red_of=blue.key)
                for n, blue in enumerate(blues[:50])]
        statements = []

        def seen(conn, cursor, statement, parameters, context, executemany):
            if "invoice" in statement and not statement.startswith(("INSERT", "ANALYZE", "PRAGMA")):
                statements.append((statement, parameters[0] if executemany else parameters))
        event.listen(db.engine, "before_cursor_execute", seen)
        try:
            save(*blues, *reds)
        finally:
            event.remove(db.engine, "before_cursor_execute", seen)
        assert any("flushed_amount" in statement for statement, _ in statements)
        with write_transaction():
            for statement, parameters in statements:
                plan = db.session.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
                scans = [step[3] for step in plan if step[3].startswith("SCAN") and "VIRTUAL TABLE" not in step[3]]
                assert not scans, (statement, scans)
            db.session.rollback()
        assert db.session.scalar(select(Invoice.flushed_amount).filter_by(key=blues[0].key)) == Decimal("10.00")
