"""销项发票池: writing normalised records in bulk, and the figures users and scripts read back."""
from __future__ import annotations

import json
from collections.abc import Iterable
from decimal import Decimal

from sqlalchemy import select, text

from channels.records import (
    HEADER_COLUMNS,
    LINE_COLUMNS,
    TIMESTAMP,
    SourceRejected,
    StagedInvoice,
)
from webapp.accounts.settings import is_error_goods
from webapp.clock import now as clock_now
from webapp.extensions import db
from webapp.models import Invoice, InvoiceLine
from webapp.money import as_yuan
from webapp.pool.flushes import refresh_flushed, shown_status
from webapp.pool.month_stats import mark_months_changed, month_stats
from webapp.pool.usage import NOT_APPLICABLE, usage_applies, usage_labels
from webapp.transactions import copy_rows, placeholders, write_transaction

CHUNK = 1000
# Staged rows hold plain values in these orders (decimals as text), so staging and writing are cheap.
WRITE_COLUMNS = HEADER_COLUMNS + ("source", "batch_id", "synced_at")
_UPDATES = ", ".join(f"{c} = excluded.{c}" for c in WRITE_COLUMNS if c != "key")  # an upsert's new values
# where refresh_flushed finds its columns in a written header row (WRITE_COLUMNS)
_FLUSH_COLUMNS = tuple(WRITE_COLUMNS.index(c) for c in ("key", "is_red", "red_of", "code", "number"))


def latest_copies(staged: Iterable[StagedInvoice]) -> list[StagedInvoice]:
    """Each invoice once, its last copy (a bureau repeating it in two packages), in first-seen order."""
    return list({invoice.header.key: invoice for invoice in staged}.values())


def _statements(dialect) -> tuple[str, str]:
    """The upsert of headers (usage status untouched: it comes from other sources) and the line insert."""
    upsert = (f"INSERT INTO invoice ({', '.join(WRITE_COLUMNS)}) VALUES {placeholders(dialect, len(WRITE_COLUMNS))} "
              f"ON CONFLICT (key) DO UPDATE SET {_UPDATES}")
    columns = ("invoice_key",) + LINE_COLUMNS
    insert_lines = f"INSERT INTO invoice_line ({', '.join(columns)}) VALUES {placeholders(dialect, len(columns))}"
    return upsert, insert_lines


def _refuse_other_companies(connection, sellers: dict[str, str]) -> set[str]:
    """An invoice number already in the pool under another seller is never taken over or overwritten.
    Returns the keys already in the pool (theirs are the only lines to replace)."""
    keys = list(sellers)
    if connection.dialect.name == "sqlite":  # the join's order fixed, whatever the statistics say (pool.flushes)
        stored = connection.exec_driver_sql("SELECT invoice.key, invoice.tax_id FROM json_each(?) AS ref CROSS JOIN "
                                            "invoice ON invoice.key = ref.value", (json.dumps(keys),)).all()
    else:
        stored = connection.exec_driver_sql(f"SELECT key, tax_id FROM invoice WHERE key IN "
                                            f"{placeholders(connection.dialect, len(keys))}", tuple(keys)).all()
    for key, tax_id in stored:
        if tax_id != sellers[key]:
            raise SourceRejected(f"发票 {key} 已作为销方 {tax_id} 的发票存在于发票池，与本次数据的销方 {sellers[key]} "
                                 "不一致，本月未导入")
    return {key for key, _tax_id in stored}


def save_staged(staged: list[StagedInvoice], *, source: str, batch_id: int | None,
                error_goods: frozenset[str]) -> tuple[int, int]:
    """Write staged invoices in bulk, replacing earlier copies; returns (invoices, dropped lines).

    Error-goods lines are dropped from blue invoices only (docs/rules.md, 错误商品名称过滤). The caller owns the
    transaction: a unit of work commits or rolls back whole. This is the pool's one write path; it
    marks the months it touched, so their kept figures are counted again (month_stats). Work that
    must happen beside every pool write of a job (来源核对's bookkeeping, webapp.reconcile.record_sources)
    is called by the job alongside, with the same staged rows (jobs.tasks._saver).
    """
    connection = db.session.connection()
    write = _write_chunk_postgresql if connection.dialect.name == "postgresql" else _write_chunk
    now = clock_now().strftime(TIMESTAMP)
    dropped = 0
    for start in range(0, len(staged), CHUNK):
        headers, lines, chunk_dropped = _rows_to_write(staged[start:start + CHUNK], source, batch_id, now,
                                                       error_goods)
        write(connection, headers, lines)
        refresh_flushed(connection, headers, *_FLUSH_COLUMNS)
        dropped += chunk_dropped
    mark_months_changed(connection, {(header.tax_id, header.month) for header, _lines in staged})
    return len(staged), dropped


def _rows_to_write(chunk: list[StagedInvoice], source: str, batch_id: int | None, now: str,
                   error_goods: frozenset[str]) -> tuple[list[tuple], list[tuple], int]:
    """A chunk's header rows (WRITE_COLUMNS) and line rows (invoice_key + LINE_COLUMNS), error goods dropped.

    An invoice staged twice in one chunk is written once, its last copy winning, as row-by-row
    upserts would leave it.
    """
    latest = {invoice.header.key: invoice for invoice in chunk}
    headers, lines, dropped = [], [], 0
    verdicts: dict[str, bool] = {}  # per goods name: a month repeats a few hundred names
    for header, header_lines in latest.values():
        headers.append((*header, source, batch_id, now))
        for line in header_lines:
            if not header.is_red:
                name = line.name
                error = verdicts.get(name)
                if error is None:
                    error = verdicts[name] = is_error_goods(name, error_goods)
                if error:
                    dropped += 1
                    continue
            lines.append((header.key, *line))
    return headers, lines, dropped


def _write_chunk(connection, headers: list[tuple], lines: list[tuple]) -> None:
    """SQLite: look up clashes, upsert the headers, replace the lines of the invoices that were
    already there (an indexed look-up per key; a first download deletes nothing)."""
    stored = _refuse_other_companies(connection, {header[0]: header[1] for header in headers})
    upsert, insert_lines = _statements(connection.dialect)
    connection.exec_driver_sql(upsert, headers)
    if stored:
        connection.exec_driver_sql("DELETE FROM invoice_line WHERE invoice_key IN "
                                   f"{placeholders(connection.dialect, len(stored))}",
                                   tuple(stored))
    if lines:
        connection.exec_driver_sql(insert_lines, lines)


def _write_chunk_postgresql(connection, headers: list[tuple], lines: list[tuple]) -> None:
    """PostgreSQL: COPY the headers into a temporary table, upsert from it, COPY the lines; no look-up.

    The upsert only updates a row of the same seller (`WHERE invoice.tax_id = excluded.tax_id`)
    and returns which rows it wrote and whether each was new (`xmax = 0`): a row missing from the
    answer is another company's invoice, and only the updated ones have old lines to delete. So
    the cost per chunk does not depend on the pool's size, even before the planner has statistics
    for a table that grew by millions of rows in one load (docs/performance.md). COPY, not a
    multi-row VALUES: psycopg spends longer splitting a 25,000-placeholder statement than the
    server spends running it.
    """
    columns = ", ".join(WRITE_COLUMNS)
    connection.exec_driver_sql(f"CREATE TEMPORARY TABLE IF NOT EXISTS invoice_staged ON COMMIT DROP AS "
                               f"SELECT {columns} FROM invoice WITH NO DATA")
    copy_rows(connection, f"invoice_staged ({columns})", headers)
    written = connection.exec_driver_sql(
        f"INSERT INTO invoice ({columns}) SELECT {columns} FROM invoice_staged "
        f"ON CONFLICT (key) DO UPDATE SET {_UPDATES} WHERE invoice.tax_id = excluded.tax_id "
        "RETURNING key, xmax = 0").all()
    connection.exec_driver_sql("TRUNCATE invoice_staged")
    if len(written) < len(headers):
        done = {key for key, _ in written}
        _refuse_other_companies(connection, {h[0]: h[1] for h in headers if h[0] not in done})
    updated = [key for key, inserted in written if not inserted]
    if updated:
        connection.exec_driver_sql("DELETE FROM invoice_line WHERE invoice_key = ANY(%s)", (updated,))
    if lines:
        copy_rows(connection, f"invoice_line (invoice_key, {', '.join(LINE_COLUMNS)})", lines)


def refresh_statistics() -> None:
    """Let the query planner know the pool's shape after a batch changed it.

    SQLite keeps no statistics by itself; without them it sorts a whole company's invoices to
    show the first page. A bounded ANALYZE takes well under a second even at a million rows.
    PostgreSQL's autovacuum does this on its own.
    """
    if db.session.get_bind().dialect.name == "sqlite":
        with write_transaction():
            db.session.execute(text("PRAGMA analysis_limit=2000"))
            db.session.execute(text("ANALYZE"))


def _money(value) -> str:
    return f"{Decimal(value or 0).quantize(Decimal('0.01'))}"


def pool_stats(tax_id: str) -> dict:
    """The figures of one company's pool, as `pool stats` prints them.

    Added up from the figures kept per company-month (webapp.pool.month_stats): a few dozen rows,
    not every invoice and line of the company (docs/performance.md, pool stats).
    """
    months = {month: figures for month, figures in month_stats(tax_id).items() if figures["types"]}
    by_type: dict[str, int] = {}
    red = voided = amount = tax = 0
    for figures in months.values():
        for type_name, (count, red_count, voided_count) in figures["types"].items():
            by_type[type_name] = by_type.get(type_name, 0) + count
            red += red_count
            voided += voided_count
        amount += figures["amount"]
        tax += figures["tax"]
    invoices = sum(by_type.values())
    return {
        "tax_id": tax_id, "invoices": invoices, "lines": sum(f["lines"] for f in months.values()),
        "blue": invoices - red, "red": red, "voided": voided, "amount": str(as_yuan(amount)), "tax": str(as_yuan(tax)),
        "by_type": dict(sorted(by_type.items())), "months": sorted(months),
    }


def find_invoice(ref: str, tax_ids: list[str] | None = None) -> Invoice | None:
    """An invoice by its key, or by 发票代码-发票号码 (how a red invoice's 备注 names a 数电纸质 blue one)."""
    ref = (ref or "").strip()
    query = select(Invoice)
    if tax_ids is not None:
        query = query.where(Invoice.tax_id.in_(tax_ids))
    invoice = db.session.scalar(query.where(Invoice.key == ref))
    if invoice is None and "-" in ref:
        code, number = ref.split("-", 1)
        invoice = db.session.scalar(query.where(Invoice.code == code, Invoice.number == number))
    return invoice


def red_invoices_of(blue: Invoice) -> list[Invoice]:
    """The red invoices in the pool that flush this blue one."""
    refs = [blue.key] + ([f"{blue.code}-{blue.number}"] if blue.code and blue.number else [])
    # Only red_of in SQL, so the planner takes its index: with the company and the order in the
    # query too, SQLite walked the company's invoices by date (2 s at a million; docs/performance.md).
    reds = [red for red in db.session.scalars(select(Invoice).where(Invoice.red_of.in_(refs)))
            if red.tax_id == blue.tax_id]
    return sorted(reds, key=lambda red: (red.issued_at, red.id))


def blue_facts(invoice: Invoice, reds: list[Invoice]):
    """What red-flush readiness (webapp.pool.redflush) needs to know of a blue invoice."""
    from webapp.pool.redflush import BlueFacts

    return BlueFacts(
        type_code=invoice.type_code, status=invoice.status, is_red=invoice.is_red, amount=Decimal(invoice.amount),
        flushed_amount=sum((abs(Decimal(r.amount)) for r in reds), Decimal("0")), vat_usage=invoice.vat_usage,
        entry_status=invoice.entry_status, usage_channel=invoice.usage_channel,
        usage_updated_at=invoice.usage_updated_at, red_lock=invoice.red_lock)


def line_balances(invoice: Invoice, reds: list[Invoice]):
    """What is left of a blue invoice line by line, after the red invoices that flush it (oldest
    first; webapp.pool.flushed_lines), its lines read as the admin's errorGoodsNames reads them."""
    from webapp.accounts.settings import error_goods_names
    from webapp.pool.flushed_lines import RedFigures, balances, blue_lines

    lines = blue_lines(invoice_lines(invoice.key), error_goods_names())
    figures = [RedFigures(red.key, Decimal(red.amount), Decimal(red.tax), invoice_lines(red.key)) for red in reds]
    return balances(lines, figures, Decimal(invoice.amount), Decimal(invoice.tax))


def invoice_lines(key: str) -> list[InvoiceLine]:
    """An invoice's lines in their order (discount lines follow the line they discount)."""
    return list(db.session.scalars(select(InvoiceLine).where(InvoiceLine.invoice_key == key)
                                   .order_by(InvoiceLine.line_no)))


def invoice_json(invoice: Invoice) -> dict:
    """One invoice with its lines, as `pool show` prints it."""
    return {
        "key": invoice.key, "tax_id": invoice.tax_id, "seller_name": invoice.seller_name,
        "code": invoice.code, "number": invoice.number, "digital_number": invoice.digital_number,
        "buyer_tax_id": invoice.buyer_tax_id, "buyer_name": invoice.buyer_name,
        "issued_at": invoice.issued_at.isoformat(sep=" "), "type_name": invoice.type_name,
        "type_code": invoice.type_code, "status": invoice.status, "is_red": invoice.is_red,
        "status_shown": shown_status(invoice.status, invoice.amount, invoice.flushed_amount),
        "flushed_amount": None if invoice.flushed_amount is None else _money(invoice.flushed_amount),
        "amount": _money(invoice.amount), "tax": _money(invoice.tax),
        "total": None if invoice.total is None else _money(invoice.total), "origin": invoice.origin,
        "remark": invoice.remark, "red_of": invoice.red_of, "source": invoice.source,
        "usage": {"vat_usage": invoice.vat_usage, "excise_usage": invoice.excise_usage,
                  "entry_status": invoice.entry_status, "channel": invoice.usage_channel,
                  "labels": usage_labels(invoice.vat_usage, invoice.excise_usage, invoice.entry_status,
                                         invoice.usage_channel)
                  if usage_applies(invoice.is_red, invoice.status, invoice.vat_usage)
                  else dict.fromkeys(("vat_usage", "excise_usage", "entry_status"), NOT_APPLICABLE),
                  "updated_at": invoice.usage_updated_at.isoformat(sep=" ", timespec="seconds")
                  if invoice.usage_updated_at else None},
        "lines": [{
            "line_no": line.line_no, "name": line.name, "tax_code": line.tax_code, "spec": line.spec,
            "unit": line.unit, "quantity": line.quantity, "unit_price": line.unit_price,
            "amount": _money(line.amount), "tax_rate": line.tax_rate, "tax": _money(line.tax),
            "total": None if line.total is None else _money(line.total), "is_discount": line.is_discount,
        } for line in invoice_lines(invoice.key)],
    }
