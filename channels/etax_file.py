"""The Electronic Tax Bureau's 全量发票查询 export: check an upload, then parse it into invoice records.

The format is described in shared/domain.md §1, §6 and §7. Invoice headers (amounts, parties,
status, remark) come from the sheet 发票基础信息, one row per invoice plus a totals row; lines come
from 信息汇总表, one row per line, matched to their invoice by key. Every line is kept, including
`(详见销货清单)` summary lines: the job layer filters them with the admin setting errorGoodsNames.
"""
from __future__ import annotations

import html
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from operator import itemgetter
from pathlib import Path
from typing import Iterator

from python_calamine import CalamineError, CalamineWorkbook

from channels.invoice_types import canonical_type_name, type_code
from channels.records import InvoiceRecord, LineRecord, SourceRejected

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
# A 10 MB export inflates to roughly 60-100 MB of XML; 400 MB leaves room and still stops a bomb.
MAX_UNCOMPRESSED_BYTES = 400 * 1024 * 1024
# Sheet XML deflates about 10:1; beyond 200:1 an entry is built to explode, not to hold data.
MAX_ENTRY_RATIO = 200
RATIO_CHECK_FLOOR = 1024 * 1024  # tiny entries may compress absurdly well; they are harmless
MAX_ENTRIES = 1000
MAX_WORKBOOK_XML_BYTES = 2 * 1024 * 1024

BASIC_SHEET = "发票基础信息"
DETAIL_SHEET = "信息汇总表"
REQUIRED_SHEETS = (BASIC_SHEET, DETAIL_SHEET)
TOTALS_MARK = "合计行"

# canonical column -> the header spellings seen in exports (domain.md §1.2)
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
# the rates the export writes, so the line loop skips _rate() for them
_KNOWN_RATES = {r: r for r in ("13%", "9%", "6%", "5%", "3%", "1%", "0%", "免税", "不征税",
                               "16%", "10%", "17%", "11%", "1.5%", "0.5%")}
_CENT = Decimal("0.01")
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
    """What one export holds, grouped by invoicing month so the job layer can fill its subtasks.

    Months ascend; within a month invoices keep the sheet's order. `kinds` are the canonical
    发票票种 found, by type code (unknown kinds last). `line_count` counts every line attached,
    `(详见销货清单)` lines included, since filtering them is the job layer's decision.
    """

    invoices_by_month: dict[str, list[InvoiceRecord]]
    kinds: list[str] = field(default_factory=list)
    invoice_count: int = 0
    line_count: int = 0

    def invoices(self) -> Iterator[InvoiceRecord]:
        """Every invoice, month by month, for callers that do not care about months."""
        for month_invoices in self.invoices_by_month.values():
            yield from month_invoices


class _BadCell(Exception):
    """A cell that cannot be read; the parsing loop adds the sheet and row for the user."""

    def __init__(self, column: str, value: object, why: str = "无法识别") -> None:
        super().__init__(column)
        self.column, self.value, self.why = column, value, why


# ---------------------------------------------------------------------------------------------
# Upload checks: cheap, synchronous, before a batch exists
# ---------------------------------------------------------------------------------------------


def check_upload(path: str | Path) -> None:
    """Refuse a file that cannot be an export before any batch is created for it.

    Size, zip structure, zip-bomb limits, CRCs and the two required sheet names are checked
    with zipfile only; no sheet is parsed.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise SourceRejected("文件为空，请重新从电子税局“全量发票查询”导出后上传")
    if size > MAX_UPLOAD_BYTES:
        raise SourceRejected(
            f"文件大小 {size / 1024 / 1024:.1f} MB，超过 10 MB 的上传上限，请缩小开票日期范围分次导出"
        )
    with path.open("rb") as handle:
        head = handle.read(512)
    if not head.startswith(b"PK"):
        raise SourceRejected(_not_xlsx_message(head))
    try:
        with zipfile.ZipFile(path) as archive:
            check_zip_limits(archive)
            broken = archive.testzip()
            if broken is not None:
                raise SourceRejected(f"文件已损坏：压缩包内 {broken} 校验失败，请重新导出后上传")
            names = read_sheet_names(archive)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        raise SourceRejected(f"文件已损坏，无法作为 xlsx 工作簿打开（{exc}），请重新导出后上传") from exc
    require_sheets(names)


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


def parse_workbook(path: str | Path, expected_tax_id: str) -> ParsedWorkbook:
    """Read both sheets into invoices with their lines, refusing anything that is not the
    selected company's own export: a wrong file must fail loudly, never import half."""
    expected = _normalise_tax_id(expected_tax_id)
    workbook = _open_workbook(Path(path))
    try:
        require_sheets(workbook.sheet_names)
        by_strip = {name.strip(): name for name in workbook.sheet_names}
        invoices, rows_by_key = _read_invoices(_sheet_rows(workbook, by_strip[BASIC_SHEET]), expected)
        line_count = _read_lines(_sheet_rows(workbook, by_strip[DETAIL_SHEET]), invoices, expected)
    finally:
        workbook.close()
    if not invoices:
        raise SourceRejected("文件中没有发票：工作表“发票基础信息”没有数据行")
    _require_lines(invoices, rows_by_key)
    return _group(invoices, line_count)


def _open_workbook(path: Path) -> CalamineWorkbook:
    """Open with calamine after the cheap zip-bomb check, turning its errors into a user message."""
    try:
        with zipfile.ZipFile(path) as archive:
            check_zip_limits(archive)
        return CalamineWorkbook.from_path(str(path))
    except (zipfile.BadZipFile, CalamineError, OSError, ValueError) as exc:
        raise SourceRejected(f"文件无法作为 xlsx 工作簿读取（{exc}），请重新导出后上传") from exc


def _sheet_rows(workbook: CalamineWorkbook, name: str) -> tuple[str, Iterator[tuple[int, list]]]:
    """A sheet's rows numbered as Excel numbers them (calamine keeps leading empty rows)."""
    try:
        sheet = workbook.get_sheet_by_name(name)
        return name, enumerate(sheet.iter_rows(), start=1)
    except CalamineError as exc:
        raise SourceRejected(f"工作表“{name}”无法读取（{exc}）") from exc


def _map_columns(sheet: str, rows: Iterator[tuple[int, list]],
                 columns: tuple[tuple[str, bool], ...]) -> tuple[itemgetter, int]:
    """Find the header row and build one itemgetter for the wanted columns, matched by name.

    A missing optional column maps to index -1, which the loops fill with '' by appending one
    cell to each row; that keeps the hot loops free of per-cell branches.
    """
    for row_number, row in rows:
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


def _read_invoices(sheet_rows: tuple[str, Iterator[tuple[int, list]]],
                   expected: str) -> tuple[dict[str, InvoiceRecord], dict[str, int]]:
    """Read 发票基础信息: one invoice per row, skipping the 合计行 totals row and blank rows."""
    sheet, rows = sheet_rows
    get, width = _map_columns(sheet, rows, BASIC_COLUMNS)
    invoices: dict[str, InvoiceRecord] = {}
    rows_by_key: dict[str, int] = {}
    kinds: dict[str, tuple[str, str | None]] = {}
    for row_number, row in rows:
        cells = _cells(get, row, width)
        seq, code, number, digital = cells[0], cells[1], cells[2], cells[3]
        if seq == TOTALS_MARK or (code in _NULLS and number in _NULLS and digital in _NULLS):
            continue
        try:
            invoice = _invoice_from_cells(cells, kinds)
        except _BadCell as bad:
            raise _cell_rejected(sheet, row_number, bad) from None
        _check_seller(invoice.seller_tax_id, expected, sheet, row_number)
        if invoice.key in rows_by_key:
            raise SourceRejected(
                f"工作表“{sheet}”第 {row_number} 行的发票 {invoice.key} 与第 {rows_by_key[invoice.key]} 行重复"
            )
        invoices[invoice.key] = invoice
        rows_by_key[invoice.key] = row_number
    return invoices, rows_by_key


def _invoice_from_cells(cells: tuple, kinds: dict[str, tuple[str, str | None]]) -> InvoiceRecord:
    """One 发票基础信息 row as an InvoiceRecord; cells come in BASIC_COLUMNS order."""
    (_, code, number, digital, seller, seller_name, buyer, buyer_name, issued, amount, tax, total,
     origin, kind, status, positive, risk, issuer, remark) = cells
    code, number, digital = _id(code, "发票代码"), _id(number, "发票号码"), _id(digital, "数电发票号码")
    key = digital or (f"{code}-{number}" if code and number else None)
    if key is None:
        raise _BadCell("发票号码", "", "缺少发票号码：既无数电发票号码，也无发票代码和发票号码")
    type_name, code_of_type = kinds.get(kind) or kinds.setdefault(kind, _kind(kind))
    is_red = _is_red(positive)
    remark = _text(remark)
    return InvoiceRecord(
        key=key, seller_tax_id=_id(seller, "销方识别号") or "", seller_name=_text(seller_name),
        issued_at=_issued_at(issued), code=code, number=number, digital_number=digital,
        buyer_tax_id=_id(buyer, "购方识别号"), buyer_name=_text(buyer_name),
        amount=_money(amount, "金额"), tax=_money(tax, "税额"), total=_money_or_none(total, "价税合计"),
        origin=_text(origin), type_name=type_name, type_code=code_of_type,
        status=_text(status) or "正常", is_red=is_red, risk_level=_text(risk), issuer=_text(issuer),
        remark=remark, red_of=blue_key_from_remark(remark) if is_red and remark else None,
    )


def _read_lines(sheet_rows: tuple[str, Iterator[tuple[int, list]]],
                invoices: dict[str, InvoiceRecord], expected: str) -> int:
    """Read 信息汇总表 and attach each line to its invoice by key; returns the line count.

    Lines of one invoice are contiguous, so the key is only rebuilt when the raw key cells
    change. A negative line on a blue invoice right after a line of the same invoice is a
    折扣行 (domain.md §6).
    """
    sheet, rows = sheet_rows
    get, width = _map_columns(sheet, rows, DETAIL_COLUMNS)
    prev_code = prev_number = prev_digital = None
    invoice: InvoiceRecord | None = None
    lines: list[LineRecord] = []
    count = 0
    for row_number, row in rows:
        cells = _cells(get, row, width)
        code, number, digital, seller = cells[0], cells[1], cells[2], cells[3]
        same_invoice = code == prev_code and number == prev_number and digital == prev_digital
        if not same_invoice:
            if code in _NULLS and number in _NULLS and digital in _NULLS:
                prev_code = prev_number = prev_digital = None
                continue
            invoice = _invoice_of_line(invoices, code, number, digital, sheet, row_number)
            lines = invoice.lines
            prev_code, prev_number, prev_digital = code, number, digital
        if seller != expected and seller != "":
            _check_seller(_safe_id(seller), expected, sheet, row_number)
        try:
            line = _line_from_cells(cells, len(lines) + 1)
        except (_BadCell, InvalidOperation, ValueError, TypeError) as exc:
            raise _cell_rejected(sheet, row_number, _diagnose_line(cells, exc)) from None
        if same_invoice and not invoice.is_red and line.amount < 0:
            line.is_discount = True
        lines.append(line)
        count += 1
    return count


def _line_from_cells(cells: tuple, line_no: int) -> LineRecord:
    """One 信息汇总表 row as a LineRecord; cells come in DETAIL_COLUMNS order."""
    (_, _, _, _, name, tax_code, special, spec, unit, quantity, price, amount, rate, tax,
     total) = cells
    return LineRecord(
        line_no=line_no,
        name=name if name.__class__ is str else _text(name) or "",
        tax_code=(None if tax_code in _NULLS else tax_code) if tax_code.__class__ is str
        else _loose_id(tax_code),
        special_type=None if special in _NULLS else special if special.__class__ is str else _text(special),
        spec=None if spec in _NULLS else spec if spec.__class__ is str else _text(spec),
        unit=None if unit in _NULLS else unit if unit.__class__ is str else _text(unit),
        quantity=None if quantity in _NULLS else _decimal(quantity, "数量"),
        unit_price=None if price in _NULLS else _decimal(price, "单价"),
        amount=_money(amount, "金额"),
        tax_rate=_KNOWN_RATES.get(rate) or _rate(rate),
        tax=_money(tax, "税额"),
        total=_money(total, "价税合计") if total.__class__ is float else _money_or_none(total, "价税合计"),
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
        except (InvalidOperation, ValueError, TypeError):
            return _BadCell(column, value)
    return _BadCell("货物或应税劳务名称", cells[4])


def _invoice_of_line(invoices: dict[str, InvoiceRecord], code: object, number: object,
                     digital: object, sheet: str, row_number: int) -> InvoiceRecord:
    """The 发票基础信息 invoice a line belongs to; a line without one means a damaged file."""
    try:
        code, number, digital = _id(code, "发票代码"), _id(number, "发票号码"), _id(digital, "数电发票号码")
    except _BadCell as bad:
        raise _cell_rejected(sheet, row_number, bad) from None
    key = digital or (f"{code}-{number}" if code and number else None)
    invoice = invoices.get(key) if key else None
    if invoice is None:
        raise SourceRejected(
            f"工作表“{sheet}”第 {row_number} 行的明细所属发票 {key or '（无号码）'} "
            f"在“{BASIC_SHEET}”中不存在，文件可能被删改，请重新导出"
        )
    return invoice


def _require_lines(invoices: dict[str, InvoiceRecord], rows_by_key: dict[str, int]) -> None:
    """Every invoice has at least one line in 信息汇总表; name the first few that do not."""
    bare = [key for key, invoice in invoices.items() if not invoice.lines]
    if bare:
        shown = "、".join(f"{key}（第 {rows_by_key[key]} 行）" for key in bare[:5])
        more = f" 等 {len(bare)} 张" if len(bare) > 5 else ""
        raise SourceRejected(
            f"工作表“{BASIC_SHEET}”中的发票 {shown}{more} 在“{DETAIL_SHEET}”中没有明细行，"
            "文件可能被删改，请重新导出"
        )


def _group(invoices: dict[str, InvoiceRecord], line_count: int) -> ParsedWorkbook:
    """Group invoices by month (months ascending, sheet order within a month) and list kinds."""
    by_month: dict[str, list[InvoiceRecord]] = {}
    kinds: dict[str, str | None] = {}
    for invoice in invoices.values():
        issued = invoice.issued_at
        by_month.setdefault(f"{issued.year:04d}-{issued.month:02d}", []).append(invoice)
        kinds[invoice.type_name] = invoice.type_code
    ordered = sorted(kinds, key=lambda name: (kinds[name] is None, kinds[name] or "", name))
    return ParsedWorkbook(
        invoices_by_month={month: by_month[month] for month in sorted(by_month)},
        kinds=ordered, invoice_count=len(invoices), line_count=line_count,
    )


# ---------------------------------------------------------------------------------------------
# Cell conversions
# ---------------------------------------------------------------------------------------------


def _pad(row: list, width: int) -> list:
    """Extend a short row (a writer that trimmed trailing empty cells) to the header's width."""
    row.pop()
    row.extend([""] * (width - len(row)))
    row.append("")
    return row


def _cell_rejected(sheet: str, row_number: int, bad: _BadCell) -> SourceRejected:
    """The user-facing message for a bad cell: sheet, row, column and what was found."""
    shown = str(bad.value)
    shown = shown if len(shown) <= 40 else shown[:40] + "…"
    return SourceRejected(f"工作表“{sheet}”第 {row_number} 行“{bad.column}”{bad.why}：{shown}")


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
    """A seller tax ID for comparison only; an unreadable one simply will not match."""
    try:
        return _id(value, "销方识别号") or ""
    except _BadCell:
        return str(value)


def _loose_id(value: object) -> str | None:
    """A code such as 税收分类编码 typed as a number: keep its digits, without '.0'."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _normalise_tax_id(value: object) -> str:
    """Tax IDs compare upper-case and without surrounding spaces."""
    return str(value or "").strip().upper()


def _check_seller(seller: str | None, expected: str, sheet: str, row_number: int) -> None:
    """Every row must be the selected company's own output invoice: one company per upload."""
    if seller == expected:
        return
    if _normalise_tax_id(seller) != expected:
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
        cents = value * 100
        whole = round(cents)
        if -1e-6 < cents - whole < 1e-6:
            return Decimal(whole).scaleb(-2)
        return Decimal(repr(value)).quantize(_CENT, ROUND_HALF_UP)
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value).quantize(_CENT)
    if value.__class__ is str and value.strip() not in _NULLS:
        number = _decimal(value.replace(",", "").replace("¥", ""), column)
        return number.quantize(_CENT, ROUND_HALF_UP)
    raise _BadCell(column, value, "不是金额" if value not in _NULLS else "为空")


def _money_or_none(value: object, column: str) -> Decimal | None:
    """An optional amount (价税合计): empty means unknown, not zero."""
    if value.__class__ is str and value.strip() in _NULLS:
        return None
    return _money(value, column)


def _decimal(value: object, column: str) -> Decimal:
    """A Decimal exactly as written (数量/单价 carry up to 15 decimals as text)."""
    if value.__class__ is str:
        try:
            number = Decimal(value)  # surrounding spaces are accepted by Decimal itself
        except InvalidOperation:
            raise _BadCell(column, value, "不是数字") from None
        if number.is_finite():
            return number
        raise _BadCell(column, value, "不是数字")
    if value.__class__ is float:
        return Decimal(repr(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    raise _BadCell(column, value, "不是数字")


def _rate(value: object) -> str | None:
    """税率 as the export writes it ('13%', '免税', '不征税'); a number such as 0.13 becomes '13%'."""
    if value.__class__ is str:
        text = value.strip()
        if text in _NULLS:
            return None
        if text.endswith("%") or not text[:1].isdigit():
            return text
        try:
            return _percent(Decimal(text))
        except InvalidOperation:
            return text
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _percent(Decimal(repr(value)))
    raise _BadCell("税率", value)


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
        return _EXCEL_EPOCH + timedelta(days=float(value))  # an Excel serial without date format
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
    """The key of the blue invoice a red invoice flushes, from its 备注 (domain.md §1.5).

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
