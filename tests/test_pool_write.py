"""The pool's bulk write (webapp.pool.save_staged) on each database: replace, refuse, roll back."""
from __future__ import annotations

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
