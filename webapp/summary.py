"""销项汇总: a year of output invoices summed by tax rate per month, the way the VAT return reads them.

The columns follow the return's 附列资料（一）: 开具增值税专用发票 and 开具其他发票, each with 金额
and 税额; the 专用发票 kinds are those of SPECIAL_CODES. Lines are summed, not
headers, because one invoice may carry several rates. Red invoices carry negative amounts and so
are subtracted by summing; voided invoices (已作废) are left out.

Amounts are summed in whole cents on SQLite (which keeps NUMERIC as floating point) so the
figures are exact to the cent; PostgreSQL's numeric sums are exact by themselves.
"""
from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from sqlalchemy import Integer, case, cast, func, select

from .extensions import db
from .models import Invoice, InvoiceLine

SPECIAL_CODES = ("01", "08", "81", "85")  # 增值税专用发票, 电子专用, 数电专票, 数电纸质专票
RATE_ORDER = ("13%", "9%", "6%", "5%", "3%", "1%", "0%", "免税", "不征税")
NO_RATE = "未注明"
VOIDED = "已作废"
COLUMNS = ("special", "other")
ZERO = Decimal("0.00")
CENT = Decimal("0.01")


def year_months(year: int) -> list[str]:
    return [f"{year}-{month:02d}" for month in range(1, 13)]


def _sum_cents(dialect: str, column):
    """SUM of a money column, exact: whole cents on SQLite, numeric on PostgreSQL."""
    if dialect == "sqlite":
        return func.sum(cast(func.round(column * 100), Integer))
    return func.sum(column)


def _decimal(dialect: str, value) -> Decimal:
    if value is None:
        return ZERO
    if dialect == "sqlite":
        return (Decimal(int(value)) / 100).quantize(CENT)
    return Decimal(value).quantize(CENT)


def rate_sort_key(rate: str):
    """The return's order (13% first, 不征税 last); other rates (old 16%, 1.5%…) by size after 0%."""
    if rate in RATE_ORDER:
        return (RATE_ORDER.index(rate), 0)
    try:
        return (RATE_ORDER.index("0%"), -float(rate.rstrip("%")))
    except ValueError:
        return (len(RATE_ORDER), 0)


def _empty_cell() -> dict:
    return {column: {"amount": ZERO, "tax": ZERO} for column in COLUMNS}


def _rate_lines(tax_ids: list[str], months: list[str], dialect: str) -> dict:
    """{month: {rate: {"special"|"other": {"amount", "tax"}}}} from the lines of non-voided invoices."""
    special = case((Invoice.type_code.in_(SPECIAL_CODES), 1), else_=0)
    rows = db.session.execute(
        select(Invoice.month, special, InvoiceLine.tax_rate, _sum_cents(dialect, InvoiceLine.amount),
               _sum_cents(dialect, InvoiceLine.tax))
        .join(InvoiceLine, InvoiceLine.invoice_key == Invoice.key)
        .where(Invoice.tax_id.in_(tax_ids), Invoice.month >= months[0], Invoice.month <= months[-1],
               Invoice.status != VOIDED)
        .group_by(Invoice.month, special, InvoiceLine.tax_rate))
    by_month: dict = {month: {} for month in months}
    for month, is_special, rate, amount, tax in rows:
        cells = by_month[month].setdefault(rate or NO_RATE, _empty_cell())
        cell = cells["special" if is_special else "other"]
        cell["amount"] += _decimal(dialect, amount)
        cell["tax"] += _decimal(dialect, tax)
    return {month: dict(sorted(rates.items(), key=lambda item: rate_sort_key(item[0])))
            for month, rates in by_month.items()}


def _headers(tax_ids: list[str], months: list[str], dialect: str) -> tuple[dict, dict]:
    """Monthly 价税合计 of blue and red invoices (the chart), and counts by 发票票种."""
    voided = case((Invoice.status == VOIDED, 1), else_=0)
    gross = func.coalesce(Invoice.total, Invoice.amount + Invoice.tax)
    rows = db.session.execute(
        select(Invoice.month, Invoice.type_name, Invoice.is_red, voided, func.count(), _sum_cents(dialect, gross))
        .where(Invoice.tax_id.in_(tax_ids), Invoice.month >= months[0], Invoice.month <= months[-1])
        .group_by(Invoice.month, Invoice.type_name, Invoice.is_red, voided))
    chart = {month: {"blue": ZERO, "red": ZERO} for month in months}
    types: dict = defaultdict(lambda: {"blue": 0, "red": 0, "voided": 0})
    for month, type_name, is_red, is_voided, count, total in rows:
        if is_voided:
            types[type_name]["voided"] += count
            continue
        types[type_name]["red" if is_red else "blue"] += count
        chart[month]["red" if is_red else "blue"] += abs(_decimal(dialect, total))
    return chart, dict(sorted(types.items()))


def _add(into: dict, cells: dict) -> None:
    for column in COLUMNS:
        for figure in ("amount", "tax"):
            into[column][figure] += cells[column][figure]


def _with_all(cells: dict) -> dict:
    """The cell plus its 合计 column (special + other)."""
    return {**cells, "all": {figure: cells["special"][figure] + cells["other"][figure] for figure in ("amount", "tax")}}


def year_summary(tax_ids: list[str], year: int) -> dict:
    """Everything the 销项汇总 page, its export and the CLI show for these companies and year."""
    dialect = db.session.get_bind().dialect.name
    months = year_months(year)
    by_month = _rate_lines(tax_ids, months, dialect)
    chart, types = _headers(tax_ids, months, dialect)
    month_totals, rate_totals, year_total = {}, {}, _empty_cell()
    for month, rates in by_month.items():
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
        "year_total": _with_all(year_total), "chart": chart, "types": types,
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
    ticks = [{"y": round(CHART_TOP + plot - plot * share, 1), "value": (peak * Decimal(share)).quantize(Decimal(1))}
             for share in (0, 0.5, 1)]
    return {"width": CHART_WIDTH, "height": CHART_HEIGHT, "left": CHART_LEFT, "base": CHART_TOP + plot,
            "bars": bars, "labels": labels, "ticks": ticks}


def write_summary(summary: dict, target) -> None:
    """The summary as an xlsx: sheet 销项汇总 (month × rate, month and year totals) and 发票票种 counts."""
    from openpyxl import Workbook

    from .export import money

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "销项汇总"
    sheet.append(["开票月份", "税率/征收率", "开具增值税专用发票-金额", "开具增值税专用发票-税额",
                  "开具其他发票-金额", "开具其他发票-税额", "合计-金额", "合计-税额"])

    def row(month, rate, cells):
        sheet.append([month, rate] + [money(cells[column][figure]) for column in ("special", "other", "all")
                                      for figure in ("amount", "tax")])

    for month, rates in summary["months"].items():
        for rate, cells in rates.items():
            row(month, rate, cells)
        row(month, "月合计", summary["month_totals"][month])
    for rate, cells in summary["rate_totals"].items():
        row(f"{summary['year']}年", rate, cells)
    row(f"{summary['year']}年", "年度合计", summary["year_total"])
    for column in "CDEFGH":
        sheet.column_dimensions[column].width = 22
    types = workbook.create_sheet("发票票种")
    types.append(["发票票种", "蓝字发票", "红字发票", "已作废"])
    for type_name, counts in summary["types"].items():
        types.append([type_name, counts["blue"], counts["red"], counts["voided"]])
    types.column_dimensions["A"].width = 34
    workbook.save(target)
