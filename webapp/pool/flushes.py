"""What the pool knows of a blue invoice's red flushes: the red invoices that name it (red_of),
summed into the blue row's `flushed_amount` as invoices are saved.

Why stored: the file's 发票状态 of an old blue invoice often still says 正常 although the pool holds
a red invoice that flushes it whole (docs/codes.md, 红字发票如何指向蓝字发票). The list, the detail page and the status
filter show the derived status beside the file's (正常（已被红冲 100%）), and a filter over a million
invoices cannot sum the reds of every row as it goes. Blues are refreshed after every pool write, for
the reds written (their red_of) and the blues written (a red imported before its blue); both forms
of a blue's reference are summed: its key, and 发票代码-发票号码 where that differs (a 数电纸质 blue).
"""
from __future__ import annotations

import json
from decimal import Decimal

from webapp.statuses import InvoiceStatus
from webapp.transactions import placeholders

CHUNK = 500
# One red row counts once whichever form names the blue (a legacy blue's key is its 发票代码-发票号码).
# `r.tax_id || ''` keeps PostgreSQL's planner on ix_invoice_red_of: on the company's index it walks every
# invoice of the company for each row (the same trap webapp.pool.red_invoices_of notes).
_FLUSHED = ("(SELECT SUM(ABS(r.amount)) FROM invoice r{by_red_of} WHERE r.red_of IN (invoice.key, "
            "invoice.code || '-' || invoice.number) AND r.is_red = {true} AND r.tax_id || '' = invoice.tax_id)")
# SQLite plans with the statistics of the last ANALYZE, taken when the batch before ended. After a first
# small file they say the pool has 20 rows, and for the next file's 10,000 invoices SQLite scanned the
# whole pool for every chunk, and again for each blue's reds: 0.2 s an import, growing with the pool
# (docs/performance.md, The live import — chain). So on SQLite the look-ups leave it no choice: the
# reds through their named index, the blues by a join whose order is fixed (CROSS JOIN) from the refs
# to the key's unique index or the named number index, then each blue by its id.
_SQLITE_BLUES = ("SELECT invoice.id FROM json_each(?) AS ref CROSS JOIN invoice ON invoice.key = ref.value "
                 "WHERE invoice.is_red = 0 UNION SELECT invoice.id FROM json_each(?) AS ref CROSS JOIN invoice "
                 "INDEXED BY ix_invoice_number ON invoice.number = ref.value WHERE invoice.is_red = 0 "
                 "AND invoice.code || '-' || invoice.number IN (SELECT value FROM json_each(?))")
_SQLITE_FLUSH = "UPDATE invoice SET flushed_amount = {flushed} WHERE id = ?".format(
    flushed=_FLUSHED.format(true=1, by_red_of=" INDEXED BY ix_invoice_red_of"))
_POSTGRESQL_FLUSHED = _FLUSHED.format(true="true", by_red_of="")


def refresh_flushed(connection, headers: list[tuple], key: int, red: int, red_of: int, code: int,
                    number: int) -> None:
    """Recompute `flushed_amount` of the blues these just-written header rows touch: those their reds
    name, and the blues among them (positions of the columns given)."""
    refs = {h[red_of] for h in headers if h[red] and h[red_of]}
    refs |= {h[key] for h in headers if not h[red]}
    refs |= {f"{h[code]}-{h[number]}" for h in headers if not h[red] and h[code] and h[number]}
    refs = sorted(refs)
    postgresql = connection.dialect.name == "postgresql"
    parts = [refs] if postgresql else [refs[start:start + CHUNK] for start in range(0, len(refs), CHUNK)]
    for part in parts:
        # only the refs some red names: most blues just written have none, and no row is rewritten for them
        named = _named(connection, tuple(part))
        if not named:
            continue
        numbers = tuple({ref.split("-", 1)[1] for ref in named if "-" in ref}) or ("",)
        if not postgresql:
            ids = connection.exec_driver_sql(_SQLITE_BLUES, (json.dumps(named), json.dumps(numbers),
                                                             json.dumps(named))).scalars()
            if blues := [(blue,) for blue in ids]:
                connection.exec_driver_sql(_SQLITE_FLUSH, blues)
            continue
        marks = placeholders(connection.dialect, len(named))
        number_marks = placeholders(connection.dialect, len(numbers))
        connection.exec_driver_sql(  # the 发票代码-发票号码 form found through ix_invoice_number
            f"UPDATE invoice SET flushed_amount = {_POSTGRESQL_FLUSHED} WHERE is_red = false AND (key IN {marks} "
            f"OR (number IN {number_marks} AND code || '-' || number IN {marks}))", named + numbers + named)


def _named(connection, refs: tuple[str, ...]) -> tuple[str, ...]:
    """The refs some red invoice names. SQLite looks an IN list up in ix_invoice_red_of (named). PostgreSQL
    probes ix_invoice_red_of once per ref, in one statement, whatever the planner knows: `red_of IN
    (…)` or `= ANY(…)` with hundreds of refs was planned as a scan of the whole pool (always without
    statistics, as during a first load; with them too at 1,000 refs), so every chunk of a pool write
    scanned the pool: a fifth of a download's waiting for the server (docs/performance.md, Download
    pipeline). A sub-query with LIMIT 1 is never turned into a join: each ref is one probe."""
    if connection.dialect.name != "postgresql":
        return tuple(connection.exec_driver_sql(
            "SELECT DISTINCT red_of FROM invoice INDEXED BY ix_invoice_red_of WHERE red_of IN "
            f"{placeholders(connection.dialect, len(refs))} AND is_red = 1", refs).scalars())
    return tuple(connection.exec_driver_sql(
        "SELECT ref FROM unnest(%s::text[]) AS ref, LATERAL (SELECT 1 FROM invoice r WHERE r.red_of = ref "
        "AND r.is_red LIMIT 1) AS named", (list(refs),)).scalars())


def shown_status(status: str, amount, flushed) -> str:
    """发票状态 as the list and the detail page show it: the file's, with what the pool's red invoices
    say beside it where the file does not say it already: 正常（已被红冲 100%）."""
    if not flushed or status in (InvoiceStatus.FLUSHED_FULL, InvoiceStatus.FLUSHED_PARTIAL,
                                 InvoiceStatus.VOIDED) or not amount:
        return status
    share = min(Decimal(flushed) / abs(Decimal(amount)) * 100, Decimal(100))
    return f"{status}（已被红冲 {share.quantize(Decimal(1)) if share >= 1 else share.quantize(Decimal('0.1'))}%）"
