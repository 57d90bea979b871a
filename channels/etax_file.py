"""The Electronic Tax Bureau's 全量发票查询 export: check an upload, then parse it into invoice records.

The format is described in docs/etax-export.md. Invoice headers (amounts, parties,
status, remark) come from the sheet 发票基础信息, one row per invoice plus a totals row; lines come
from 信息汇总表, one row per line, matched to their invoice by key. Every line is kept, including
`(详见销货清单)` summary lines: the job layer filters them with the admin setting errorGoodsNames.
Rows are parsed once, straight into the pool's staged rows (channels.records), which the job layer
keeps on disk and writes as they are.
"""
from __future__ import annotations

import html
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from operator import itemgetter
from pathlib import Path
from typing import BinaryIO

from python_calamine import CalamineError, CalamineWorkbook

from channels.invoice_types import canonical_type_name, type_code
from channels.months import month_of
from channels.records import (
    HEADER_COLUMNS,
    LINE_COLUMNS,
    TIMESTAMP,
    SourceRejected,
    StagedInvoice,
    canonical_tax_id,
)

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_FILES = 10  # files in one import; the web server's request limit allows for them
# A 10 MB export inflates to roughly 60-100 MB of XML; 400 MB leaves room and still stops a bomb.
MAX_UNCOMPRESSED_BYTES = 400 * 1024 * 1024
# Sheet XML deflates about 10:1; beyond 200:1 an entry is built to explode, not to hold data.
MAX_ENTRY_RATIO = 200
RATIO_CHECK_FLOOR = 1024 * 1024  # tiny entries may compress absurdly well; they are harmless
MAX_ENTRIES = 1000
MAX_WORKBOOK_XML_BYTES = 2 * 1024 * 1024
MAX_LISTED_ERRORS = 100  # bad rows listed for the user; beyond this only the count is kept
# calamine holds a sheet as a dense grid from A1 to its farthest cell: a stray cell far away costs
# (rows x columns) cells of memory whatever the data. The export has 27 columns and a 10 MB file
# holds well under 200,000 rows, so cells beyond these are refused before calamine opens the file.
MAX_SHEET_ROWS = 200_000
MAX_SHEET_COLUMN = "AZ"
MONEY_LIMIT = 10**15  # the pool keeps 18 digits with 2 decimals; larger is not an amount
MAX_NUMBER_TEXT = 40  # 数量/单价 are kept as text in 40 characters (see _decimal)
# 数量 and 单价 texts repeat ("1", "2.00000000"): each is read once (Decimals are immutable)
_DECIMAL_TEXTS: dict[str, Decimal] = {}
# and the text the pool keeps for each such text: read once as well
_NUMBER_TEXTS: dict[str, str] = {}
_FAST_MONEY = 1e11  # below this, a float times 100 is within 0.002 of the exact cents: safe to round
_INFLATE_CHUNK = 256 * 1024

BASIC_SHEET = "发票基础信息"
DETAIL_SHEET = "信息汇总表"
REQUIRED_SHEETS = (BASIC_SHEET, DETAIL_SHEET)
TOTALS_MARK = "合计行"

# canonical column -> the header spellings seen in exports (docs/etax-export.md)
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "数电发票号码": ("数电发票号码", "全电发票号码", "数电票号码"),
}

# (column, required) in the order the parsing loops unpack them
BASIC_COLUMNS: tuple[tuple[str, bool], ...] = (
    ("序号", False), ("发票代码", True), ("发票号码", True), ("数电发票号码", True),
    ("销方识别号", True), ("销方名称", False), ("购方识别号", False), ("购买方名称", False),
    ("开票日期", True), ("金额", True), ("税额", True), ("价税合计", False), ("发票来源", False),
    ("发票票种", True), ("发票状态", True), ("是否正数发票", True), ("发票风险等级", False),
    ("开票人", False), ("备注", False),
)
DETAIL_COLUMNS: tuple[tuple[str, bool], ...] = (
    ("发票代码", True), ("发票号码", True), ("数电发票号码", True), ("销方识别号", False),
    ("货物或应税劳务名称", True), ("税收分类编码", False), ("特定业务类型", False),
    ("规格型号", False), ("单位", False), ("数量", False), ("单价", False), ("金额", True),
    ("税率", True), ("税额", True), ("价税合计", False),
)

_NULLS = frozenset(("", "--"))
NO_GOODS_NAME = "为空：明细行有金额却没有货物名称（可能是没有计算结果的公式，或单元格被清空），请在 Excel 中填好或粘贴为数值后重新导出"
# the rates the export writes, so the line loop skips _rate() for them
_KNOWN_RATES = {r: r for r in ("13%", "9%", "6%", "5%", "3%", "1%", "0%", "免税", "不征税",
                               "16%", "10%", "17%", "11%", "1.5%", "0.5%")}
_CENT = Decimal("0.01")
_ZERO_MONEY = ("0.00", "-0.00")  # every zero amount to the cent, as text
# where the staged header row (channels.records.HEADER_COLUMNS) holds what the parse looks at again
_KEY, _MONTH, _AMOUNT, _TAX, _TYPE_NAME, _TYPE_CODE, _STATUS, _IS_RED, _ISSUED = (
    HEADER_COLUMNS.index(c) for c in ("key", "month", "amount", "tax", "type_name", "type_code", "status", "is_red",
                                      "issued_at"))
FIRST_VAT_DAY = "1994-01-01"  # 增值税专用发票 exist since the 1994 reform: an earlier 开票日期 is a typo
_EXACT_FLOAT_LIMIT = 2**53  # beyond this a number-typed ID has lost digits
_EXCEL_EPOCH = datetime(1899, 12, 30)

_COLON = r"\s*[:：]\s*"
_RE_RED_DIGITAL = re.compile(r"被红冲蓝字数电(?:发)?票号码" + _COLON + r"([0-9]{20})(?![0-9])")
_RE_RED_NUMBER = re.compile(r"被红冲蓝字发票号码" + _COLON + r"([0-9]+)")
_RE_RED_CODE = re.compile(r"被红冲蓝字发票代码" + _COLON + r"([0-9]+)")
_RE_RED_LEGACY = re.compile(
    r"对应正数发票代码" + _COLON + r"([0-9]+)\s*号码" + _COLON + r"([0-9]+)"
)
_RE_SHEET = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?sheet\b[^>]*?\bname\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
_RE_OFFICE_DOC = re.compile(
    rb"<(?:[\w.-]+:)?Relationship\b(?=[^>]*officeDocument\")[^>]*\bTarget\s*=\s*\"([^\"]+)\""
)


@dataclass
class ParsedWorkbook:
    """What one export holds, as the pool's staged rows grouped by invoicing month, so the job layer
    fills one subtask per month and keeps and writes its rows as they are (no second conversion).

    Months ascend; within a month invoices keep the sheet's order. `kinds` are the canonical
    发票票种 found, by type code (unknown kinds last). `line_count` counts every line attached,
    `(详见销货清单)` lines included, since filtering them is the job layer's decision.
    `warnings` say what was imported as written yet looks odd (a blue invoice with a negative amount).
    """

    staged_by_month: dict[str, list[StagedInvoice]]
    kinds: list[str] = field(default_factory=list)
    invoice_count: int = 0
    line_count: int = 0
    warnings: list[str] = field(default_factory=list)  # kept, but worth the user's look


class _BadCell(Exception):
    """A cell that cannot be read; the parsing loop adds the sheet and row for the user."""

    def __init__(self, column: str, value: object, why: str = "无法识别") -> None:
        super().__init__(column)
        self.column, self.value, self.why = column, value, why


@dataclass(frozen=True, slots=True)
class BadRow:
    """One unreadable place in the file, as the user fixes it: sheet, row, column, value and why."""

    sheet: str
    row: int
    column: str
    value: str
    why: str

    def message(self) -> str:
        """One line of Chinese naming the place and what is wrong with it."""
        shown = self.value if len(self.value) <= 40 else self.value[:40] + "…"
        return f"工作表“{self.sheet}”第 {self.row} 行“{self.column}”{self.why}：{shown}"

    def as_dict(self) -> dict:
        """Plain values, to keep the list with the batch (JSON) and to write the 错误清单."""
        return {"sheet": self.sheet, "row": self.row, "column": self.column, "value": self.value, "why": self.why}


class RowsRejected(SourceRejected):
    """A file refused for unreadable rows: `rows` names every one (up to MAX_LISTED_ERRORS)
    and `total` counts them all, so the user can fix the whole file in one pass."""

    def __init__(self, rows: list[BadRow], total: int) -> None:
        first = rows[0].message()
        if total == 1:
            text = f"{first}，文件未导入任何数据，请修正后重新上传"
        else:
            text = (f"文件中有 {total} 处无法读取，未导入任何数据。第一处：{first}。"
                    "请下载“错误清单”查看全部并逐行修正后重新导入")
        super().__init__(text)
        self.rows, self.total = rows, total


class _Errors:
    """Collects bad rows while parsing goes on, so one refusal lists them all."""

    def __init__(self) -> None:
        self.rows: list[BadRow] = []
        self.total = 0
        self.broken_keys: set[str] = set()  # invoices whose own row is bad: their lines are not named again

    def add(self, sheet: str, row: int, bad: _BadCell) -> None:
        """Note one bad cell; only the first MAX_LISTED_ERRORS are kept in full."""
        self.total += 1
        if len(self.rows) < MAX_LISTED_ERRORS:
            self.rows.append(BadRow(sheet, row, bad.column, _shown(bad.value), bad.why))

    def raise_if_any(self) -> None:
        """Refuse the file, naming every bad row found."""
        if self.total:
            raise RowsRejected(self.rows, self.total)


def _shown(value: object) -> str:
    """A cell value as the user typed it, for messages: floats without a needless '.0'."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return str(value)


# ---------------------------------------------------------------------------------------------
# Upload checks: cheap, synchronous, before a batch exists
# ---------------------------------------------------------------------------------------------


def check_upload(path: str | Path, tax_id: str | None = None) -> None:
    """Refuse a file that cannot be an export (of the company `tax_id`) before any batch is created for it.

    Size, zip structure, zip-bomb limits (declared and actually inflated), CRCs, stray cells far
    outside the data and the two required sheet names are checked; with `tax_id`, the seller column
    of 发票基础信息 too (check_seller). Nothing else is parsed: the parse (jobs.staging) reads the file once.
    """
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise SourceRejected(
            f"文件大小 {size / 1024 / 1024:.1f} MB，超过 10 MB 的上传上限，请缩小开票日期范围分次导出"
        )
    require_sheets(check_container(path, verify_crc=True))
    if tax_id is not None:
        check_seller(path, tax_id)


_SELLER_SCAN = BASIC_COLUMNS[:5]  # 序号, the three number columns (which rows are invoices) and 销方识别号


def check_seller(path: Path, tax_id: str) -> None:
    """Refuse another company's export while it is received, as the parse would (the same message),
    so the dialog answers instead of a batch failing later (README, Command line: `import-file` refuses it too).

    Only 发票基础信息 is read, and of it only the key and seller columns are looked at: the big
    信息汇总表 is left to the parse job. A seller cell the parse cannot read is left to it too (it
    lists such rows in the 错误清单).
    """
    expected = canonical_tax_id(tax_id)
    workbook = _open_workbook(path)
    try:
        sheet, rows = _sheet_rows(workbook, {n.strip(): n for n in workbook.sheet_names}[BASIC_SHEET])
        get, width = _map_columns(sheet, rows, _SELLER_SCAN)
        for row_number, row in rows:
            seq, code, number, digital, seller = _cells(get, row, width)
            if seq == TOTALS_MARK or (code in _NULLS and number in _NULLS and digital in _NULLS):
                continue
            try:
                seller = canonical_tax_id(_id(seller, "销方识别号")) or ""
            except _BadCell:
                continue
            _check_seller(seller, expected, sheet, row_number)
    finally:
        workbook.close()


MAX_FILE_NAME = 255  # the batch keeps the name in 255 characters; a longer one is refused, not cut


def check_file_name(name: str) -> None:
    """Refuse a file name the batch cannot keep: a name that was not valid UTF-8 arrives with
    replacement characters or surrogates, NUL and other control characters cannot be stored by
    PostgreSQL, and more than 255 characters do not fit."""
    if any(ch == "\ufffd" or "\ud800" <= ch <= "\udfff" or ord(ch) < 32 for ch in name):
        raise SourceRejected("文件名含有无法识别的字符（编码错误或控制字符），请将文件重命名为普通的中文、字母或数字后重新选择")
    if len(name) > MAX_FILE_NAME:
        raise SourceRejected(f"文件名过长（{len(name)} 个字符），请重命名为 {MAX_FILE_NAME} 个字符以内后重新选择")


def check_container(path: Path, *, verify_crc: bool) -> list[str]:
    """The zip checks both the upload and the parse rely on; returns the sheet names.

    Every entry is inflated once, counting the bytes really produced (a zip may understate its
    sizes), and the two data sheets are scanned for cells that would make the reader allocate
    a grid far beyond the data.
    """
    if path.stat().st_size == 0:
        raise SourceRejected("文件为空，请重新从电子税局“全量发票查询”导出后上传")
    with path.open("rb") as handle:
        head = handle.read(512)
    if not head.startswith(b"PK"):
        raise SourceRejected(_not_xlsx_message(head))
    try:
        with zipfile.ZipFile(path) as archive, path.open("rb") as raw:
            check_zip_limits(archive)
            if any(info.flag_bits & 0x1 for info in archive.infolist()):
                raise SourceRejected("文件已加密（带密码），请在 Excel 中取消密码后另存为 .xlsx 再上传")
            names = read_sheet_names(archive)
            _check_entries(archive, raw, _data_sheet_parts(archive), verify_crc)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, struct.error,
            ValueError) as exc:
        raise SourceRejected("文件已损坏，无法作为 xlsx 工作簿打开，请重新导出后上传") from exc
    return names


def _not_xlsx_message(head: bytes) -> str:
    """Say what the file looks like, since a renamed .xls or .csv is the usual mistake."""
    base = "文件不是有效的 xlsx 工作簿，请上传从电子税局“全量发票查询”导出的 .xlsx 文件"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return base + "（该文件是旧版 .xls 或带密码的工作簿，请在 Excel 中另存为无密码的 .xlsx）"
    if any(byte < 0x20 and byte not in b"\t\r\n" for byte in head):
        return base  # binary, but not a zip
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith((b"<", b"{")):
        return base + "（该文件是网页或文本文件）"
    return base + "（该文件是文本或 CSV 文件，请上传原始的 .xlsx 文件）"


def check_zip_limits(archive: zipfile.ZipFile) -> None:
    """Refuse a zip bomb from its declared sizes, before anything is inflated."""
    entries = archive.infolist()
    if len(entries) > MAX_ENTRIES:
        raise SourceRejected(f"文件结构异常：压缩包内有 {len(entries)} 个条目，不是电子税局导出的工作簿")
    total = 0
    for entry in entries:
        total += entry.file_size
        ratio_exceeded = entry.file_size > MAX_ENTRY_RATIO * max(entry.compress_size, 1)
        if entry.file_size > RATIO_CHECK_FLOOR and ratio_exceeded:
            raise SourceRejected(
                f"文件结构异常：压缩包内 {entry.filename} 的压缩比超过 {MAX_ENTRY_RATIO}:1，疑似压缩炸弹，已拒绝"
            )
    if total > MAX_UNCOMPRESSED_BYTES:
        raise SourceRejected(
            f"文件结构异常：解压后共 {total / 1024 / 1024:.0f} MB，超过 "
            f"{MAX_UNCOMPRESSED_BYTES // 1024 // 1024} MB 上限，疑似压缩炸弹，已拒绝"
        )


def read_sheet_names(archive: zipfile.ZipFile) -> list[str]:
    """Sheet names from the workbook part, read with the zip alone (no XML parser, no parsing)."""
    part = _workbook_part_name(archive)
    if part is None:
        raise SourceRejected("文件不是有效的 xlsx 工作簿：缺少工作簿目录（xl/workbook.xml）")
    if archive.getinfo(part).file_size > MAX_WORKBOOK_XML_BYTES:
        raise SourceRejected("文件结构异常：工作簿目录过大，不是电子税局导出的工作簿")
    xml = archive.read(part)
    return [html.unescape((m.group(1) or m.group(2) or b"").decode("utf-8", "replace"))
            for m in _RE_SHEET.finditer(xml)]


def _workbook_part_name(archive: zipfile.ZipFile) -> str | None:
    """Where the workbook part lives: xl/workbook.xml, or wherever _rels/.rels points."""
    names = set(archive.namelist())
    if "xl/workbook.xml" in names:
        return "xl/workbook.xml"
    if "_rels/.rels" not in names or archive.getinfo("_rels/.rels").file_size > MAX_WORKBOOK_XML_BYTES:
        return None
    match = _RE_OFFICE_DOC.search(archive.read("_rels/.rels"))
    target = match.group(1).decode("utf-8", "replace").lstrip("/") if match else None
    return target if target in names else None


_RE_SHEET_RID = re.compile(
    rb"<(?:[A-Za-z_][\w.-]*:)?sheet\b[^>]*?\bname\s*=\s*\"([^\"]*)\"[^>]*?\b(?:[\w.-]+:)?id\s*=\s*\"([^\"]+)\""
)
_RE_REL = re.compile(rb"<(?:[\w.-]+:)?Relationship\b[^>]*?\bId\s*=\s*\"([^\"]+)\"[^>]*?\bTarget\s*=\s*\"([^\"]+)\"")
_RE_REL_REVERSED = re.compile(rb"<(?:[\w.-]+:)?Relationship\b[^>]*?\bTarget\s*=\s*\"([^\"]+)\"[^>]*?\bId\s*=\s*\"([^\"]+)\"")
# a cell beyond column AZ, or any cell or row numbered 100,000 or more (checked exactly in Python)
_RE_FAR_CELL = re.compile(rb"""r=["']((?:[A-Z]{3}|[B-Z][A-Z])[0-9]+|[A-Z]{1,2}[0-9]{6,})["']""")
# where a far cell may start: the same test without its digits and quote, which the scan over every
# cell reference of a sheet runs in less than half the time; each hit is then matched in full
_RE_FAR_CELL_START = re.compile(rb"""r=["'](?:[A-Z]{3}|[B-Z][A-Z]|[A-Z]{1,2}[0-9]{6})""")
_RE_FAR_ROW = re.compile(rb"""row [^>]*?r=["']([0-9]{6,})["']""")


def _data_sheet_parts(archive: zipfile.ZipFile) -> dict[str, str]:
    """Zip part name -> sheet name for the two data sheets (the ones the parser reads)."""
    part = _workbook_part_name(archive)
    rels_name = part.rsplit("/", 1)[0] + "/_rels/" + part.rsplit("/", 1)[-1] + ".rels" if part else ""
    names = set(archive.namelist())
    if not part or rels_name not in names or archive.getinfo(rels_name).file_size > MAX_WORKBOOK_XML_BYTES:
        return {}
    rels = archive.read(rels_name)
    targets = {rid: target for rid, target in _RE_REL.findall(rels)}
    targets.update({rid: target for target, rid in _RE_REL_REVERSED.findall(rels)})
    folder = part.rsplit("/", 1)[0]
    parts = {}
    for name, rid in _RE_SHEET_RID.findall(archive.read(part)):
        sheet = html.unescape(name.decode("utf-8", "replace")).strip()
        target = targets.get(rid, b"").decode("utf-8", "replace")
        if sheet in REQUIRED_SHEETS and target:
            parts[target.lstrip("/") if target.startswith("/") else f"{folder}/{target}"] = sheet
    return parts


def _check_entries(archive: zipfile.ZipFile, raw: BinaryIO, sheet_parts: dict[str, str], verify_crc: bool) -> None:
    """Inflate every entry, stopping past the declared size or the total limit (a bomb that
    understates its sizes), and scan the data sheets for cells far outside the data."""
    budget = MAX_UNCOMPRESSED_BYTES
    for info in archive.infolist():
        produced, crc, tail = 0, 0, b""
        sheet = sheet_parts.get(info.filename)
        for chunk in _read_ahead(_inflate(raw, info)):
            produced += len(chunk)
            if produced > info.file_size or produced > budget:
                raise SourceRejected(
                    f"文件结构异常：压缩包内 {info.filename} 解压后的实际大小超过其声明大小或总上限，疑似压缩炸弹，已拒绝"
                )
            if verify_crc:
                crc = zlib.crc32(chunk, crc)
            if sheet:
                _check_far_cells(sheet, tail + chunk)
                tail = chunk[-32:]
        if produced != info.file_size or (verify_crc and crc != info.CRC):
            raise SourceRejected(f"文件已损坏：压缩包内 {info.filename} 校验失败，请重新导出后上传")
        budget -= produced


def _read_ahead(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The chunks, the next one inflated in a thread while the caller checks this one: zlib
    releases the GIL, so inflating overlaps the CRC and the far-cell scan."""
    with ThreadPoolExecutor(max_workers=1) as inflater:
        pending = inflater.submit(next, chunks, None)
        while (chunk := pending.result()) is not None:
            pending = inflater.submit(next, chunks, None)
            yield chunk


def _inflate(raw: BinaryIO, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """An entry's bytes as really stored, in bounded chunks, whatever its headers claim."""
    raw.seek(info.header_offset)
    local = raw.read(30)
    if local[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile("bad local header")
    name_length, extra_length = struct.unpack("<HH", local[26:30])
    raw.seek(info.header_offset + 30 + name_length + extra_length)
    if info.compress_type == zipfile.ZIP_STORED:
        left = info.compress_size
        while left > 0:
            chunk = raw.read(min(_INFLATE_CHUNK, left))
            if not chunk:
                raise EOFError
            left -= len(chunk)
            yield chunk
        return
    if info.compress_type != zipfile.ZIP_DEFLATED:
        raise SourceRejected("文件使用了不支持的压缩方式，不是电子税局导出的工作簿，请上传原始导出文件")
    inflater = zlib.decompressobj(-15)
    while not inflater.eof:
        data = inflater.unconsumed_tail or raw.read(_INFLATE_CHUNK)
        if not data:
            raise EOFError
        chunk = inflater.decompress(data, _INFLATE_CHUNK * 4)
        if chunk:
            yield chunk


def _check_far_cells(sheet: str, xml: bytes) -> None:
    """Refuse a cell (or a row with cells) beyond column AZ or row MAX_SHEET_ROWS: the reader
    would hold the whole grid up to it in memory, gigabytes for one stray cell."""
    for start in _RE_FAR_CELL_START.finditer(xml):
        match = _RE_FAR_CELL.match(xml, start.start())
        if match is None:
            continue
        ref = match.group(1).decode()
        letters = ref.rstrip("0123456789")
        too_wide = len(letters) > len(MAX_SHEET_COLUMN) or (len(letters) == 2 and letters > MAX_SHEET_COLUMN)
        if too_wide or int(ref[len(letters):]) > MAX_SHEET_ROWS:
            raise SourceRejected(
                f"工作表“{sheet}”的单元格 {ref} 远在数据区域之外（导出文件只用到 A–AA 列），"
                "请删除该单元格（或多余的行、列）后重新上传，或直接上传电子税局的原始导出文件"
            )
    for match in _RE_FAR_ROW.finditer(xml):
        tag_end = xml.find(b">", match.end())
        if int(match.group(1)) > MAX_SHEET_ROWS and tag_end > 0 and xml[tag_end - 1:tag_end] != b"/":
            raise SourceRejected(
                f"工作表“{sheet}”第 {int(match.group(1))} 行远在数据区域之外，"
                "请删除多余的行后重新上传，或直接上传电子税局的原始导出文件"
            )


def require_sheets(sheet_names: list[str]) -> None:
    """Name the missing sheet: the usual cause is exporting from another page than 全量发票查询."""
    present = {name.strip() for name in sheet_names}
    missing = [name for name in REQUIRED_SHEETS if name not in present]
    if missing:
        listed = "、".join(f"“{name}”" for name in missing)
        raise SourceRejected(
            f"文件缺少工作表 {listed}，请上传电子税局“全量发票查询”导出的原始文件（不要删改工作表）"
        )


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


FieldLimits = dict[str, dict[str, int]]  # {"invoice"|"line": {record attribute: max characters}}


def parse_workbook(path: str | Path, expected_tax_id: str, limits: FieldLimits | None = None,
                   today: date | None = None) -> ParsedWorkbook:
    """Read both sheets into invoices with their lines, refusing anything that is not the
    selected company's own export: a wrong file must fail loudly, never import half.

    Unreadable rows do not stop the reading: every one is collected (RowsRejected lists them),
    so the user fixes the file once. `limits` are the pool's column sizes: a longer value is
    such a row too, named here rather than failing the database write later. `today` (the
    caller's clock) lets the parse warn of a 开票日期 after it.
    """
    expected = canonical_tax_id(str(expected_tax_id or ""))
    errors = _Errors()
    workbook = _open_workbook(Path(path))
    try:
        require_sheets(workbook.sheet_names)
        by_strip = {name.strip(): name for name in workbook.sheet_names}
        with ThreadPoolExecutor(max_workers=1) as reader:
            # calamine releases the GIL while it reads a sheet: the big 信息汇总表 is read meanwhile
            details = reader.submit(_sheet_rows_of, Path(path), by_strip[DETAIL_SHEET])
            invoices, rows_by_key = _read_invoices(_sheet_rows(workbook, by_strip[BASIC_SHEET]), expected, errors)
            line_rows: dict[str, int] = {}
            line_count = _read_lines(details.result(), invoices, expected, errors, line_rows)
    finally:
        workbook.close()
    if not invoices and not errors.total:
        raise SourceRejected("文件中没有发票：工作表“发票基础信息”没有数据行")
    _require_lines(invoices, rows_by_key, line_rows, errors)
    if limits:
        _check_lengths(invoices, rows_by_key, line_rows, limits, errors)
    errors.raise_if_any()
    return _group(invoices, line_count, today)


def _open_workbook(path: Path) -> CalamineWorkbook:
    """Open with calamine, turning its errors into a user message.

    Only the declared zip sizes are checked here, to keep the parse as fast as the reading:
    the thorough checks (inflated sizes, stray far cells) ran on upload (`check_upload`, the
    one way into a batch), and the parse job runs under a hard memory limit besides.
    """
    with path.open("rb") as handle:
        head = handle.read(512)
    if not head.startswith(b"PK"):
        raise SourceRejected(_not_xlsx_message(head) if head else "文件为空，请重新从电子税局“全量发票查询”导出后上传")
    try:
        with zipfile.ZipFile(path) as archive:
            check_zip_limits(archive)
        return CalamineWorkbook.from_path(str(path))
    except (zipfile.BadZipFile, CalamineError, OSError, ValueError) as exc:
        raise SourceRejected("文件已损坏，无法作为 xlsx 工作簿读取，请重新从电子税局导出后上传") from exc


def _sheet_rows_of(path: Path, name: str) -> tuple[str, Iterator[tuple[int, list]]]:
    """A sheet's rows through a workbook handle of its own, so two sheets can be read at once."""
    try:
        workbook = CalamineWorkbook.from_path(str(path))
    except (CalamineError, OSError, ValueError) as exc:
        raise SourceRejected("文件已损坏，无法作为 xlsx 工作簿读取，请重新从电子税局导出后上传") from exc
    try:
        return _sheet_rows(workbook, name)
    finally:
        workbook.close()


def _sheet_rows(workbook: CalamineWorkbook, name: str) -> tuple[str, Iterator[tuple[int, list]]]:
    """A sheet's rows numbered as Excel numbers them (calamine keeps leading empty rows)."""
    try:
        sheet = workbook.get_sheet_by_name(name)
        return name, enumerate(sheet.iter_rows(), start=1)
    except CalamineError as exc:
        raise SourceRejected(f"工作表“{name}”无法读取，请重新从电子税局导出后上传") from exc


def _map_columns(sheet: str, rows: Iterator[tuple[int, list]],
                 columns: tuple[tuple[str, bool], ...]) -> tuple[itemgetter, int]:
    """Find the header row and build one itemgetter for the wanted columns, matched by name.

    A missing optional column maps to index -1, which the loops fill with '' by appending one
    cell to each row; that keeps the hot loops free of per-cell branches.
    """
    for row_number, row in rows:  # noqa: B007  (named in the error below)
        if any(cell != "" for cell in row):
            break
    else:
        raise SourceRejected(f"工作表“{sheet}”是空的，没有表头")
    positions: dict[str, int] = {}
    for index, cell in enumerate(row):
        positions.setdefault(str(cell).strip(), index)
    indexes, missing = [], []
    for name, required in columns:
        index = next((positions[a] for a in COLUMN_ALIASES.get(name, (name,)) if a in positions), -1)
        if index < 0 and required:
            missing.append(name)
        indexes.append(index)
    if missing:
        listed = "、".join(f"“{name}”" for name in missing)
        raise SourceRejected(f"工作表“{sheet}”第 {row_number} 行表头缺少列 {listed}，请上传未经删改的导出文件")
    return itemgetter(*indexes), len(row)


def _cells(get, row: list, width: int) -> tuple:
    """The wanted columns of a row; a row shorter than the header (trailing empties) is padded."""
    row.append("")
    try:
        return get(row)
    except IndexError:
        return get(_pad(row, width))


def _read_invoices(sheet_rows: tuple[str, Iterator[tuple[int, list]]], expected: str,
                   errors: _Errors) -> tuple[dict[str, StagedInvoice], dict[str, int]]:
    """Read 发票基础信息: one invoice per row, skipping the 合计行 totals row and blank rows; each
    is its staged header row with an empty list for the lines 信息汇总表 adds."""
    sheet, rows = sheet_rows
    get, width = _map_columns(sheet, rows, BASIC_COLUMNS)
    invoices: dict[str, StagedInvoice] = {}
    rows_by_key: dict[str, int] = {}
    kinds: dict[str, tuple[str, str | None]] = {}
    for row_number, row in rows:
        cells = _cells(get, row, width)
        seq, code, number, digital = cells[0], cells[1], cells[2], cells[3]
        if seq == TOTALS_MARK or (code in _NULLS and number in _NULLS and digital in _NULLS):
            continue
        try:
            header = _header_from_cells(cells, kinds)
        except _BadCell as bad:
            errors.add(sheet, row_number, bad)
            errors.broken_keys.add(_raw_key(code, number, digital))
            continue
        key = header[_KEY]
        _check_seller(header[1], expected, sheet, row_number)
        if key in rows_by_key:
            errors.add(sheet, row_number, _BadCell(
                "发票号码", key, f"重复：发票 {key} 已在第 {rows_by_key[key]} 行出现"))
            continue
        invoices[key] = (header, [])
        rows_by_key[key] = row_number
    return invoices, rows_by_key


def _header_from_cells(cells: tuple, kinds: dict[str, tuple[str, str | None]]) -> tuple:
    """One 发票基础信息 row as the pool's staged header row (channels.records.HEADER_COLUMNS);
    cells come in BASIC_COLUMNS order. Cells are read in the order of the columns the user sees,
    so a row with several bad cells is named by its first."""
    (_, code, number, digital, seller, seller_name, buyer, buyer_name, issued, amount, tax, total,
     origin, kind, status, positive, risk, issuer, remark) = cells
    code, number, digital = _id(code, "发票代码"), _id(number, "发票号码"), _id(digital, "数电发票号码")
    key = digital or (f"{code}-{number}" if code and number else None)
    if key is None:
        raise _BadCell("发票号码", "", "缺少发票号码：既无数电发票号码，也无发票代码和发票号码")
    type_name, code_of_type = kinds.get(kind) or kinds.setdefault(kind, _kind(kind))
    is_red = _is_red(positive)
    remark = _text(remark)
    seller = canonical_tax_id(_id(seller, "销方识别号")) or ""
    buyer = canonical_tax_id(_id(buyer, "购方识别号"))
    issued_at = _issued_at(issued)
    return (key, seller, _text(seller_name), code, number, digital, buyer, _text(buyer_name),
            issued_at.strftime(TIMESTAMP), month_of(issued_at), _money_text(amount, "金额"), _money_text(tax, "税额"),
            _money_or_none_text(total, "价税合计"), _text(origin), type_name, code_of_type, _text(status) or "正常",
            is_red, _text(risk), _text(issuer), remark, blue_key_from_remark(remark) if is_red and remark else None)


def _read_lines(sheet_rows: tuple[str, Iterator[tuple[int, list]]], invoices: dict[str, StagedInvoice],
                expected: str, errors: _Errors, line_rows: dict[str, int]) -> int:
    """Read 信息汇总表 and add each line's staged row to its invoice by key; returns the line count.

    Lines of one invoice are contiguous, so the key is only rebuilt when the raw key cells
    change. A negative line on a blue invoice right after a line of the same invoice is a
    折扣行 (docs/etax-export.md). A row with no goods, amount, rate and tax is the bureau's
    row for a blank-voided paper invoice: the invoice has no line. `line_rows` receives each
    invoice's first row here, so later checks can name the row of any of its lines.
    """
    sheet, rows = sheet_rows
    get, width = _map_columns(sheet, rows, DETAIL_COLUMNS)
    prev_code = prev_number = prev_digital = None
    invoice: StagedInvoice | None = None
    lines: list[tuple] = []
    blue = False
    count = 0
    for row_number, row in rows:
        cells = _cells(get, row, width)
        code, number, digital, seller = cells[0], cells[1], cells[2], cells[3]
        same_invoice = code == prev_code and number == prev_number and digital == prev_digital
        if not same_invoice:
            if code in _NULLS and number in _NULLS and digital in _NULLS:
                prev_code = prev_number = prev_digital = None
                continue
            prev_code, prev_number, prev_digital = code, number, digital
            invoice = _invoice_of_line(invoices, code, number, digital, sheet, row_number, errors)
            if invoice is None:
                continue
            header, lines = invoice
            blue = not header[_IS_RED]
            line_rows.setdefault(header[_KEY], row_number)
        elif invoice is None:  # more rows of a line whose invoice is missing: each is named
            if _raw_key(code, number, digital) in errors.broken_keys:
                continue
            errors.add(sheet, row_number, _BadCell("发票号码", _shown(digital) or f"{_shown(code)}-{_shown(number)}",
                                                   f"所属发票在“{BASIC_SHEET}”中不存在，文件可能被删改"))
            continue
        if seller != expected and seller != "":
            _check_seller(_safe_id(seller), expected, sheet, row_number)
        try:
            line = _line_from_cells(cells, len(lines) + 1, same_invoice and blue)
        except (_BadCell, InvalidOperation, ValueError, TypeError, OverflowError) as exc:
            if not _is_empty_detail(cells):
                errors.add(sheet, row_number, _diagnose_line(cells, exc))
            continue
        lines.append(line)
        count += 1
    return count


def _raw_key(code: object, number: object, digital: object) -> str:
    """An invoice's key from its raw cells, for matching only (never fails)."""
    return _safe_key(digital) or f"{_safe_key(code)}-{_safe_key(number)}"


def _safe_key(value: object) -> str:
    """One key cell as text for matching; nothing for the export's empty markers."""
    try:
        return _id(value, "") or ""
    except _BadCell:
        return _shown(value)


def _is_empty_detail(cells: tuple) -> bool:
    """The detail row of a blank-voided paper invoice (空白作废): no goods, amount, rate or tax."""
    return all(cells[i] in _NULLS or cells[i] is None for i in (4, 11, 12, 13))


def _line_from_cells(cells: tuple, line_no: int, may_discount: bool) -> tuple:
    """One 信息汇总表 row as the pool's staged line row (channels.records.LINE_COLUMNS); cells come
    in DETAIL_COLUMNS order, read in the order the user sees them. `may_discount`: the row follows
    a line of the same blue invoice, so a negative amount makes it that line's 折扣行."""
    (_, _, _, _, name, tax_code, special, spec, unit, quantity, price, amount, rate, tax,
     total) = cells
    if name in _NULLS or name is None:  # a line with figures and no goods: a formula never calculated, or cleared
        raise _BadCell("货物或应税劳务名称", "", NO_GOODS_NAME)
    quantity = None if quantity in _NULLS else _number_text(quantity, "数量")
    price = None if price in _NULLS else _number_text(price, "单价")
    amount = _money_text(amount, "金额")
    return (
        line_no,
        name if name.__class__ is str else _text(name) or "",
        (None if tax_code in _NULLS else tax_code) if tax_code.__class__ is str else _loose_id(tax_code),
        None if special in _NULLS else special if special.__class__ is str else _text(special),
        None if spec in _NULLS else spec if spec.__class__ is str else _text(spec),
        None if unit in _NULLS else unit if unit.__class__ is str else _text(unit),
        quantity, price, amount,
        _KNOWN_RATES.get(rate) or _rate(rate),
        _money_text(tax, "税额"),
        _money_or_none_text(total, "价税合计"),
        may_discount and _negative(amount),
    )


def _diagnose_line(cells: tuple, exc: Exception) -> _BadCell:
    """Find which cell of a failed line is bad, so the message names the column (slow path)."""
    if isinstance(exc, _BadCell):
        return exc
    checks = (("数量", 9, _decimal), ("单价", 10, _decimal), ("金额", 11, _money),
              ("税额", 13, _money), ("价税合计", 14, _money_or_none))
    for column, index, convert in checks:
        value = cells[index]
        if value in _NULLS and column in ("数量", "单价"):
            continue
        try:
            convert(value, column)
        except _BadCell as bad:
            return bad
        except (InvalidOperation, ValueError, TypeError, OverflowError):
            return _BadCell(column, value)
    try:
        _rate(cells[12])
    except _BadCell as bad:
        return bad
    return _BadCell("货物或应税劳务名称", cells[4])


def _invoice_of_line(invoices: dict[str, StagedInvoice], code: object, number: object, digital: object,
                     sheet: str, row_number: int, errors: _Errors) -> StagedInvoice | None:
    """The 发票基础信息 invoice a line belongs to; a line without one means a damaged file (noted)."""
    try:
        code, number, digital = _id(code, "发票代码"), _id(number, "发票号码"), _id(digital, "数电发票号码")
    except _BadCell as bad:
        errors.add(sheet, row_number, bad)
        return None
    key = digital or (f"{code}-{number}" if code and number else None)
    invoice = invoices.get(key) if key else None
    if invoice is None and _raw_key(code, number, digital) not in errors.broken_keys:
        errors.add(sheet, row_number, _BadCell(
            "发票号码", key or "（无号码）", f"所属发票在“{BASIC_SHEET}”中不存在，文件可能被删改"))
    return invoice


def _require_lines(invoices: dict[str, StagedInvoice], rows_by_key: dict[str, int],
                   line_rows: dict[str, int], errors: _Errors) -> None:
    """Every invoice has its rows in 信息汇总表 (a blank-voided one an empty row, or none at all)."""
    for key, (header, lines) in invoices.items():
        if lines or key in line_rows or _is_blank_voided(header):
            continue
        errors.add(BASIC_SHEET, rows_by_key[key], _BadCell(
            "发票号码", key, f"对应的发票在“{DETAIL_SHEET}”中没有明细行，文件可能被删改"))


def _is_blank_voided(header: tuple) -> bool:
    """A paper invoice voided before anything was written on it: voided, zero amounts."""
    return header[_STATUS] == "已作废" and header[_AMOUNT] in _ZERO_MONEY and header[_TAX] in _ZERO_MONEY


def _negative(amount: str) -> bool:
    """Whether an amount's text (to the cent) is below zero."""
    return amount[0] == "-" and amount != "-0.00"


# pool column -> the column the user sees it in, to name a value too long for the pool
_INVOICE_COLUMNS = {
    "key": "发票号码", "tax_id": "销方识别号", "seller_name": "销方名称", "code": "发票代码",
    "number": "发票号码", "digital_number": "数电发票号码", "buyer_tax_id": "购方识别号",
    "buyer_name": "购买方名称", "origin": "发票来源", "type_name": "发票票种", "status": "发票状态",
    "risk_level": "发票风险等级", "issuer": "开票人", "remark": "备注", "red_of": "备注",
}
_LINE_COLUMNS = {
    "name": "货物或应税劳务名称", "tax_code": "税收分类编码", "special_type": "特定业务类型", "spec": "规格型号",
    "unit": "单位", "quantity": "数量", "unit_price": "单价", "tax_rate": "税率",
}

_DECIMAL_COLUMNS = ("quantity", "unit_price")


def _check_lengths(invoices: dict[str, StagedInvoice], rows_by_key: dict[str, int], line_rows: dict[str, int],
                   limits: FieldLimits, errors: _Errors) -> None:
    """Name every value longer than the pool keeps (SQLite would store it, PostgreSQL refuse it).

    One C-level pass per field finds the longest value; rows are looked up only for a field
    that overflows, so a normal file pays a few milliseconds.
    """
    headers = [header for header, _ in invoices.values()]
    lines = [line for _, invoice_lines in invoices.values() for line in invoice_lines]
    for column, limit in limits.get("invoice", {}).items():
        index = HEADER_COLUMNS.index(column) if column in _INVOICE_COLUMNS else None
        if index is not None and _longest(headers, index) > limit:
            for header in headers:
                value = header[index]
                if value and len(value) > limit:
                    errors.add(BASIC_SHEET, rows_by_key[header[_KEY]], _too_long(_INVOICE_COLUMNS[column], value, limit))
    for column, limit in limits.get("line", {}).items():
        if column in _DECIMAL_COLUMNS and limit >= MAX_NUMBER_TEXT:
            continue  # _decimal keeps these short enough already
        index = LINE_COLUMNS.index(column) if column in _LINE_COLUMNS else None
        if index is not None and _longest(lines, index) > limit:
            for header, invoice_lines in invoices.values():
                for line in invoice_lines:
                    value = line[index]
                    if value and len(value) > limit:
                        row = line_rows.get(header[_KEY], 0) + line[0] - 1
                        errors.add(DETAIL_SHEET, row, _too_long(_LINE_COLUMNS[column], value, limit))


def _longest(rows: list[tuple], index: int) -> int:
    """The longest text in one text column (str or None) of many staged rows."""
    return max(map(len, filter(None, map(itemgetter(index), rows))), default=0)  # all C-level


def _too_long(column: str, value: str, limit: int) -> _BadCell:
    """The error for a value the pool cannot keep whole."""
    return _BadCell(column, value, f"过长：{len(value)} 个字符，最多 {limit} 个")


def _group(invoices: dict[str, StagedInvoice], line_count: int, today: date | None = None) -> ParsedWorkbook:
    """Group invoices by month (months ascending, sheet order within a month), list kinds, and
    warn about what is imported as written (the bureau's data) yet looks wrong: blue invoices with
    a negative amount, a 开票日期 after today or before VAT invoices existed (docs/etax-export.md, Values)."""
    by_month: dict[str, list[StagedInvoice]] = {}
    kinds: dict[str, str | None] = {}
    negative_blue, future, ancient = [], [], []
    tomorrow = (today + timedelta(days=1)).isoformat() if today else "9999-12-31"
    for invoice in invoices.values():
        header = invoice[0]
        by_month.setdefault(header[_MONTH], []).append(invoice)
        kinds[header[_TYPE_NAME]] = header[_TYPE_CODE]
        if not header[_IS_RED] and _negative(header[_AMOUNT]):
            negative_blue.append(header[_KEY])
        issued = str(header[_ISSUED])[:10]
        if issued >= tomorrow:
            future.append(header[_KEY])
        elif issued < FIRST_VAT_DAY:
            ancient.append(header[_KEY])
    ordered = sorted(kinds, key=lambda name: (kinds[name] is None, kinds[name] or "", name))
    warnings = [f"{what}，已按原样导入，请核对：{_some(keys)}" for what, keys in (
        ("蓝字发票（是否正数发票为“是”）金额为负数", negative_blue),
        (f"开票日期晚于今天（{today}）", future),
        (f"开票日期早于 {FIRST_VAT_DAY}（增值税发票启用之前）", ancient)) if keys]
    return ParsedWorkbook(
        staged_by_month={month: by_month[month] for month in sorted(by_month)},
        kinds=ordered, invoice_count=len(invoices), line_count=line_count, warnings=warnings,
    )


def _some(keys: list[str]) -> str:
    """Up to ten invoice keys, and how many there are in all beyond them."""
    return "、".join(keys[:10]) + (f" 等 {len(keys)} 张" if len(keys) > 10 else "")


# ---------------------------------------------------------------------------------------------
# Cell conversions
# ---------------------------------------------------------------------------------------------


def _pad(row: list, width: int) -> list:
    """Extend a short row (a writer that trimmed trailing empty cells) to the header's width."""
    row.pop()
    row.extend([""] * (width - len(row)))
    row.append("")
    return row


def _text(value: object) -> str | None:
    """Free text as written; the export's '' and '--' mean 'nothing'."""
    if value.__class__ is str:
        return None if value in _NULLS else value
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _id(value: object, column: str) -> str | None:
    """An identifier kept as text; a number-typed cell is accepted only while it is exact."""
    if value.__class__ is str:
        value = value.strip()
        return None if value in _NULLS else value
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if float(value).is_integer() and abs(value) < _EXACT_FLOAT_LIMIT:
            return str(int(value))
        raise _BadCell(column, value, "被保存为数字，位数已丢失，请使用未经 Excel 另存的原始导出文件")
    raise _BadCell(column, value)


def _safe_id(value: object) -> str:
    """A seller tax ID (canonical) for comparison only; an unreadable one simply will not match."""
    try:
        return canonical_tax_id(_id(value, "销方识别号")) or ""
    except _BadCell:
        return str(value)


def _loose_id(value: object) -> str | None:
    """A code such as 税收分类编码 typed as a number: keep its digits, without '.0'."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _check_seller(seller: str | None, expected: str, sheet: str, row_number: int) -> None:
    """Every row must be the selected company's own output invoice: one company per upload (both tax
    IDs canonical: channels.records.canonical_tax_id)."""
    if seller != expected:
        raise SourceRejected(
            f"文件中的销方税号 {seller or '（空）'} 与所选企业 {expected} 不一致"
            f"（工作表“{sheet}”第 {row_number} 行），请确认选择的企业或上传该企业导出的文件"
        )


def _money(value: object, column: str) -> Decimal:
    """An amount to the cent, from the number as written, never from float noise.

    The export writes whole cents, so the float times 100 is within a hair of an integer: that
    integer is the exact amount in cents (fast). Anything else, e.g. 2.675, is rounded from its
    shortest decimal text (repr), half up, as a person reading the cell would.
    """
    if value.__class__ is float:
        if -_FAST_MONEY < value < _FAST_MONEY:  # NaN and inf fail this too
            cents = value * 100
            whole = round(cents)
            if -1e-6 < cents - whole < 1e-6:
                return _CENT * whole  # exact: an integer number of cents, exponent -2
            return Decimal(repr(value)).quantize(_CENT, ROUND_HALF_UP)
        if -MONEY_LIMIT < value < MONEY_LIMIT:
            return Decimal(repr(value)).quantize(_CENT, ROUND_HALF_UP)
    if isinstance(value, int) and not isinstance(value, bool) and -MONEY_LIMIT < value < MONEY_LIMIT:
        return Decimal(value).quantize(_CENT)
    if value.__class__ is str and value.strip() not in _NULLS:
        number = _decimal(value.replace(",", "").replace("¥", ""), column)
        if -MONEY_LIMIT < number < MONEY_LIMIT:
            return number.quantize(_CENT, ROUND_HALF_UP)
        raise _BadCell(column, value, "超出金额范围")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise _BadCell(column, value, "超出金额范围" if value == value else "不是金额")
    raise _BadCell(column, value, "不是金额" if value not in _NULLS else "为空")


def _money_or_none(value: object, column: str) -> Decimal | None:
    """An optional amount (价税合计): empty means unknown, not zero."""
    return None if _blank(value) else _money(value, column)


def _blank(value: object) -> bool:
    """An optional amount's cell left empty (or `--`): unknown, not zero."""
    return value.__class__ is str and value.strip() in _NULLS


def _money_text(value: object, column: str) -> str:
    """An amount as the pool keeps it: the text of `_money`'s Decimal. The export's usual cell, a
    float of whole cents, is formatted from its integer cents without making a Decimal (the same
    text: below _FAST_MONEY a float holds every cent exactly enough for two decimals)."""
    if value.__class__ is float and -_FAST_MONEY < value < _FAST_MONEY:
        cents = value * 100
        whole = round(cents)
        if -1e-6 < cents - whole < 1e-6:
            return f"{whole / 100:.2f}"
    return str(_money(value, column))


def _money_or_none_text(value: object, column: str) -> str | None:
    """An optional amount's text (价税合计): empty means unknown, not zero."""
    return None if _blank(value) else _money_text(value, column)


def _number_text(value: object, column: str) -> str:
    """数量/单价 as the pool keeps them: the text of `_decimal`'s Decimal, once per spelling of a text cell."""
    if value.__class__ is not str:
        return str(_decimal(value, column))
    text = _NUMBER_TEXTS.get(value)
    if text is None:
        text = str(_decimal(value, column))
        if len(_NUMBER_TEXTS) < 50_000:
            _NUMBER_TEXTS[value] = text
    return text


def _decimal(value: object, column: str) -> Decimal:
    """A Decimal exactly as written (数量/单价 carry up to 15 decimals as text).

    Its text is at most MAX_NUMBER_TEXT characters (a Decimal read from n characters prints in
    at most n + 1), so the pool's 40-character columns always hold it and the parse need not
    print every number again to check.
    """
    if value.__class__ is str:
        number = _DECIMAL_TEXTS.get(value)
        if number is not None:
            return number
        try:
            number = Decimal(value)  # surrounding spaces are accepted by Decimal itself
        except InvalidOperation:
            raise _BadCell(column, value, "不是数字") from None
        if number.is_finite() and len(value) < MAX_NUMBER_TEXT:
            if len(_DECIMAL_TEXTS) < 50_000:
                _DECIMAL_TEXTS[value] = number
            return number
        raise _BadCell(column, value, "不是数字" if not number.is_finite() else f"过长：最多 {MAX_NUMBER_TEXT - 1} 个字符")
    if value.__class__ is float:
        if value - value == 0:  # finite; 15 significant digits print in at most 22 characters
            return _as_excel_shows(value)
        raise _BadCell(column, value, "不是数字")
    if isinstance(value, int) and not isinstance(value, bool) and -10**30 < value < 10**30:
        return Decimal(value)
    raise _BadCell(column, value, "不是数字")


def _as_excel_shows(value: float) -> Decimal:
    """A number cell as Excel shows it: 15 significant digits, so 2199.5841666666665 is 2199.58416666667.

    A quantity computed as 金额 ÷ 单价 is stored as the nearest binary float, whose shortest repr can
    carry a 16th or 17th digit of noise that the user never saw in the cell.
    """
    return Decimal(format(value, ".15g"))


def _rate(value: object) -> str | None:
    """税率 as the export writes it ('13%', '免税', '不征税'); a number such as 0.13 becomes '13%'."""
    if value.__class__ is str:
        text = value.strip()
        if text in _NULLS:
            return None
        if text.endswith("%") or not text[:1].isdigit():
            return text
        try:
            number = Decimal(text)
        except InvalidOperation:
            return text
        return _percent(number) if 0 <= number <= 100 else _bad_rate(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 100:
        return _percent(Decimal(repr(value)))
    return _bad_rate(value)


def _bad_rate(value: object):
    """A 税率 that is no rate at all (negative, above 100%, not a number)."""
    raise _BadCell("税率", value, "不是税率")


def _percent(fraction: Decimal) -> str:
    """0.13 -> '13%', 0.015 -> '1.5%': the spelling of the export."""
    if fraction > 1:  # already a percentage, e.g. 13
        fraction /= 100
    text = format((fraction * 100).normalize(), "f")
    return f"{text}%"


def _kind(raw: object) -> tuple[str, str | None]:
    """Canonical 发票票种 and its code; cached per distinct raw spelling by the caller."""
    name = canonical_type_name(raw if isinstance(raw, str) else str(raw or ""))
    if not name:
        raise _BadCell("发票票种", raw, "为空")
    return name, type_code(name)


def _is_red(value: object) -> bool:
    """是否正数发票: '否' marks a red invoice; anything but 是/否 is a damaged cell."""
    if value == "否":
        return True
    if value == "是":
        return False
    text = str(value).strip()
    if text in ("是", "否"):
        return text == "否"
    raise _BadCell("是否正数发票", value, "应为“是”或“否”")


def _issued_at(value: object) -> datetime:
    """开票日期: text 'YYYY-MM-DD HH:MM:SS' as exported; also a date-only text or a date cell."""
    if value.__class__ is str:
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            parsed = _date_from_loose_text(value)
        return parsed.replace(tzinfo=None) if parsed.tzinfo else parsed
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 1 <= value < 2958466:
        return _EXCEL_EPOCH + timedelta(seconds=round(value * 86400))  # an Excel serial, to the second
    raise _BadCell("开票日期", value, "不是日期")


_RE_LOOSE_DATE = re.compile(
    r"\s*(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?)?\s*$"
)


def _date_from_loose_text(text: str) -> datetime:
    """Dates re-typed by a user: 2024/1/2, 2024年1月2日 12:00 (slow path, rarely taken)."""
    match = _RE_LOOSE_DATE.match(text)
    if not match:
        raise _BadCell("开票日期", text, "不是日期")
    try:
        return datetime(*(int(part) for part in match.groups() if part is not None))
    except ValueError:
        raise _BadCell("开票日期", text, "不是日期") from None


def blue_key_from_remark(remark: str) -> str | None:
    """The key of the blue invoice a red invoice flushes, from its 备注 (docs/etax-export.md).

    The export has no column for it; three wordings are known (legacy → legacy, 数电 → 数电,
    数电 → legacy), with ASCII or full-width colons and trailing text.
    """
    if "红冲" in remark:
        match = _RE_RED_DIGITAL.search(remark)
        if match:
            return match.group(1)
        number, code = _RE_RED_NUMBER.search(remark), _RE_RED_CODE.search(remark)
        if number and code:
            return f"{code.group(1)}-{number.group(1)}"
    if "对应正数发票" in remark:
        match = _RE_RED_LEGACY.search(remark)
        if match:
            return f"{match.group(1)}-{match.group(2)}"
    return None
