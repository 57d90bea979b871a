"""销项汇总: a year of output invoices summed by tax rate per month, the way the VAT return reads them.

The columns follow the return's 附列资料（一）: 开具增值税专用发票 and 开具其他发票, each with 金额
and 税额; the 专用发票 kinds are those of SPECIAL_CODES. Lines are summed, not
headers, because one invoice may carry several rates. Red invoices carry negative amounts and so
are subtracted by summing; voided invoices (已作废) are left out.

Amounts are summed in whole cents on SQLite (which keeps NUMERIC as floating point) so the
figures are exact to the cent; PostgreSQL's numeric sums are exact by themselves.

Each company-month's figures are kept (invoice_month_summary) and summed again only after the pool
write touched that month, so a company-year reads twelve small rows instead of every line.
"""
from __future__ import annotations

import json
from collections import defaultdict
from decimal import Decimal

from sqlalchemy import bindparam, case, func, select, update

from channels.months import year_months
from webapp.extensions import db
from webapp.models import Invoice, InvoiceLine, InvoiceMonthSummary
from webapp.money import as_cents, as_yuan, sum_exact
from webapp.statuses import InvoiceStatus
from webapp.transactions import write_transaction

SPECIAL_CODES = ("01", "08", "81", "85")  # 增值税专用发票, 电子专用, 数电专票, 数电纸质专票
RATE_ORDER = ("13%", "9%", "6%", "5%", "3%", "1%", "0%", "免税", "不征税")
NO_RATE = "未注明"
COLUMNS = ("special", "other")
ZERO = Decimal("0.00")


def rate_sort_key(rate: str):
    """The return's order (13% first, 不征税 last); other rates (old 16%, 1.5%…) by size after 0%."""
    if rate in RATE_ORDER:
        return (RATE_ORDER.index(rate), 0)
    try:
        return (RATE_ORDER.index("0%"), -float(rate.rstrip("%")))
    except ValueError:
        return (len(RATE_ORDER), 0)


def _empty_month() -> dict:
    return {"rates": {}, "blue": 0, "red": 0, "types": {}}


def _compute(tax_id: str, months: list[str]) -> dict:
    """{month: its summary in whole cents}: rate lines of non-voided invoices, 价税合计 and counts by kind."""
    dialect = db.session.get_bind().dialect.name
    where = (Invoice.tax_id == tax_id, Invoice.month.in_(months))
    special = case((Invoice.type_code.in_(SPECIAL_CODES), 1), else_=0)
    computed = {month: _empty_month() for month in months}
    for month, is_special, rate, amount, tax in db.session.execute(
            select(Invoice.month, special, InvoiceLine.tax_rate, sum_exact(dialect, InvoiceLine.amount),
                   sum_exact(dialect, InvoiceLine.tax))
            .join(InvoiceLine, InvoiceLine.invoice_key == Invoice.key)
            .where(*where, Invoice.status != InvoiceStatus.VOIDED)
            .group_by(Invoice.month, special, InvoiceLine.tax_rate)):
        cell = computed[month]["rates"].setdefault(rate or NO_RATE, {column: [0, 0] for column in COLUMNS})[
            "special" if is_special else "other"]
        cell[0] += as_cents(amount)
        cell[1] += as_cents(tax)
    voided = case((Invoice.status == InvoiceStatus.VOIDED, 1), else_=0)
    gross = func.coalesce(Invoice.total, Invoice.amount + Invoice.tax)
    for month, type_name, is_red, is_voided, count, total in db.session.execute(
            select(Invoice.month, Invoice.type_name, Invoice.is_red, voided, func.count(), sum_exact(dialect, gross))
            .where(*where).group_by(Invoice.month, Invoice.type_name, Invoice.is_red, voided)):
        counts = computed[month]["types"].setdefault(type_name, [0, 0, 0])
        if is_voided:
            counts[2] += count
            continue
        counts[1 if is_red else 0] += count
        computed[month]["red" if is_red else "blue"] += abs(as_cents(total))
    return computed


def _monthly(tax_ids: list[str], months: list[str]) -> dict:
    """{(tax ID, month): summary}: kept ones while current, the stale ones computed again and kept.

    Summing a company-year of lines takes about a second at a million invoices; a month changes
    only when the pool write touches it, so each is summed once per change.
    """
    table = InvoiceMonthSummary.__table__  # plain rows: 50 companies' year is 600 of them, no ORM objects needed
    rows = db.session.execute(select(table.c.tax_id, table.c.month, table.c.version, table.c.summary_version,
                                     table.c.summary).where(table.c.tax_id.in_(tax_ids), table.c.month.in_(months)))
    found, stale = {}, defaultdict(dict)
    for tax_id, month, version, summary_version, summary in rows:
        if summary is not None and summary_version == version:
            found[(tax_id, month)] = json.loads(summary)
        else:
            stale[tax_id][month] = version
    found.update(_compute_and_keep(stale))
    return found


def _compute_and_keep(stale: dict[str, dict[str, int]]) -> dict:
    """Sum the stale months ({tax ID: {month: version}}) and keep them; {(tax ID, month): summary}."""
    found, fresh = {}, []
    for tax_id, versions in stale.items():
        for month, summary in _compute(tax_id, sorted(versions)).items():
            found[(tax_id, month)] = summary
            fresh.append({"t": tax_id, "m": month, "v": versions[month], "s": json.dumps(summary, ensure_ascii=False)})
    if fresh:
        _keep(fresh)
    return found


def refresh_summaries() -> int:
    """Sum every month the pool write left stale, now, so the first 销项汇总 view after an import
    reads kept rows instead of summing a year of lines (about a second at a million invoices).

    Called when a batch ends (jobs.tasks.run_subtask), outside the month's write transaction so no
    write waits for the sums; a write that lands meanwhile bumps the version and the view sums that
    month again. Returns how many months were summed.
    """
    table = InvoiceMonthSummary.__table__
    stale = defaultdict(dict)
    for tax_id, month, version in db.session.execute(
            select(table.c.tax_id, table.c.month, table.c.version).where(
                (table.c.summary_version.is_(None)) | (table.c.summary_version != table.c.version))):
        stale[tax_id][month] = version
    return len(_compute_and_keep(stale))


def _keep(fresh: list[dict]) -> None:
    """Store summaries computed just now; a write that bumped the version meanwhile makes them stale again."""
    table = InvoiceMonthSummary.__table__
    with write_transaction():
        db.session.execute(update(table).where(table.c.tax_id == bindparam("t"), table.c.month == bindparam("m"),
                                               table.c.version == bindparam("v"))
                           .values(summary=bindparam("s"), summary_version=bindparam("v")), fresh)


def _to_cells(cents: dict) -> dict:
    return {column: {"amount": as_yuan(cents[column][0]), "tax": as_yuan(cents[column][1])} for column in COLUMNS}


def _add(into: dict, cells: dict) -> None:
    for column in COLUMNS:
        for figure in ("amount", "tax"):
            into[column][figure] += cells[column][figure]


def _empty_cell() -> dict:
    return {column: {"amount": ZERO, "tax": ZERO} for column in COLUMNS}


def _with_all(cells: dict) -> dict:
    """The cell plus its 合计 column (special + other)."""
    return {**cells, "all": {figure: cells["special"][figure] + cells["other"][figure] for figure in ("amount", "tax")}}


def year_summary(tax_ids: list[str], year: int) -> dict:
    """Everything the 销项汇总 page, its export and the CLI show for these companies and year."""
    months = year_months(year)
    monthly = _monthly(tax_ids, months)
    by_month = {month: {} for month in months}
    chart = {month: {"blue": ZERO, "red": ZERO} for month in months}
    types: dict = defaultdict(lambda: {"blue": 0, "red": 0, "voided": 0})
    for (_tax_id, month), summary in monthly.items():
        for rate, cents in summary["rates"].items():
            _add(by_month[month].setdefault(rate, _empty_cell()), _to_cells(cents))
        chart[month]["blue"] += as_yuan(summary["blue"])
        chart[month]["red"] += as_yuan(summary["red"])
        for type_name, (blue, red, voided) in summary["types"].items():
            for name, count in (("blue", blue), ("red", red), ("voided", voided)):
                types[type_name][name] += count
    month_totals, rate_totals, year_total = {}, {}, _empty_cell()
    for month, rates in by_month.items():
        by_month[month] = rates = dict(sorted(rates.items(), key=lambda item: rate_sort_key(item[0])))
        total = _empty_cell()
        for rate, cells in rates.items():
            _add(total, cells)
            _add(rate_totals.setdefault(rate, _empty_cell()), cells)
        _add(year_total, total)
        month_totals[month] = _with_all(total)
    rate_totals = dict(sorted(rate_totals.items(), key=lambda item: rate_sort_key(item[0])))
    return {
        "year": year, "tax_ids": tax_ids,
        "months": {m: {rate: _with_all(cells) for rate, cells in rates.items()} for m, rates in by_month.items()},
        "month_totals": month_totals,
        "rate_totals": {rate: _with_all(cells) for rate, cells in rate_totals.items()},
        "year_total": _with_all(year_total), "chart": chart, "types": dict(sorted(types.items())),
    }


def summary_json(summary: dict) -> dict:
    """{"YYYY-MM": {rate: {"special": {"amount", "tax"}, "other": {…}}}}, amounts as text to the cent."""
    return {month: {rate: {column: {figure: f"{cells[column][figure]:.2f}" for figure in ("amount", "tax")}
                           for column in COLUMNS} for rate, cells in rates.items()}
            for month, rates in summary["months"].items()}


CHART_WIDTH, CHART_HEIGHT, CHART_TOP, CHART_BOTTOM, CHART_LEFT = 760, 260, 16, 28, 72


def chart_bars(chart: dict) -> dict:
    """Bar geometry of the monthly 价税合计 chart, drawn as SVG on the server (nothing loaded from outside)."""
    peak = max([v for cells in chart.values() for v in cells.values()] + [Decimal(1)])
    plot = CHART_HEIGHT - CHART_TOP - CHART_BOTTOM
    slot = (CHART_WIDTH - CHART_LEFT) / len(chart)
    bars, labels = [], []
    for index, (month, cells) in enumerate(chart.items()):
        x = CHART_LEFT + index * slot
        labels.append({"x": round(x + slot / 2, 1), "text": f"{int(month[5:])}月"})
        for offset, colour in enumerate(("blue", "red")):
            height = float(cells[colour] / peak) * plot
            bars.append({"x": round(x + slot * 0.15 + offset * slot * 0.35, 1), "width": round(slot * 0.33, 1),
                         "y": round(CHART_TOP + plot - height, 1), "height": round(height, 1), "colour": colour,
                         "month": month, "value": cells[colour]})
    empty = not any(bar["value"] for bar in bars)  # a year without invoices: one 0 line, no made-up scale
    ticks = [{"y": round(CHART_TOP + plot - plot * share, 1), "value": (peak * Decimal(share)).quantize(Decimal(1))}
             for share in ((0,) if empty else (0, 0.5, 1))]
    return {"width": CHART_WIDTH, "height": CHART_HEIGHT, "left": CHART_LEFT, "base": CHART_TOP + plot,
            "bars": bars, "labels": labels, "ticks": ticks, "empty": empty}


def write_summary(summary: dict, target) -> None:
    """The summary as an xlsx: sheet 销项汇总 (month × rate, month and year totals, amounts as money
    cells) and 发票票种 counts (count cells); texts such as a file's 发票票种 stay text (webapp.xlsx_stream)."""
    from webapp.pool.export import money
    from webapp.xlsx_stream import Workbook

    with Workbook(target) as workbook:
        sheet = workbook.add_sheet("销项汇总", [12, 14] + [22] * 6)
        sheet.append(["开票月份", "税率/征收率", "开具增值税专用发票-金额", "开具增值税专用发票-税额",
                      "开具其他发票-金额", "开具其他发票-税额", "合计-金额", "合计-税额"])

        def row(month, rate, cells):
            sheet.append([month, rate] + [money(cells[column][figure]) for column in ("special", "other", "all")
                                          for figure in ("amount", "tax")], "tt" + "m" * 6)

        for month, rates in summary["months"].items():
            for rate, cells in rates.items():
                row(month, rate, cells)
            row(month, "月合计", summary["month_totals"][month])
        for rate, cells in summary["rate_totals"].items():
            row(f"{summary['year']}年", rate, cells)
        row(f"{summary['year']}年", "年度合计", summary["year_total"])
        types = workbook.add_sheet("发票票种", [34, 12, 12, 12])
        types.append(["发票票种", "蓝字发票", "红字发票", "已作废"])
        for type_name, counts in summary["types"].items():
            types.append([type_name, counts["blue"], counts["red"], counts["voided"]], "tccc")
