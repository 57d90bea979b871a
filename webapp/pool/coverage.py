"""同步覆盖: per company, which months and invoice kinds the pool holds, when and how each was synced.

A cell is covered when a subtask for its month succeeded: a file import covers every kind of
the month (the export is 全量), a download the kinds it asked for. A file import that succeeded
also covers the months inside it that held no invoice (a year exported whole has no subtask for an
empty month, yet that month was synced: 已同步（无发票）, not a gap). A gap is a month and kind
never synced; the pool's own counts say how many invoices each cell holds.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import date

from sqlalchemy import func, select

from channels.invoice_types import DOWNLOAD_KINDS
from channels.months import month_index, month_of, months_between, year_months
from webapp.batches import period_limits, period_years
from webapp.extensions import db
from webapp.models import Batch, InvoiceMonthSummary, Subtask
from webapp.params import year_range
from webapp.pool.month_stats import month_stats, when
from webapp.statuses import BatchStatus, DataType, Method, Source, SubtaskStatus


def coverage_months(today: date, year: int | None = None) -> list[str]:
    """The months the grid shows: one year, or the five years 开票日期 may span (period_limits),
    up to the current month."""
    if year:
        return [m for m in year_months(year) if month_index(m) <= month_index(month_of(today))]
    return months_between(*period_limits(today))


def _counts(tax_id: str, months: list[str]) -> dict:
    """Invoices per (month, type code), with the newest sync and usage update of each cell.

    Read from the figures kept per company-month (webapp.pool.month_stats), so a company-year of a
    million-invoice pool reads twelve rows (docs/performance.md, coverage grid)."""
    counts = {}
    for month, figures in month_stats(tax_id, months[0], months[-1]).items():
        for code, (n, synced, usage, with_usage, positive) in figures["cells"].items():
            counts[(month, code or None)] = (n, when(synced), when(usage), with_usage, positive)
    return counts


def _syncs(tax_id: str, months: list[str]) -> dict:
    """The latest successful invoice sync per (month, type code): (finished_at, source)."""
    rows = db.session.execute(
        select(Subtask.period, Subtask.finished_at, Batch.method, Batch.channel, Batch.type_codes)
        .join(Batch)
        .where(Batch.tax_id == tax_id, Batch.data_type == DataType.INVOICES, Subtask.status == SubtaskStatus.SUCCEEDED,
                           Subtask.period >= months[0], Subtask.period <= months[-1])
        .order_by(Subtask.finished_at))
    latest: dict = {}
    for period, finished, method, channel, codes in rows:
        source = Source.of(method, channel)
        for code in codes or ["*"]:
            latest[(period, code)] = (finished, source)
    for period, finished in _inside_whole_files(tax_id, months):
        if (period, "*") not in latest or latest[(period, "*")][0] < finished:
            latest[(period, "*")] = (finished, Source.FILE)
    return latest


def _inside_whole_files(tax_id: str, months: list[str]) -> list[tuple[str, object]]:
    """(month, finished) for every month between the first and last month of a file import that
    succeeded, within `months`: the months of the export that held no invoice."""
    spans = db.session.execute(
        select(Batch.finished_at, func.min(Subtask.period), func.max(Subtask.period)).join(Subtask)
        .where(Batch.tax_id == tax_id, Batch.method == Method.FILE, Batch.data_type == DataType.INVOICES,
               Batch.status == BatchStatus.SUCCEEDED)
        .group_by(Batch.id, Batch.finished_at)
        .having(func.min(Subtask.period) <= months[-1], func.max(Subtask.period) >= months[0]))
    shown = set(months)
    return [(month, finished) for finished, first, last in spans if finished
            for month in months_between(first, last) if month in shown]


def coverage_years(tax_id: str, today: date) -> list[int]:
    """The years the grid offers, newest first: the five years 开票日期 may span, and every other
    year the company's pool holds invoices of (an old year imported from a file), within what a
    page may ask for (webapp.params.year_range)."""
    first, last = year_range()
    held = {int(month[:4]) for month in db.session.scalars(
        select(InvoiceMonthSummary.month).where(InvoiceMonthSummary.tax_id == tax_id))}
    return sorted({y for y in held | set(period_years(today)) if first <= y <= last}, reverse=True)


def coverage(tax_id: str, today: date, year: int | None = None) -> dict:
    """{month: {type code: {"invoices", "last_synced", "source", "usage_updated", "with_usage", "gap"}}}."""
    months = coverage_months(today, year)
    if not months:
        return {}
    counts, syncs = _counts(tax_id, months), _syncs(tax_id, months)
    codes = list(DOWNLOAD_KINDS) + sorted({t for (_, t) in counts if t and t not in DOWNLOAD_KINDS})
    grid: dict = defaultdict(dict)
    for month in months:
        for code in codes:
            n, synced_at, usage_at, with_usage, positive = counts.get((month, code), (0, None, None, 0, 0))
            candidates = [s for s in (syncs.get((month, code)), syncs.get((month, "*"))) if s]
            finished, source = max(candidates, key=lambda s: s[0]) if candidates else (None, None)
            grid[month][code] = {
                "invoices": n, "last_synced": finished or synced_at, "source": source,
                "usage_updated": usage_at, "with_usage": with_usage, "positive": positive,
                "gap": n == 0 and finished is None,
            }
    return dict(grid)


def issued_codes(tax_id: str, today: date, grid: dict, whole: bool) -> list[str]:
    """The grid's kinds the company issued in the last five years, in the grid's order.

    Why: a company that never issues, say, 机动车销售统一发票 would otherwise see a whole column of
    red 缺口; such kinds are left out unless the user asks for every kind. Judged over five years, so a
    quiet year still shows the gaps of the kinds the company does issue; `whole` says the grid already
    spans them (then no second query)."""
    if whole:
        ever = {code for cells in grid.values() for code, cell in cells.items() if cell["invoices"]}
    else:
        ever = {code for (_, code) in _counts(tax_id, coverage_months(today))}
    first = next(iter(grid.values()), {})
    return [code for code in first if code in ever]


def coverage_json(grid: dict) -> dict:
    """The grid as `pool coverage` prints it."""
    def stamp(value):
        return value.isoformat(sep=" ", timespec="seconds") if value else None

    return {month: {code: {"invoices": cell["invoices"], "last_synced": stamp(cell["last_synced"]),
                           "source": cell["source"]} for code, cell in cells.items()}
            for month, cells in grid.items()}
