"""销项发票池导出: the invoices a finance user filtered in the pool, as the tax bureau exports them.

The workbook mirrors the Electronic Tax Bureau's 全量发票查询 export (docs/performance.md, export;
the layout is the one channels/etax_file.py reads): sheet `信息汇总表` first, one row per invoice
line with its 27 headers, then `发票基础信息`, one row per invoice with its 19 headers and a last
`合计行` totals row (金额 and 税额 summed, 价税合计 empty). Header on row 1, data from row 2; text-like
columns (序号, 发票代码, 发票号码, 开票日期, 数量, 单价, 税率, ...) are string cells, 金额/税额/价税合计 are
numbers, 开票日期 is `YYYY-MM-DD HH:MM:SS` text, 是否正数发票 is 是/否, a legacy invoice's 数电发票号码 is
`--` and a 数电 invoice's 发票代码/发票号码 are empty. So an exported workbook imports back into an
empty pool with the same figures. Our own columns follow on 发票基础信息: the three usage statuses as
users read them (webapp.pool.usage; a red invoice has none: `—`, as in the pool list), when they were last
updated, where the invoice came from and when it was synced.

Rows are streamed (webapp.xlsx_stream): memory holds one chunk of invoices and their lines, whatever
the export's size. Pass `write_invoices` a lazy iterable (a SQLAlchemy result with `yield_per`, a
generator), not a list, and a `lines_of` that fetches one chunk's lines.
"""
from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from operator import attrgetter, itemgetter
from typing import IO, Any

from webapp.money import CENT
from webapp.pool.usage import usage_labels
from webapp.statuses import Source
from webapp.xlsx_stream import ILLEGAL_XML, MAX_CELL_CHARS, Workbook

SHEET_NAME = "发票基础信息"
LINES_SHEET_NAME = "信息汇总表"
TOTALS_MARK = "合计行"

ETAX_HEADERS = (  # the e-tax export's 发票基础信息 headers, in its order (docs/etax-export.md, Columns)
    "序号", "发票代码", "发票号码", "数电发票号码", "销方识别号", "销方名称", "购方识别号", "购买方名称",
    "开票日期", "金额", "税额", "价税合计", "发票来源", "发票票种", "发票状态", "是否正数发票",
    "发票风险等级", "开票人", "备注",
)
EXTRA_HEADERS = ("增值税用途状态", "消费税用途状态", "入账状态", "用途状态更新时间", "数据来源", "同步时间")
INVOICE_HEADERS: tuple[str, ...] = ETAX_HEADERS + EXTRA_HEADERS
LINE_HEADERS = (  # the e-tax export's 信息汇总表 headers, in its order
    "序号", "发票代码", "发票号码", "数电发票号码", "销方识别号", "销方名称", "购方识别号", "购买方名称",
    "开票日期", "税收分类编码", "特定业务类型", "货物或应税劳务名称", "规格型号", "单位", "数量", "单价", "金额",
    "税率", "税额", "价税合计", "发票来源", "发票票种", "发票状态", "是否正数发票", "发票风险等级", "开票人", "备注",
)

NO_DIGITAL_NUMBER = "--"  # what the e-tax export writes as a legacy invoice's 数电发票号码
NO_USAGE = "—"  # a red invoice has no usage status (only blue invoices are queried), as the pool list shows
TIMESTAMP = "%Y-%m-%d %H:%M:%S"
SOURCE_LABELS = Source.labels()  # 数据来源 of every row: a dict lookup, cheaper than Source(code).label
MAX_DATA_ROWS = 1_048_576 - 2  # Excel's rows per sheet, minus the header and totals rows
CHUNK = 2000  # invoices whose lines are fetched together
_NUMBERS = ("金额", "税额", "价税合计")  # the only number cells; every other cell is text (or empty)
_INVOICE_KINDS = "".join("n" if h in _NUMBERS else "t" for h in INVOICE_HEADERS)
_LINE_KINDS = "".join("n" if h in _NUMBERS else "t" for h in LINE_HEADERS)

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_TRIGGER_CHARS = frozenset(FORMULA_TRIGGERS)
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")

_WIDTHS = {  # column widths in characters, for a readable sheet; the rest get 14
    "序号": 8, "发票代码": 14, "发票号码": 12, "数电发票号码": 24, "销方识别号": 22, "销方名称": 30,
    "购方识别号": 22, "购买方名称": 30, "开票日期": 20, "发票票种": 26, "备注": 40,
    "用途状态更新时间": 20, "数据来源": 16, "同步时间": 20, "增值税用途状态": 18, "入账状态": 26,
    "货物或应税劳务名称": 30, "税收分类编码": 20,
}


class ExportTooLarge(ValueError):
    """More invoices than one Excel sheet holds (1,048,575 data rows): narrow the filter."""


def export_filename(now: datetime) -> str:
    """The download's file name, e.g. `销项发票池导出_20241105_103000.xlsx`."""
    return f"销项发票池导出_{now:%Y%m%d_%H%M%S}.xlsx"


def safe_text(value: Any) -> str | None:
    """A value as a text cell that Excel and other readers will never evaluate.

    Formula injection: text that starts with `=`, `+`, `-`, `@`, a tab or a carriage return could
    be run as a formula (or DDE command) by a spreadsheet program when the cell is edited or the
    data is copied on. Such text is neutralised by prefixing a single quote `'` (so
    `=HYPERLINK("http://x","y")` is written as `'=HYPERLINK("http://x","y")`), except when it is a
    plain number such as `-12.50` or `+86`, which is harmless. The text is otherwise kept as is,
    apart from control characters XML cannot hold (removed) and Excel's 32,767-character cell
    limit (truncated). None stays None (an empty cell).
    """
    text = _neutral(value)
    if text is None:
        return None
    return ILLEGAL_XML.sub("", text)[:MAX_CELL_CHARS]


def _neutral(value: Any) -> str | None:
    """safe_text's formula rule alone: the row loops' version (the writer removes control characters)."""
    if value is None:
        return None
    text = value if value.__class__ is str else str(value)
    if text[:1] in _TRIGGER_CHARS and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def money(value: Any) -> Decimal | None:
    """An amount to the cent, written as a number cell (None stays an empty cell)."""
    if value.__class__ is Decimal:
        return value.quantize(CENT, ROUND_HALF_UP)
    if value is None:
        return None
    if not isinstance(value, Decimal):
        value = Decimal(str(value))
    return value.quantize(CENT, ROUND_HALF_UP)


def timestamp(value: Any) -> str | None:
    """A datetime as the e-tax export writes 开票日期: `YYYY-MM-DD HH:MM:SS` text."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.isoformat(" ", "seconds") if value.tzinfo is None else value.strftime(TIMESTAMP)
    if isinstance(value, date):
        return f"{value:%Y-%m-%d} 00:00:00"
    return safe_text(value)  # already text (a raw database row): keep it as stored


_INVOICE_FIELDS = ("code", "number", "digital_number", "tax_id", "seller_name", "buyer_tax_id", "buyer_name",
                   "issued_at", "amount", "tax", "total", "origin", "type_name", "status", "is_red", "risk_level",
                   "issuer", "remark", "vat_usage", "excise_usage", "entry_status", "usage_channel",
                   "usage_updated_at", "source", "synced_at")
_BY_ATTRIBUTE, _BY_KEY = attrgetter(*_INVOICE_FIELDS), itemgetter(*_INVOICE_FIELDS)
_LINE_FIELDS = attrgetter("tax_code", "special_type", "name", "spec", "unit", "quantity", "unit_price", "amount",
                          "tax_rate", "tax", "total")


def _key_of(row: Any) -> str:
    return row["key"] if isinstance(row, Mapping) else row.key


def invoice_row(seq: int, row: Any) -> tuple:
    """One invoice's cells, in INVOICE_HEADERS order."""
    (code, number, digital, tax_id, seller_name, buyer_tax_id, buyer_name, issued_at, amount, tax, total, origin,
     type_name, status, is_red, risk_level, issuer, remark, vat_usage, excise_usage, entry_status, usage_channel,
     usage_updated_at, source, synced_at) = (_BY_KEY if isinstance(row, Mapping) else _BY_ATTRIBUTE)(row)
    if is_red:
        usage = (NO_USAGE, NO_USAGE, NO_USAGE)
    else:
        labels = usage_labels(vat_usage, excise_usage, entry_status, usage_channel)
        usage = (labels["vat_usage"], labels["excise_usage"], labels["entry_status"])
    return (
        str(seq),
        _neutral(code or ""),  # 数电 invoices have none: empty, as the e-tax export writes it
        _neutral(number or ""),
        _neutral(digital) if digital not in (None, "", NO_DIGITAL_NUMBER) else NO_DIGITAL_NUMBER,
        _neutral(tax_id), _neutral(seller_name), _neutral(buyer_tax_id), _neutral(buyer_name),
        timestamp(issued_at), money(amount), money(tax), money(total),
        _neutral(origin), _neutral(type_name), _neutral(status), "否" if is_red else "是",
        _neutral(risk_level), _neutral(issuer), _neutral(remark),
        *usage,
        timestamp(usage_updated_at),
        _neutral(SOURCE_LABELS.get(source, source)),
        timestamp(synced_at),
    )


def line_rows(invoice: tuple, lines: Iterable, seq: int) -> list[tuple]:
    """An invoice's 信息汇总表 rows (LINE_HEADERS order), numbered from `seq`; `invoice` is its invoice_row.

    An invoice without lines still gets one row, as the e-tax export writes a blank-voided invoice
    (line columns empty, 价税合计 0), so that every invoice is found in both sheets.
    """
    head, tail = invoice[1:9], invoice[12:19]
    rows = []
    for n, line in enumerate(lines):
        tax_code, special, name, spec, unit, quantity, price, amount, rate, tax, total = _LINE_FIELDS(line)
        rows.append((str(seq + n), *head, _neutral(tax_code), _neutral(special) or "", _neutral(name),
                     _neutral(spec), _neutral(unit), _neutral(quantity), _neutral(price), money(amount),
                     _neutral(rate), money(tax), money(total), *tail))
    if not rows:
        rows.append((str(seq), *head, None, "", None, None, None, None, None, None, None, None, CENT * 0, *tail))
    return rows


def write_invoices(rows: Iterable, target: str | os.PathLike | IO[bytes],
                   lines_of: Callable[[list[str]], Mapping[str, list]] | None = None) -> int:
    """Write `rows` to `target` as the pool export and return how many invoices were written.

    `rows` are Invoice objects, SQLAlchemy Rows or mappings with the Invoice column names (key,
    code, number, digital_number, tax_id, seller_name, buyer_tax_id, buyer_name, issued_at, amount,
    tax, total, origin, type_name, status, is_red, risk_level, issuer, remark, vat_usage,
    excise_usage, entry_status, usage_channel, usage_updated_at, source, synced_at); they are read
    once, a chunk at a time. `lines_of(keys)` gives each key's lines in order (objects with the
    InvoiceLine column names); without it every invoice gets one empty line row. A path `target`
    is written to a temporary name and renamed when complete, so an error while reading rows leaves
    no file; a file object is written as rows come. Text cells are neutralised against formula
    injection (see `safe_text`). Raises ExportTooLarge past Excel's rows per sheet.
    """
    is_path = isinstance(target, (str, os.PathLike))
    partial = f"{os.fspath(target)}.part" if is_path else target
    workbook = Workbook(partial)
    try:
        count = _write_sheets(workbook, rows, lines_of or (lambda keys: {}))
        workbook.close()
    except BaseException:
        workbook.abandon()
        if is_path:
            with contextlib.suppress(OSError):
                os.remove(partial)  # a half-written zip is no workbook
        raise
    if is_path:
        os.replace(partial, target)
    return count


def _write_sheets(workbook: Workbook, rows: Iterable, lines_of) -> int:
    """Both sheets, chunk by chunk of invoices, then the totals row; returns the invoice count."""
    details = workbook.add_sheet(LINES_SHEET_NAME, [_WIDTHS.get(h, 14) for h in LINE_HEADERS], kinds=_LINE_KINDS)
    basics = workbook.add_sheet(SHEET_NAME, [_WIDTHS.get(h, 14) for h in INVOICE_HEADERS], kinds=_INVOICE_KINDS)
    details.append(LINE_HEADERS, general=True)
    basics.append(INVOICE_HEADERS, general=True)
    count, amount, tax, chunk = 0, Decimal(0), Decimal(0), []
    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK:
            count, amount, tax = _write_chunk(details, basics, chunk, lines_of, count, amount, tax)
            chunk = []
    count, amount, tax = _write_chunk(details, basics, chunk, lines_of, count, amount, tax)
    totals = [None] * len(INVOICE_HEADERS)
    totals[0], totals[9], totals[10] = TOTALS_MARK, amount, tax
    basics.append(totals)
    return count


def _write_chunk(details, basics, chunk: list, lines_of, count: int, amount: Decimal, tax: Decimal):
    """One chunk of invoices and their lines; returns the running (count, 金额 sum, 税额 sum)."""
    if not chunk:
        return count, amount, tax
    if count + len(chunk) > MAX_DATA_ROWS:
        raise ExportTooLarge(f"超过 Excel 单个工作表的行数上限（{MAX_DATA_ROWS} 张发票），请缩小筛选范围")
    lines = lines_of([_key_of(row) for row in chunk])
    for row in chunk:
        count += 1
        cells = invoice_row(count, row)
        basics.append(cells)
        amount += cells[9]
        tax += cells[10]
        for line in line_rows(cells, lines.get(_key_of(row), ()), details.count):
            details.append(line)
        if details.count > MAX_DATA_ROWS + 1:
            raise ExportTooLarge(f"超过 Excel 单个工作表的行数上限（{MAX_DATA_ROWS} 行明细），请缩小筛选范围")
    return count, amount, tax


def write_pool_export(query, target: str | os.PathLike | IO[bytes]) -> int:
    """Export the invoices an Invoice select (the pool's filter) finds, with their lines.

    Plain rows rather than ORM objects, read 2,000 at a time from one cursor, and each chunk's
    lines in one query: the database's part stays a fraction of the writing (docs/performance.md).
    """
    from webapp.extensions import db
    from webapp.models import Invoice
    from webapp.pool import lines_by_invoice

    rows = db.session.execute(query.with_only_columns(*Invoice.__table__.c).execution_options(yield_per=CHUNK))
    return write_invoices(rows, target, lines_of=lines_by_invoice)
