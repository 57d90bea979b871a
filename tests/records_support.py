"""Records to staged rows, the long way: the reference the direct paths are checked against.

The parser (channels/etax_file.py) and the download (channels/payload.py) build the pool's staged
rows straight from their cells and payloads; `stage` builds the same rows from InvoiceRecords, field
by field, so tests can compare the two and can write records into the pool.
"""
from __future__ import annotations

from collections.abc import Iterable

from channels.records import TIMESTAMP, InvoiceRecord, StagedInvoice
from webapp.pool import latest_copies


def _text(value) -> str | None:
    return None if value is None else str(value)


def stage(records: Iterable[InvoiceRecord]) -> list[StagedInvoice]:
    """Records as tuples of plain values (text, numbers, None) in the tables' column order
    (channels.records.HEADER_COLUMNS and LINE_COLUMNS); an invoice given twice is kept once, its
    last copy, as the pool keeps it."""
    return latest_copies((
        (r.key, r.seller_tax_id, r.seller_name, r.code, r.number, r.digital_number, r.buyer_tax_id, r.buyer_name,
         r.issued_at.strftime(TIMESTAMP), r.month, str(r.amount), str(r.tax), _text(r.total), r.origin, r.type_name,
         r.type_code, r.status, r.is_red, r.risk_level, r.issuer, r.remark, r.red_of),
        [(ln.line_no, ln.name, ln.tax_code, ln.special_type, ln.spec, ln.unit, _text(ln.quantity),
          _text(ln.unit_price), str(ln.amount), ln.tax_rate, str(ln.tax), _text(ln.total), ln.is_discount)
         for ln in r.lines],
    ) for r in records)
