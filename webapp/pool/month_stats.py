"""The pool's own figures per company-month, kept so the coverage grid and `pool stats` read a few rows.

Why: both aggregated every invoice of a company (and `pool stats` every line too): 0.3–4.8 s at a
million invoices (docs/performance.md). The pool write already marks each company-month it
touches (mark_months_changed bumps `invoice_month_summary.version`); these figures
are kept beside 销项汇总's in the same row, with their own `stats_version`, and a month is counted
again only after it changed. A usage-status write marks its month too (jobs.tasks._usage).

One month's figures, as kept (JSON): {"cells": {type code: [invoices, newest synced_at, newest
usage_updated_at, blue invoices with usage, blue invoices]}, "types": {type name: [invoices, red,
voided]}, "amount": cents, "tax": cents, "lines": count}.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import bindparam, case, func, select, update

from webapp.extensions import db
from webapp.models import Invoice, InvoiceLine, InvoiceMonthSummary
from webapp.money import as_cents, sum_exact
from webapp.statuses import InvoiceStatus
from webapp.transactions import placeholder, write_transaction


def mark_months_changed(connection, pairs: set[tuple[str, str]]) -> None:
    """The pool changed these (tax ID, month)s: their kept figures (these and 销项汇总's) are stale from now on.

    Called in the writing transaction by the pool write (webapp.pool.save_staged) and by a usage-status
    write (jobs.tasks._usage), so the mark lands with the change or not at all.
    """
    if not pairs:
        return
    mark = placeholder(connection.dialect)
    connection.exec_driver_sql(
        f"INSERT INTO invoice_month_summary (tax_id, month, version) VALUES ({mark}, {mark}, 1) "
        "ON CONFLICT (tax_id, month) DO UPDATE SET version = invoice_month_summary.version + 1", sorted(pairs))


def _stamp(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _empty() -> dict:
    return {"cells": {}, "types": {}, "amount": 0, "tax": 0, "lines": 0}


def _count(tax_id: str, months: list[str]) -> dict[str, dict]:
    """{month: figures} counted from the pool: one grouped pass over the months' invoices, one over their lines."""
    dialect = db.session.get_bind().dialect.name
    where = (Invoice.tax_id == tax_id, Invoice.month.in_(months))
    voided = case((Invoice.status == InvoiceStatus.VOIDED, 1), else_=0)
    counted = {month: _empty() for month in months}
    for month, code, name, is_red, is_voided, n, synced, usage, with_usage, amount, tax in db.session.execute(
            select(Invoice.month, Invoice.type_code, Invoice.type_name, Invoice.is_red, voided, func.count(),
                   func.max(Invoice.synced_at), func.max(Invoice.usage_updated_at),
                   func.count(Invoice.usage_updated_at), sum_exact(dialect, Invoice.amount),
                   sum_exact(dialect, Invoice.tax))
            .where(*where).group_by(Invoice.month, Invoice.type_code, Invoice.type_name, Invoice.is_red, voided)):
        figures = counted[month]
        cell = figures["cells"].setdefault(code or "", [0, None, None, 0, 0])
        cell[0] += n
        cell[1] = max(filter(None, (cell[1], _stamp(synced))), default=None)
        cell[2] = max(filter(None, (cell[2], _stamp(usage))), default=None)
        if not is_red:  # usage status exists for blue invoices only: red ones are never asked
            cell[3] += with_usage
            cell[4] += n
        kind = figures["types"].setdefault(name or "", [0, 0, 0])
        kind[0] += n
        kind[1] += n if is_red else 0
        kind[2] += n if is_voided else 0
        figures["amount"] += as_cents(amount)
        figures["tax"] += as_cents(tax)
    for month, lines in db.session.execute(
            select(Invoice.month, func.count()).select_from(InvoiceLine)
            .join(Invoice, Invoice.key == InvoiceLine.invoice_key).where(*where).group_by(Invoice.month)):
        counted[month]["lines"] = lines
    return counted


def kept_figures(tax_id: str, first: str | None, last: str | None, column: str,
                 count: Callable[[str, list[str]], dict[str, dict]]) -> dict[str, dict]:
    """{month: figures} of the company's months from `first` to `last` (each optional) kept in the
    invoice_month_summary `column` (JSON, with its `<column>_version`): kept ones while current, the
    changed ones counted again by `count(tax_id, months)` and kept.

    Why one helper: these figures and 来源核对's (webapp.reconcile) follow the same version the pool
    write bumps (mark_months_changed), so each is counted once per change (docs/performance.md,
    coverage grid)."""
    table = InvoiceMonthSummary.__table__
    figures, version = table.c[column], table.c[f"{column}_version"]
    query = select(table.c.month, table.c.version, version, figures).where(table.c.tax_id == tax_id)
    if first:
        query = query.where(table.c.month >= first)
    if last:
        query = query.where(table.c.month <= last)
    found, stale = {}, {}
    for month, current, counted_at, kept in db.session.execute(query):
        if kept is not None and counted_at == current:
            found[month] = json.loads(kept)
        else:
            stale[month] = current
    if stale:
        counted = count(tax_id, sorted(stale))
        _keep(tax_id, column, counted, stale)
        found.update(counted)
    return dict(sorted(found.items()))


def _keep(tax_id: str, column: str, counted: dict[str, dict], versions: dict[str, int]) -> None:
    """Store figures counted just now; a pool write that bumped the version meanwhile leaves them stale."""
    table = InvoiceMonthSummary.__table__
    with write_transaction():
        db.session.execute(
            update(table).where(table.c.tax_id == tax_id, table.c.month == bindparam("m"),
                                table.c.version == bindparam("v"))
            .values({column: bindparam("s"), f"{column}_version": bindparam("v")}),
            [{"m": month, "v": versions[month], "s": json.dumps(figures, ensure_ascii=False)}
             for month, figures in counted.items()])


def month_stats(tax_id: str, first: str | None = None, last: str | None = None) -> dict[str, dict]:
    """{month: figures} of the company's months from `first` to `last` (each optional), kept ones while
    current, the changed ones counted again and kept."""
    return kept_figures(tax_id, first, last, "stats", _count)


def when(stamp: str | None) -> datetime | None:
    """A kept timestamp back as the datetime the pool holds."""
    return datetime.fromisoformat(stamp) if stamp else None
