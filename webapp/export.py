"""销项发票池导出: the invoices a finance user filtered in the pool, written to an .xlsx workbook.

The sheet mirrors the Electronic Tax Bureau's 全量发票查询 export (shared/domain.md §1.2, §1.3):
sheet `发票基础信息`, its 19 headers in their order, header on row 1, data from row 2; text-like
columns (序号, 发票代码, 发票号码, 开票日期, ...) are string cells, 金额/税额/价税合计 are numbers,
开票日期 is `YYYY-MM-DD HH:MM:SS` text, 是否正数发票 is 是/否, a legacy invoice's 数电发票号码 is
`--` and a 数电 invoice's 发票代码/发票号码 are empty. Our own columns follow: the three usage
statuses as users read them (webapp.usage), when they were last updated, where the invoice came
from and when it was synced. Unlike the e-tax export there is no 合计行 totals row.

The workbook is written with openpyxl's write-only (streaming) mode: rows go to a temporary file as
they arrive, strings are written inline, so memory stays flat for hundreds of thousands of rows.
Pass `write_invoices` a lazy iterable (a SQLAlchemy result, `yield_per`, a generator), not a list.
"""
from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import IO, Any

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.utils import get_column_letter

from .batches import SOURCES as SOURCE_LABELS  # Invoice.source labels
from .usage import usage_labels

SHEET_NAME = "发票基础信息"

ETAX_HEADERS = (  # the e-tax export's 发票基础信息 headers, in its order (domain.md §1.2)
    "序号", "发票代码", "发票号码", "数电发票号码", "销方识别号", "销方名称", "购方识别号", "购买方名称",
    "开票日期", "金额", "税额", "价税合计", "发票来源", "发票票种", "发票状态", "是否正数发票",
    "发票风险等级", "开票人", "备注",
)
EXTRA_HEADERS = ("增值税用途状态", "消费税用途状态", "入账状态", "用途状态更新时间", "数据来源", "同步时间")
INVOICE_HEADERS: tuple[str, ...] = ETAX_HEADERS + EXTRA_HEADERS

NO_DIGITAL_NUMBER = "--"  # what the e-tax export writes as a legacy invoice's 数电发票号码
TIMESTAMP = "%Y-%m-%d %H:%M:%S"
CENT = Decimal("0.01")
MAX_CELL_CHARS = 32767  # Excel's limit for one cell's text
MAX_DATA_ROWS = 1_048_576 - 1  # Excel's rows per sheet, minus the header row

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")

_WIDTHS = {  # column widths in characters, for a readable sheet; the rest get 14
    "序号": 8, "发票代码": 14, "发票号码": 12, "数电发票号码": 24, "销方识别号": 22, "销方名称": 30,
    "购方识别号": 22, "购买方名称": 30, "开票日期": 20, "发票票种": 26, "备注": 40,
    "用途状态更新时间": 20, "数据来源": 16, "同步时间": 20, "增值税用途状态": 18, "入账状态": 26,
}


class ExportTooLarge(ValueError):
    """More invoices than one Excel sheet holds (1,048,575 data rows): narrow the filter."""


def export_filename(now: datetime) -> str:
    """The download's file name, e.g. `销项发票池导出_20241105_103000.xlsx`."""
    return f"销项发票池导出_{now:%Y%m%d_%H%M%S}.xlsx"


def safe_text(value: Any) -> str | None:
    """A value as a text cell that Excel and other readers will never evaluate.

    Formula injection: text that starts with `=`, `+`, `-`, `@`, a tab or a carriage return could
    be run as a formula (or DDE command) by a spreadsheet program, and openpyxl itself turns any
    string starting with `=` into a formula cell. Such text is neutralised by prefixing a single
    quote `'` (so `=HYPERLINK("http://x","y")` is written as `'=HYPERLINK("http://x","y")`),
    except when it is a plain number such as `-12.50` or `+86`, which is harmless. The text is
    otherwise kept as is, apart from control characters XML cannot hold (removed) and Excel's
    32,767-character cell limit (truncated). None stays None (an empty cell).
    """
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    text = ILLEGAL_CHARACTERS_RE.sub("", text)
    if text.startswith(FORMULA_TRIGGERS) and not _PLAIN_NUMBER.fullmatch(text):
        text = "'" + text
    return text[:MAX_CELL_CHARS]


def money(value: Any) -> Decimal | None:
    """An amount to the cent, written as a number cell (None stays an empty cell)."""
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
        return value.strftime(TIMESTAMP)
    if isinstance(value, date):
        return f"{value:%Y-%m-%d} 00:00:00"
    return safe_text(value)  # already text (a raw database row): keep it as stored


def _getter(row: Any):
    if isinstance(row, Mapping):
        return row.__getitem__
    return lambda name: getattr(row, name)


def invoice_row(seq: int, row: Any) -> tuple:
    """One invoice's cells, in INVOICE_HEADERS order."""
    get = _getter(row)
    labels = usage_labels(get("vat_usage"), get("excise_usage"), get("entry_status"), get("usage_channel"))
    source = get("source")
    return (
        str(seq),
        safe_text(get("code") or ""),  # 数电 invoices have none: empty, as the e-tax export writes it
        safe_text(get("number") or ""),
        safe_text(get("digital_number")) if get("digital_number") not in (None, "", NO_DIGITAL_NUMBER)
        else NO_DIGITAL_NUMBER,
        safe_text(get("tax_id")),
        safe_text(get("seller_name")),
        safe_text(get("buyer_tax_id")),
        safe_text(get("buyer_name")),
        timestamp(get("issued_at")),
        money(get("amount")),
        money(get("tax")),
        money(get("total")),
        safe_text(get("origin")),
        safe_text(get("type_name")),
        safe_text(get("status")),
        "否" if get("is_red") else "是",
        safe_text(get("risk_level")),
        safe_text(get("issuer")),
        safe_text(get("remark")),
        labels["vat_usage"],
        labels["excise_usage"],
        labels["entry_status"],
        timestamp(get("usage_updated_at")),
        safe_text(SOURCE_LABELS.get(source, source)),
        timestamp(get("synced_at")),
    )


def write_invoices(rows: Iterable, target: str | os.PathLike | IO[bytes]) -> int:
    """Write `rows` to `target` as the pool export and return how many invoices were written.

    `rows` are Invoice objects, SQLAlchemy Rows or mappings with the Invoice column names (key,
    code, number, digital_number, tax_id, seller_name, buyer_tax_id, buyer_name, issued_at, amount,
    tax, total, origin, type_name, status, is_red, risk_level, issuer, remark, vat_usage,
    excise_usage, entry_status, usage_channel, usage_updated_at, source, synced_at); they are read
    once, one at a time. `target` is a path or a writable binary file object; it is written only
    after the last row was read, so an error while reading rows leaves it untouched (and a failed
    save leaves no half-written file at a path). Text cells are
    neutralised against formula injection (see `safe_text`). Raises ExportTooLarge past Excel's
    1,048,575 data rows.
    """
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(SHEET_NAME)
    for index, header in enumerate(INVOICE_HEADERS, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = _WIDTHS.get(header, 14)
    sheet.freeze_panes = "A2"
    count = 0
    try:
        sheet.append(INVOICE_HEADERS)
        for row in rows:
            if count == MAX_DATA_ROWS:
                raise ExportTooLarge(f"超过 Excel 单个工作表的行数上限（{MAX_DATA_ROWS} 张发票），请缩小筛选范围")
            count += 1
            sheet.append(invoice_row(count, row))
    except BaseException:
        _discard(sheet)
        raise
    try:
        workbook.save(target)
    except BaseException:
        _discard(sheet)
        if isinstance(target, (str, os.PathLike)):
            with contextlib.suppress(OSError):
                os.remove(target)  # a half-written zip is no workbook
        raise
    return count


def _discard(sheet) -> None:
    """Remove the temporary file of a sheet that will never be saved (openpyxl keeps it till exit)."""
    writer = getattr(sheet, "_writer", None)
    if writer is None:
        return
    rows = getattr(sheet, "_rows", None)
    if rows is not None:
        with contextlib.suppress(Exception):
            rows.close()  # ends openpyxl's row generator while its file is still open
    with contextlib.suppress(Exception):
        writer.close()
    with contextlib.suppress(Exception):
        writer.cleanup()
