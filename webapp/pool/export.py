"""销项发票池导出: the invoices a finance user filtered in the pool, as the tax bureau exports them.

The workbook mirrors the Electronic Tax Bureau's 全量发票查询 export (docs/performance.md, export;
the layout is the one channels/etax/parser.py reads): sheet `信息汇总表` first, one row per invoice
line with its 27 headers, then `发票基础信息`, one row per invoice with its 19 headers and a last
`合计行` totals row (金额 and 税额 summed, 价税合计 empty). Header on row 1, data from row 2; text-like
columns (序号, 发票代码, 发票号码, 开票日期, 数量, 单价, 税率, ...) are string cells, 金额/税额/价税合计 are
numbers, 开票日期 is `YYYY-MM-DD HH:MM:SS` text, 是否正数发票 is 是/否, a legacy invoice's 数电发票号码 is
`--` and a 数电 invoice's 发票代码/发票号码 are empty. So an exported workbook imports back into an
empty pool with the same figures. Our own columns follow on 发票基础信息: the three usage statuses as
users read them (webapp.pool.usage; a red invoice, or a voided one with none, reads 不适用 as in the pool list), when
they were last updated, where the invoice came from and when it was synced.

Rows are streamed (webapp.xlsx_stream): memory holds one chunk of invoices and their lines, whatever
the export's size. Pass `write_invoices` a lazy iterable (a SQLAlchemy result with `yield_per`, a
generator), not a list, and a `lines_of` that fetches one chunk's lines. The page's export
(`stream_pool_export`) hands the browser each chunk's bytes as soon as they are compressed, so the
download starts at once and the browser shows it growing (docs/performance.md, Sent while it is
written); `export_size` counts the rows first, so that an export Excel cannot hold is refused before anything is sent.
"""
from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from itertools import chain, islice
from operator import attrgetter, itemgetter, methodcaller
from typing import IO, Any

from sqlalchemy import distinct, func, select, type_coerce
from sqlalchemy.types import NullType

from webapp.money import CENT
from webapp.pool.usage import NOT_APPLICABLE, usage_applies, usage_labels
from webapp.statuses import Source
from webapp.xlsx_stream import Workbook, cells_xml

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
TIMESTAMP = "%Y-%m-%d %H:%M:%S"
SOURCE_LABELS = Source.labels()  # 数据来源 of every row: a dict lookup, cheaper than Source(code).label
MAX_DATA_ROWS = 1_048_576 - 2  # Excel's rows per sheet, minus the header and totals rows
CHUNK = 2000  # invoices whose lines are fetched together


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
    """A datetime as the e-tax export writes 开票日期: `YYYY-MM-DD HH:MM:SS` text.

    Text is a timestamp as SQLite keeps it (`YYYY-MM-DD HH:MM:SS.ffffff`): its first 19 characters.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.isoformat(" ", "seconds") if value.tzinfo is None else value.strftime(TIMESTAMP)
    if isinstance(value, date):
        return f"{value:%Y-%m-%d} 00:00:00"
    return value[:19] if isinstance(value, str) else str(value)


# The columns an export reads, in this order: an invoice's, then a line's (with its invoice's key first)
INVOICE_FIELDS = ("key", "code", "number", "digital_number", "tax_id", "seller_name", "buyer_tax_id", "buyer_name",
                  "issued_at", "amount", "tax", "total", "origin", "type_name", "status", "is_red", "risk_level",
                  "issuer", "remark", "vat_usage", "excise_usage", "entry_status", "usage_channel",
                  "usage_updated_at", "source", "synced_at")
LINE_FIELDS = ("invoice_key", "tax_code", "special_type", "name", "spec", "unit", "quantity", "unit_price", "amount",
               "tax_rate", "tax", "total")
_BY_ATTRIBUTE, _BY_KEY = attrgetter(*INVOICE_FIELDS), itemgetter(*INVOICE_FIELDS)
_LINE_VALUES = attrgetter(*LINE_FIELDS[1:])
_INVOICE_KINDS = "tx" + "mmm" + "x" + "tttttt"  # 序号, 发票代码…开票日期, 金额 税额 价税合计, 发票来源…备注, ours
# 序号, 发票代码…开票日期, 税收分类编码…单价, 金额 税率 税额 价税合计, 发票来源…
_LINE_KINDS = "tx" + "ttttttt" + "mtmm" + "x"
_POSITIVE = {False: "是", True: "否"}  # 是否正数发票, by is_red


def _digital_numbers(values: Sequence) -> list[str]:
    """数电发票号码: a legacy invoice's (none) is `--`, the e-tax export's own marker, written as is."""
    return [v or NO_DIGITAL_NUMBER for v in values]


def _timestamps(values: Sequence) -> Sequence:
    """A block's timestamps as text (SQLite gives text, PostgreSQL datetimes)."""
    kinds = set(map(type, values))
    if kinds == {str}:
        return list(map(_FIRST_19, values))
    if kinds <= {str, type(None)}:  # SQLite, some never set (用途状态更新时间)
        return ["" if v is None else v[:19] for v in values]
    return [timestamp(v) for v in values]


_FIRST_19 = itemgetter(slice(19))


def _amounts(values: Sequence) -> list:
    """A block's amounts as numerals to the cent: SQLite's floats as `%.2f` (as SQLAlchemy reads them),
    decimals rounded half up; None stays None (an empty cell)."""
    kinds = set(map(type, values))
    if kinds <= {float, int}:
        return list(map("%.2f".__mod__, values))
    if kinds == {Decimal}:  # PostgreSQL
        return list(map(str, map(_TO_CENT, values)))
    return [None if (cents := money(v)) is None else str(cents) for v in values]


_TO_CENT = methodcaller("quantize", CENT, ROUND_HALF_UP)


def _usage_columns(vat: Sequence, excise: Sequence, entry: Sequence, channel: Sequence,
                   red: Sequence, status: Sequence) -> list[tuple]:
    """The three usage status columns as users read them (webapp.usage): 不适用 where none applies."""
    known: dict[tuple, tuple] = {}
    labels = []
    for codes in zip(vat, excise, entry, channel, red, status, strict=True):
        found = known.get(codes)
        if found is None:
            shown = usage_labels(*codes[:4])
            found = known[codes] = ((NOT_APPLICABLE,) * 3 if not usage_applies(codes[4], codes[5], codes[0])
                                    else (shown["vat_usage"], shown["excise_usage"], shown["entry_status"]))
        labels.append(found)
    return list(zip(*labels, strict=True)) if labels else [(), (), ()]


def write_invoices(rows: Iterable, target: str | os.PathLike | IO[bytes],
                   lines_of: Callable[[list[str]], Mapping[str, list]] | None = None) -> int:
    """Write `rows` to `target` as the pool export and return how many invoices were written.

    `rows` are Invoice objects, SQLAlchemy Rows or mappings with the INVOICE_FIELDS names; they are
    read once, a chunk at a time. `lines_of(keys)` gives each key's lines in order (objects with the
    InvoiceLine column names); without it every invoice gets one empty line row. A path `target`
    is written to a temporary name and renamed when complete, so an error while reading rows leaves
    no file; a file object is written as rows come. A text is always a text cell, never a formula
    (webapp.xlsx_stream); amounts are money cells. Raises ExportTooLarge past Excel's rows per sheet.
    """
    def lines(keys: list[str]) -> list[tuple]:
        found = lines_of(keys) if lines_of else {}
        return [(key, *_LINE_VALUES(line)) for key in dict.fromkeys(keys) for line in found.get(key, ())]

    values = ((_BY_KEY if isinstance(row, Mapping) else _BY_ATTRIBUTE)(row) for row in rows)
    return _write_file(iter(lambda: list(islice(values, CHUNK)), []), lines, target)


def _write_file(chunks: Iterable[Sequence], lines_of: Callable[[list[str]], Sequence], target) -> int:
    """Both sheets from chunks of invoice tuples (INVOICE_FIELDS order) and `lines_of(keys)`, which gives
    their line tuples (LINE_FIELDS order), each invoice's together and in order; see write_invoices."""
    is_path = isinstance(target, (str, os.PathLike))
    partial = f"{os.fspath(target)}.part" if is_path else target
    workbook = Workbook(partial)
    count = 0
    try:
        for count in _write_sheets(workbook, chunks, lines_of):  # noqa: B007 - the last is the total
            pass
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


def _write_sheets(workbook: Workbook, chunks: Iterable[Sequence], lines_of) -> Iterator[int]:
    """Both sheets, chunk by chunk of invoices, then the totals row; yields the invoices written so far
    after each chunk (a caller streaming the bytes sends them between chunks)."""
    details = workbook.add_sheet(LINES_SHEET_NAME, [_WIDTHS.get(h, 14) for h in LINE_HEADERS])
    basics = workbook.add_sheet(SHEET_NAME, [_WIDTHS.get(h, 14) for h in INVOICE_HEADERS])
    details.append(LINE_HEADERS)
    basics.append(INVOICE_HEADERS)
    amount, tax = Decimal(0), Decimal(0)
    for chunk in chunks:
        if basics.count - 1 + len(chunk) > MAX_DATA_ROWS:
            raise ExportTooLarge(f"超过 Excel 单个工作表的行数上限（{MAX_DATA_ROWS} 张发票），请缩小筛选范围")
        amounts, taxes = _write_chunk(details, basics, chunk, lines_of)
        amount += sum(map(Decimal, filter(None, amounts)))
        tax += sum(map(Decimal, filter(None, taxes)))
        yield basics.count - 1
    totals = [None] * len(INVOICE_HEADERS)
    totals[0], totals[9], totals[10] = TOTALS_MARK, amount, tax
    basics.append(totals, "t" * 9 + "mm")  # 金额 and 税额 as money


def _write_chunk(details, basics, chunk: Sequence, lines_of) -> tuple[list, list]:
    """One chunk of invoices and their lines, column by column; returns the chunk's 金额 and 税额 numerals.

    The cells an invoice's line rows repeat (发票代码…开票日期 and 发票来源…备注) are rendered once,
    for its own row and all of its lines.
    """
    (keys, code, number, digital, tax_id, seller, buyer_tax_id, buyer, issued, amount, tax, total, origin,
     type_name, status, is_red, risk_level, issuer, remark, vat, excise, entry, channel, usage_at, source,
     synced) = zip(*chunk, strict=True)
    red = list(map(bool, is_red))
    heads = cells_xml([code, number, _digital_numbers(digital), tax_id, seller,
                       buyer_tax_id, buyer, _timestamps(issued)], "tttttttt")
    tails = cells_xml([origin, type_name, status, list(map(_POSITIVE.__getitem__, red)),
                       risk_level, issuer, remark], "ttttttt")
    amounts, taxes = _amounts(amount), _amounts(tax)
    first = basics.count
    basics.write_rows([list(map(str, range(first, first + len(keys)))), heads, amounts, taxes, _amounts(total), tails,
                       *_usage_columns(vat, excise, entry, channel, red, status), _timestamps(usage_at),
                       list(map(SOURCE_LABELS.get, source, source)), _timestamps(synced)], _INVOICE_KINDS)
    _write_lines(details, list(keys), heads, tails, lines_of(list(keys)))
    return amounts, taxes


def _write_lines(details, keys: list[str], heads: list[bytes], tails: list[bytes], lines: Sequence) -> None:
    """The chunk's 信息汇总表 rows, in its invoices' order, numbered on from the sheet's last row.

    An invoice without lines still gets one row, as the e-tax export writes a blank-voided invoice
    (line columns empty, 价税合计 0), so that every invoice is found in both sheets. Keys are the
    pool's, unique: a key given twice gets its lines at its last place.
    """
    position = {key: n for n, key in enumerate(keys)}
    owners = list(map(position.__getitem__, map(itemgetter(0), lines)))  # each line's invoice, by its place
    if missing := sorted(set(range(len(keys))) - set(owners)):
        lines = [*lines, *((keys[n], *_NO_LINE) for n in missing)]
        owners += missing
    order = sorted(range(len(owners)), key=owners.__getitem__)  # stable: an invoice's lines stay in order
    owners = list(map(owners.__getitem__, order))
    if details.count - 1 + len(owners) > MAX_DATA_ROWS:
        raise ExportTooLarge(f"超过 Excel 单个工作表的行数上限（{MAX_DATA_ROWS} 行明细），请缩小筛选范围")
    (_key, tax_code, special, name, spec, unit, quantity, price, amount, rate, tax,
     total) = zip(*map(lines.__getitem__, order), strict=True)
    first = details.count
    details.write_rows([list(map(str, range(first, first + len(owners)))), list(map(heads.__getitem__, owners)),
                        tax_code, special, name, spec, unit, quantity,
                        price, _amounts(amount), rate, _amounts(tax), _amounts(total),
                        list(map(tails.__getitem__, owners))], _LINE_KINDS)


_NO_LINE = (None,) * 10 + (0,)  # a line row of an invoice without lines: all empty, 价税合计 0


def stream_pool_export(query) -> Iterator[bytes]:
    """The export of the invoices an Invoice select (the pool's filter) finds, with their lines, as
    bytes handed on after each chunk of invoices.

    The columns are read as the driver gives them (no Decimal or datetime built per value; the
    export formats them column by column), 2,000 invoices at a time from one cursor, and each
    chunk's lines in one query (docs/performance.md).

    The zip is written to a pipe, not a file (zipfile then writes each part's sizes after it), so the
    first bytes leave before the last invoice is read. A failure, or the browser going away,
    stops the writing and ends the stream short: the browser reports the download as failed, never
    as a complete file.
    """
    pipe = _Pipe()
    workbook = Workbook(pipe)
    try:
        for _step in chain(_write_sheets(workbook, _pool_chunks(query), _pool_lines), workbook.closing()):
            yield from pipe.parts()
    except BaseException:
        workbook.abandon()
        raise
    yield from pipe.parts()


PIECE = 64 * 1024  # bytes handed to the web server at a time


class _Pipe:
    """A write-only byte sink without seek or tell, emptied by `take` (written by the compression thread)."""

    def __init__(self):
        self._parts: deque[bytes] = deque()

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        """Nothing to flush: `take` hands the parts on."""

    def parts(self) -> Iterator[bytes]:
        """What was written since the last call, in pieces of about PIECE bytes: small writes joined
        (fewer hand-overs to the server), and however far the compression thread ran ahead (a loaded
        machine), never all of it at once."""
        piece: list[bytes] = []
        size = 0
        while self._parts:
            piece.append(self._parts.popleft())
            size += len(piece[-1])
            if size >= PIECE:
                yield b"".join(piece)
                piece, size = [], 0
        if piece:
            yield b"".join(piece)


def export_size(query) -> tuple[int, int]:
    """(invoices, 信息汇总表 rows) the export of an Invoice select would write: each line is a row, and an
    invoice without lines gets one row of its own (see _write_lines)."""
    from webapp.extensions import db
    from webapp.models import Invoice, InvoiceLine

    keys = query.with_only_columns(Invoice.key).order_by(None).subquery()
    invoices = db.session.scalar(select(func.count()).select_from(keys))
    lines, with_lines = db.session.execute(
        select(func.count(), func.count(distinct(InvoiceLine.invoice_key)))
        .where(InvoiceLine.invoice_key.in_(select(keys.c.key)))).one()
    return invoices, lines + invoices - with_lines


def too_large(invoices: int, line_rows: int) -> str | None:
    """Why an export of this size cannot be one workbook (Excel's rows per sheet), else None."""
    if max(invoices, line_rows) <= MAX_DATA_ROWS:
        return None
    return (f"导出行数超过 Excel 单表上限（{MAX_DATA_ROWS:,} 行）：当前筛选有 {invoices:,} 张发票、"
            f"{line_rows:,} 行明细，"
            "请缩小筛选范围（例如按月份或企业）后再导出")


def _pool_chunks(query) -> Iterator[Sequence]:
    """The selected invoices' INVOICE_FIELDS, CHUNK at a time, from one cursor (Core rows: no ORM loading)."""
    from webapp.extensions import db
    from webapp.models import Invoice

    columns = Invoice.__table__.c
    rows = db.session.connection().execute(query.with_only_columns(*_raw(columns[name] for name in INVOICE_FIELDS))
                                           .execution_options(yield_per=CHUNK))
    return rows.partitions(CHUNK)


def _pool_lines(keys: list[str]) -> list[tuple]:
    """These invoices' lines, each invoice's together and in order, as the driver gives them.

    Through the driver's own cursor (on the session's connection): for 2,000 keys, SQLAlchemy's
    compiling of the IN list and building of Rows cost half as much again as the query.
    """
    from webapp.extensions import db
    from webapp.transactions import placeholders

    connection = db.session.connection()
    cursor = connection.connection.cursor()
    try:
        cursor.execute(f"SELECT {', '.join(LINE_FIELDS)} FROM invoice_line WHERE invoice_key IN "
                       f"{placeholders(connection.dialect, len(keys))} ORDER BY invoice_key, line_no", keys)
        return cursor.fetchall()
    finally:
        cursor.close()


def _raw(columns: Iterable) -> list:
    """Columns read without SQLAlchemy's per-value conversion (NullType has none)."""
    return [type_coerce(column, NullType()).label(column.name) for column in columns]
