"""销项发票池: writing normalised records in bulk, and the figures users and scripts read back."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from sqlalchemy import case, delete, func, insert, select

from channels.records import InvoiceRecord

from .extensions import db
from .models import Invoice, InvoiceLine
from .settings import normalise_goods_name

CHUNK = 500
USAGE_COLUMNS = {"vat_usage", "excise_usage", "entry_status", "usage_channel", "usage_updated_at"}


def _header_row(record: InvoiceRecord, source: str, batch_id: int | None, now: datetime) -> dict:
    """The invoice table's columns for one record (usage status belongs to other sources)."""
    return {
        "key": record.key, "tax_id": record.seller_tax_id, "seller_name": record.seller_name,
        "code": record.code, "number": record.number, "digital_number": record.digital_number,
        "buyer_tax_id": record.buyer_tax_id, "buyer_name": record.buyer_name,
        "issued_at": record.issued_at, "month": record.month, "amount": record.amount, "tax": record.tax,
        "total": record.total, "origin": record.origin, "type_name": record.type_name,
        "type_code": record.type_code, "status": record.status, "is_red": record.is_red,
        "risk_level": record.risk_level, "issuer": record.issuer, "remark": record.remark,
        "red_of": record.red_of, "source": source, "batch_id": batch_id, "synced_at": now,
    }


def _line_rows(record: InvoiceRecord, error_goods: frozenset[str]) -> tuple[list[dict], int]:
    """The lines to keep and how many the error-goods filter dropped (blue invoices only, per the manual)."""
    rows, dropped = [], 0
    for line in record.lines:
        if not record.is_red and normalise_goods_name(line.name) in error_goods:
            dropped += 1
            continue
        rows.append({
            "invoice_key": record.key, "line_no": line.line_no, "name": line.name, "tax_code": line.tax_code,
            "special_type": line.special_type, "spec": line.spec, "unit": line.unit,
            "quantity": None if line.quantity is None else str(line.quantity),
            "unit_price": None if line.unit_price is None else str(line.unit_price),
            "amount": line.amount, "tax_rate": line.tax_rate, "tax": line.tax, "total": line.total,
            "is_discount": line.is_discount,
        })
    return rows, dropped


def _upsert(rows: list[dict]) -> None:
    """Insert invoice headers, updating those already in the pool by key, in one statement."""
    dialect = db.session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    stmt = dialect_insert(Invoice).values(rows)
    updates = {col: stmt.excluded[col] for col in rows[0] if col != "key" and col not in USAGE_COLUMNS}
    db.session.execute(stmt.on_conflict_do_update(index_elements=["key"], set_=updates))


def save_invoices(records: Iterable[InvoiceRecord], *, source: str, batch_id: int | None,
                  error_goods: frozenset[str]) -> tuple[int, int]:
    """Write records to the pool in bulk, replacing any earlier copy; returns (invoices, dropped lines).

    The caller owns the transaction: a unit of work commits or rolls back whole.
    """
    now = datetime.now()
    saved = dropped = 0
    records = list(records)
    for start in range(0, len(records), CHUNK):
        chunk = records[start:start + CHUNK]
        _upsert([_header_row(r, source, batch_id, now) for r in chunk])
        db.session.execute(delete(InvoiceLine).where(InvoiceLine.invoice_key.in_([r.key for r in chunk])))
        lines: list[dict] = []
        for record in chunk:
            kept, n_dropped = _line_rows(record, error_goods)
            lines.extend(kept)
            dropped += n_dropped
        if lines:
            db.session.execute(insert(InvoiceLine), lines)
        saved += len(chunk)
    return saved, dropped


def _money(value) -> str:
    return f"{Decimal(value or 0).quantize(Decimal('0.01'))}"


def pool_stats(tax_id: str) -> dict:
    """The figures of one company's pool, as `pool stats` prints them."""
    where = Invoice.tax_id == tax_id
    invoices, red, voided, amount, tax = db.session.execute(
        select(func.count(), func.sum(case((Invoice.is_red, 1), else_=0)),
               func.sum(case((Invoice.status == "已作废", 1), else_=0)),
               func.sum(Invoice.amount), func.sum(Invoice.tax)).where(where)
    ).one()
    lines = db.session.scalar(
        select(func.count()).select_from(InvoiceLine).join(Invoice, Invoice.key == InvoiceLine.invoice_key).where(where))
    by_type = dict(db.session.execute(
        select(Invoice.type_name, func.count()).where(where).group_by(Invoice.type_name).order_by(Invoice.type_name)).all())
    months = list(db.session.scalars(select(Invoice.month).where(where).distinct().order_by(Invoice.month)))
    return {
        "tax_id": tax_id, "invoices": invoices, "lines": lines, "blue": invoices - (red or 0), "red": red or 0,
        "voided": voided or 0, "amount": _money(amount), "tax": _money(tax), "by_type": by_type, "months": months,
    }


def invoice_lines(key: str) -> list[InvoiceLine]:
    return list(db.session.scalars(select(InvoiceLine).where(InvoiceLine.invoice_key == key).order_by(InvoiceLine.line_no)))


def invoice_json(invoice: Invoice) -> dict:
    """One invoice with its lines, as `pool show` prints it."""
    return {
        "key": invoice.key, "tax_id": invoice.tax_id, "seller_name": invoice.seller_name,
        "code": invoice.code, "number": invoice.number, "digital_number": invoice.digital_number,
        "buyer_tax_id": invoice.buyer_tax_id, "buyer_name": invoice.buyer_name,
        "issued_at": invoice.issued_at.isoformat(sep=" "), "type_name": invoice.type_name,
        "type_code": invoice.type_code, "status": invoice.status, "is_red": invoice.is_red,
        "amount": _money(invoice.amount), "tax": _money(invoice.tax),
        "total": None if invoice.total is None else _money(invoice.total), "origin": invoice.origin,
        "remark": invoice.remark, "red_of": invoice.red_of, "source": invoice.source,
        "usage": {"vat_usage": invoice.vat_usage, "excise_usage": invoice.excise_usage,
                  "entry_status": invoice.entry_status, "channel": invoice.usage_channel,
                  "updated_at": invoice.usage_updated_at.isoformat(sep=" ") if invoice.usage_updated_at else None},
        "lines": [{
            "line_no": line.line_no, "name": line.name, "tax_code": line.tax_code, "spec": line.spec,
            "unit": line.unit, "quantity": line.quantity, "unit_price": line.unit_price,
            "amount": _money(line.amount), "tax_rate": line.tax_rate, "tax": _money(line.tax),
            "total": None if line.total is None else _money(line.total), "is_discount": line.is_discount,
        } for line in invoice_lines(invoice.key)],
    }
