"""The Electronic Tax Bureau's 全量发票查询 export: check an upload, then parse it into invoice records.

The format is described in docs/etax-export.md. Invoice headers (amounts, parties,
status, remark) come from the sheet 发票基础信息, one row per invoice plus a totals row; lines come
from 信息汇总表, one row per line, matched to their invoice by key. Every line is kept, including
`(详见销货清单)` summary lines: the job layer filters them with the admin setting errorGoodsNames.
Rows are parsed once, straight into the pool's staged rows (channels.records), which the job layer
keeps on disk and writes as they are. The zip itself is guarded by channels.etax.container before
calamine opens it; each cell is read by channels.etax.cells.
"""
from __future__ import annotations

import zipfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import InvalidOperation
from itertools import islice
from operator import attrgetter, itemgetter
from pathlib import Path

from python_calamine import CalamineError, CalamineSheet, CalamineWorkbook

from channels.etax.cells import (
    KNOWN_RATES,
    MAX_NUMBER_TEXT,
    NULLS,
    BadCell,
    as_decimal,
    as_id,
    as_issued_at,
    as_kind,
    as_loose_id,
    as_money,
    as_money_or_none,
    as_rate,
    as_red,
    as_text,
    blue_key_from_remark,
    is_negative,
    money_or_none_text,
    money_text,
    number_text,
    shown,
)
from channels.etax.container import (
    BASIC_SHEET,
    DETAIL_SHEET,
    MAX_UPLOAD_BYTES,
    check_container,
    check_zip_limits,
    not_xlsx_message,
    require_sheets,
)
from channels.etax.halves import SheetHalves
from channels.months import month_of
from channels.records import (
    TIMESTAMP,
    FileRefused,
    InvoiceRow,
    LineRow,
    StagedInvoice,
    canonical_tax_id,
    new_invoice_row,
    new_line_row,
    new_staged,
)

MAX_LISTED_ERRORS = 100  # bad rows listed for the user; beyond this only the count is kept
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
NO_GOODS_NAME = ("为空：明细行有金额却没有货物名称（可能是没有计算结果的公式，或单元格被清空），请在 Excel "
                 "中填好或粘贴为数值后重新导出")
_ZERO_MONEY = ("0.00", "-0.00")  # every zero amount to the cent, as text
FIRST_VAT_DAY = "1994-01-01"  # 增值税专用发票 exist since the 1994 reform: an earlier 开票日期 is a typo


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


class RowsRejected(FileRefused):
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

    def add(self, sheet: str, row: int, bad: BadCell) -> None:
        """Note one bad cell; only the first MAX_LISTED_ERRORS are kept in full."""
        self.total += 1
        if len(self.rows) < MAX_LISTED_ERRORS:
            self.rows.append(BadRow(sheet, row, bad.column, shown(bad.value), bad.why))

    def raise_if_any(self) -> None:
        """Refuse the file, naming every bad row found."""
        if self.total:
            raise RowsRejected(self.rows, self.total)


def check_upload(path: str | Path, halves: SheetHalves | None = None) -> None:
    """Refuse a file that cannot be an export before it is parsed and any batch is created for it.

    Size, zip structure, zip-bomb limits (declared and actually inflated), CRCs, stray cells far
    outside the data and the two required sheet names are checked. Nothing is parsed: the parse at
    receipt (jobs.staging) reads the file once, and refuses another company's export there.
    `halves` keeps 信息汇总表 in two half workbooks as it is checked (channels.etax.halves).
    """
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise FileRefused(
            f"文件大小 {size / 1024 / 1024:.1f} MB，超过 10 MB 的上传上限，请缩小开票日期范围分次导出"
        )
    require_sheets(check_container(path, halves))


FieldLimits = dict[str, dict[str, int]]  # {"invoice"|"line": {record attribute: max characters}}


def parse_workbook(path: str | Path, expected_tax_id: str, limits: FieldLimits | None = None,
                   today: date | None = None, detail_halves: list[Path] | None = None) -> ParsedWorkbook:
    """Read both sheets into invoices with their lines, refusing anything that is not the
    selected company's own export: a wrong file must fail loudly, never import half.

    Unreadable rows do not stop the reading: every one is collected (RowsRejected lists them),
    so the user fixes the file once. `limits` are the pool's column sizes: a longer value is
    such a row too, named here rather than failing the database write later. `today` (the
    caller's clock) lets the parse warn of a 开票日期 after it. `detail_halves`: 信息汇总表 split by the
    upload guard (channels.etax.halves), read by two readers at once.
    """
    expected = canonical_tax_id(str(expected_tax_id or ""))
    errors = _Errors()
    workbook = _open_workbook(Path(path))
    try:
        require_sheets(workbook.sheet_names)
        by_strip = {name.strip(): name for name in workbook.sheet_names}
        sources, detail = detail_halves or [Path(path)], by_strip[DETAIL_SHEET]
        with ThreadPoolExecutor(max_workers=len(sources)) as reader:
            # calamine releases the GIL while it reads a sheet: the big 信息汇总表 is read meanwhile
            parts = [reader.submit(_sheet_of, source, detail) for source in sources]
            invoices, rows_by_key = _read_invoices(_sheet_rows(workbook, by_strip[BASIC_SHEET]), expected, errors)
            line_rows: dict[str, int] = {}
            rows = _joined_rows(_read_or_whole(parts, Path(path), detail))
            line_count = _read_lines((detail, rows), invoices, expected, errors, line_rows)
    finally:
        workbook.close()
    if not invoices and not errors.total:
        raise FileRefused("文件中没有发票：工作表“发票基础信息”没有数据行")
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
        raise FileRefused(not_xlsx_message(head) if head else "文件为空，请重新从电子税局“全量发票查询”导出后上传")
    try:
        with zipfile.ZipFile(path) as archive:
            check_zip_limits(archive)
        return CalamineWorkbook.from_path(str(path))
    except (zipfile.BadZipFile, CalamineError, OSError, ValueError) as exc:
        raise FileRefused("文件已损坏，无法作为 xlsx 工作簿读取，请重新从电子税局导出后上传") from exc


def _sheet_of(path: Path, name: str) -> CalamineSheet:
    """A sheet read through a workbook handle of its own, so two sheets (or two halves of one) are read
    at once."""
    try:
        workbook = CalamineWorkbook.from_path(str(path))
    except (CalamineError, OSError, ValueError) as exc:
        raise FileRefused("文件已损坏，无法作为 xlsx 工作簿读取，请重新从电子税局导出后上传") from exc
    try:
        return workbook.get_sheet_by_name(name)
    except CalamineError as exc:
        raise FileRefused(f"工作表“{name}”无法读取，请重新从电子税局导出后上传") from exc
    finally:
        workbook.close()


def _read_or_whole(parts: list[Future], path: Path, name: str) -> list[CalamineSheet]:
    """The sheet's parts as read; the whole sheet from the upload itself when a half could not be read
    (the halves are a way to read faster, never a reason to refuse: channels.etax.halves)."""
    try:
        return [part.result() for part in parts]
    except FileRefused:
        if len(parts) == 1:
            raise
    return [_sheet_of(path, name)]


def _joined_rows(sheets: list[CalamineSheet]) -> Iterator[tuple[int, list]]:
    """The rows of a sheet read in parts, numbered as Excel numbers them, as one sheet.

    calamine yields a sheet's rows from the first row but from its own first used column: a part whose
    leftmost cell lies right of another's gets the missing empty cells in front, so every row's cells
    are where the whole sheet would have them. A later part skips its leading empty rows (the earlier
    part's), each part keeping its own row numbers.
    """
    first_column = min((sheet.start[1] for sheet in sheets if sheet.start), default=0)
    for index, sheet in enumerate(sheets):
        if sheet.start is None:
            continue
        rows = enumerate(sheet.iter_rows(), start=1)
        if index:
            rows = islice(rows, sheet.start[0], None)
        shift = sheet.start[1] - first_column
        if shift:
            rows = ((number, [""] * shift + row) for number, row in rows)
        yield from rows


def _sheet_rows(workbook: CalamineWorkbook, name: str) -> tuple[str, Iterator[tuple[int, list]]]:
    """A sheet's rows numbered as Excel numbers them (calamine keeps leading empty rows)."""
    try:
        sheet = workbook.get_sheet_by_name(name)
        return name, enumerate(sheet.iter_rows(), start=1)
    except CalamineError as exc:
        raise FileRefused(f"工作表“{name}”无法读取，请重新从电子税局导出后上传") from exc


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
        raise FileRefused(f"工作表“{sheet}”是空的，没有表头")
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
        raise FileRefused(f"工作表“{sheet}”第 {row_number} 行表头缺少列 {listed}，请上传未经删改的导出文件")
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
    sellers = _Sellers(expected, sheet)
    for row_number, row in rows:
        cells = _cells(get, row, width)
        seq, code, number, digital = cells[0], cells[1], cells[2], cells[3]
        if seq == TOTALS_MARK or (code in NULLS and number in NULLS and digital in NULLS):
            continue
        try:
            header = _header_from_cells(cells, kinds)
        except BadCell as bad:
            errors.add(sheet, row_number, bad)
            errors.broken_keys.add(_raw_key(code, number, digital))
            continue
        key = header.key
        sellers.see(row_number, header.tax_id, header.buyer_tax_id)
        if key in rows_by_key:
            errors.add(sheet, row_number, BadCell(
                "发票号码", key, f"重复：发票 {key} 已在第 {rows_by_key[key]} 行出现"))
            continue
        invoices[key] = new_staged((header, []))
        rows_by_key[key] = row_number
    sellers.refuse_if_other()
    return invoices, rows_by_key


def _header_from_cells(cells: tuple, kinds: dict[str, tuple[str, str | None]]) -> InvoiceRow:
    """One 发票基础信息 row as the pool's staged header row (channels.records.InvoiceRow);
    cells come in BASIC_COLUMNS order. Cells are read in the order of the columns the user sees,
    so a row with several bad cells is named by its first."""
    (_, code, number, digital, seller, seller_name, buyer, buyer_name, issued, amount, tax, total,
     origin, kind, status, positive, risk, issuer, remark) = cells
    code, number, digital = as_id(code, "发票代码"), as_id(number, "发票号码"), as_id(digital, "数电发票号码")
    key = digital or (f"{code}-{number}" if code and number else None)
    if key is None:
        raise BadCell("发票号码", "", "缺少发票号码：既无数电发票号码，也无发票代码和发票号码")
    type_name, code_of_type = kinds.get(kind) or kinds.setdefault(kind, as_kind(kind))
    is_red = as_red(positive)
    remark = as_text(remark)
    seller = canonical_tax_id(as_id(seller, "销方识别号")) or ""
    buyer = canonical_tax_id(as_id(buyer, "购方识别号"))
    issued_at = as_issued_at(issued)
    return new_invoice_row((
        key, seller, as_text(seller_name), code, number, digital, buyer, as_text(buyer_name),
        issued_at.strftime(TIMESTAMP), month_of(issued_at), money_text(amount, "金额"), money_text(tax, "税额"),
        money_or_none_text(total, "价税合计"), as_text(origin), type_name, code_of_type, as_text(status) or "正常",
        is_red, as_text(risk), as_text(issuer), remark, blue_key_from_remark(remark) if is_red and remark else None,
    ))


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
    lines: list[LineRow] = []
    blue = False
    count = 0
    for row_number, row in rows:
        cells = _cells(get, row, width)
        code, number, digital, seller = cells[0], cells[1], cells[2], cells[3]
        same_invoice = code == prev_code and number == prev_number and digital == prev_digital
        if not same_invoice:
            if code in NULLS and number in NULLS and digital in NULLS:
                prev_code = prev_number = prev_digital = None
                continue
            prev_code, prev_number, prev_digital = code, number, digital
            invoice = _invoice_of_line(invoices, code, number, digital, sheet, row_number, errors)
            if invoice is None:
                continue
            header, lines = invoice
            blue = not header.is_red
            line_rows.setdefault(header.key, row_number)
        elif invoice is None:  # more rows of a line whose invoice is missing: each is named
            if _raw_key(code, number, digital) in errors.broken_keys:
                continue
            errors.add(sheet, row_number, BadCell("发票号码", shown(digital) or f"{shown(code)}-{shown(number)}",
                                                   f"所属发票在“{BASIC_SHEET}”中不存在，文件可能被删改"))
            continue
        if seller != expected and seller != "":
            _check_seller(_safe_id(seller), expected, sheet, row_number)
        try:
            line = _line_from_cells(cells, len(lines) + 1, same_invoice and blue)
        except (BadCell, InvalidOperation, ValueError, TypeError, OverflowError) as exc:
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
        return as_id(value, "") or ""
    except BadCell:
        return shown(value)


def _is_empty_detail(cells: tuple) -> bool:
    """The detail row of a blank-voided paper invoice (空白作废): no goods, amount, rate or tax."""
    return all(cells[i] in NULLS or cells[i] is None for i in (4, 11, 12, 13))


def _line_from_cells(cells: tuple, line_no: int, may_discount: bool) -> LineRow:
    """One 信息汇总表 row as the pool's staged line row (channels.records.LineRow); cells come
    in DETAIL_COLUMNS order, read in the order the user sees them. `may_discount`: the row follows
    a line of the same blue invoice, so a negative amount makes it that line's 折扣行."""
    (_, _, _, _, name, tax_code, special, spec, unit, quantity, price, amount, rate, tax,
     total) = cells
    if name in NULLS or name is None:  # a line with figures and no goods: a formula never calculated, or cleared
        raise BadCell("货物或应税劳务名称", "", NO_GOODS_NAME)
    quantity = None if quantity in NULLS else number_text(quantity, "数量")
    price = None if price in NULLS else number_text(price, "单价")
    amount = money_text(amount, "金额")
    return new_line_row((
        line_no,
        name if name.__class__ is str else as_text(name) or "",
        (None if tax_code in NULLS else tax_code) if tax_code.__class__ is str else as_loose_id(tax_code),
        None if special in NULLS else special if special.__class__ is str else as_text(special),
        None if spec in NULLS else spec if spec.__class__ is str else as_text(spec),
        None if unit in NULLS else unit if unit.__class__ is str else as_text(unit),
        quantity, price, amount,
        KNOWN_RATES.get(rate) or as_rate(rate),
        money_text(tax, "税额"),
        money_or_none_text(total, "价税合计"),
        may_discount and is_negative(amount),
    ))


def _diagnose_line(cells: tuple, exc: Exception) -> BadCell:
    """Find which cell of a failed line is bad, so the message names the column (slow path)."""
    if isinstance(exc, BadCell):
        return exc
    checks = (("数量", 9, as_decimal), ("单价", 10, as_decimal), ("金额", 11, as_money),
              ("税额", 13, as_money), ("价税合计", 14, as_money_or_none))
    for column, index, convert in checks:
        value = cells[index]
        if value in NULLS and column in ("数量", "单价"):
            continue
        try:
            convert(value, column)
        except BadCell as bad:
            return bad
        except (InvalidOperation, ValueError, TypeError, OverflowError):
            return BadCell(column, value)
    try:
        as_rate(cells[12])
    except BadCell as bad:
        return bad
    return BadCell("货物或应税劳务名称", cells[4])


def _invoice_of_line(invoices: dict[str, StagedInvoice], code: object, number: object, digital: object,
                     sheet: str, row_number: int, errors: _Errors) -> StagedInvoice | None:
    """The 发票基础信息 invoice a line belongs to; a line without one means a damaged file (noted)."""
    try:
        code, number, digital = as_id(code, "发票代码"), as_id(number, "发票号码"), as_id(digital, "数电发票号码")
    except BadCell as bad:
        errors.add(sheet, row_number, bad)
        return None
    key = digital or (f"{code}-{number}" if code and number else None)
    invoice = invoices.get(key) if key else None
    if invoice is None and _raw_key(code, number, digital) not in errors.broken_keys:
        errors.add(sheet, row_number, BadCell(
            "发票号码", key or "（无号码）", f"所属发票在“{BASIC_SHEET}”中不存在，文件可能被删改"))
    return invoice


def _require_lines(invoices: dict[str, StagedInvoice], rows_by_key: dict[str, int],
                   line_rows: dict[str, int], errors: _Errors) -> None:
    """Every invoice has its rows in 信息汇总表 (a blank-voided one an empty row, or none at all)."""
    for key, (header, lines) in invoices.items():
        if lines or key in line_rows or _is_blank_voided(header):
            continue
        errors.add(BASIC_SHEET, rows_by_key[key], BadCell(
            "发票号码", key, f"对应的发票在“{DETAIL_SHEET}”中没有明细行，文件可能被删改"))


def _is_blank_voided(header: tuple) -> bool:
    """A paper invoice voided before anything was written on it: voided, zero amounts."""
    return header.status == "已作废" and header.amount in _ZERO_MONEY and header.tax in _ZERO_MONEY


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
        if column in _INVOICE_COLUMNS and _longest(headers, column) > limit:
            for header in headers:
                value = getattr(header, column)
                if value and len(value) > limit:
                    errors.add(BASIC_SHEET, rows_by_key[header.key], _too_long(_INVOICE_COLUMNS[column], value, limit))
    for column, limit in limits.get("line", {}).items():
        if column in _DECIMAL_COLUMNS and limit >= MAX_NUMBER_TEXT:
            continue  # as_decimal keeps these short enough already
        if column in _LINE_COLUMNS and _longest(lines, column) > limit:
            for header, invoice_lines in invoices.values():
                for line in invoice_lines:
                    value = getattr(line, column)
                    if value and len(value) > limit:
                        row = line_rows.get(header.key, 0) + line.line_no - 1
                        errors.add(DETAIL_SHEET, row, _too_long(_LINE_COLUMNS[column], value, limit))


def _longest(rows: list[InvoiceRow] | list[LineRow], column: str) -> int:
    """The longest text in one text column (str or None) of many staged rows."""
    return max(map(len, filter(None, map(attrgetter(column), rows))), default=0)  # all C-level


def _too_long(column: str, value: str, limit: int) -> BadCell:
    """The error for a value the pool cannot keep whole."""
    return BadCell(column, value, f"过长：{len(value)} 个字符，最多 {limit} 个")


def _group(invoices: dict[str, StagedInvoice], line_count: int, today: date | None = None) -> ParsedWorkbook:
    """Group invoices by month (months ascending, sheet order within a month), list kinds, and
    warn about what is imported as written (the bureau's data) yet looks wrong: blue invoices with
    a negative amount, a 开票日期 after today or before VAT invoices existed (docs/etax-export.md, Values)."""
    by_month: dict[str, list[StagedInvoice]] = {}
    kinds: dict[str, str | None] = {}
    negative_blue, future, ancient = [], [], []
    tomorrow = (today + timedelta(days=1)).isoformat() if today else "9999-12-31"
    for invoice in invoices.values():
        header = invoice.header
        by_month.setdefault(header.month, []).append(invoice)
        kinds[header.type_name] = header.type_code
        if not header.is_red and is_negative(header.amount):
            negative_blue.append(header.key)
        issued = header.issued_at[:10]
        if issued >= tomorrow:
            future.append(header.key)
        elif issued < FIRST_VAT_DAY:
            ancient.append(header.key)
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


def _pad(row: list, width: int) -> list:
    """Extend a short row (a writer that trimmed trailing empty cells) to the header's width."""
    row.pop()
    row.extend([""] * (width - len(row)))
    row.append("")
    return row


def _safe_id(value: object) -> str:
    """A tax ID (seller or buyer), canonical, for comparison only; an unreadable one simply will not match."""
    try:
        return canonical_tax_id(as_id(value, "销方识别号")) or ""
    except BadCell:
        return str(value)


class _Sellers:
    """Whether 发票基础信息 holds the chosen company's output invoices only, row by row (docs/etax-export.md,
    What refuses a file). The first row of another seller refuses the file at once, unless the company
    has been the buyer on every row so far: then the sheet is read on, because a file where it is the
    buyer on every row is an 进项 export, and the user is told that rather than which seller differs.
    """

    def __init__(self, expected: str, sheet: str) -> None:
        self.expected, self.sheet = expected, sheet
        self.other: tuple[int, str | None] | None = None  # the first row of another seller, and that seller
        self.buyer_throughout = True

    def see(self, row_number: int, seller: str | None, buyer: str | None) -> None:
        """One invoice row's seller and buyer (both canonical); refuses once the answer is known."""
        self.buyer_throughout = self.buyer_throughout and buyer == self.expected
        if self.other is None and seller != self.expected:
            self.other = (row_number, seller)
        if self.other is not None and not self.buyer_throughout:
            self.refuse_if_other()

    def refuse_if_other(self) -> None:
        """After the last row (or sooner): refuse a file with another seller, naming an 进项 export as one."""
        if self.other is None:
            return
        if self.buyer_throughout:
            raise FileRefused(
                f"这是进项发票的导出文件：所选企业 {self.expected} 在每一行都是购买方，不是销售方。"
                "发票池只收所选企业开具的销项发票，请在电子税局“全量发票查询”中查询本企业开具的发票后导出再上传"
            )
        _check_seller(self.other[1], self.expected, self.sheet, self.other[0])


def _check_seller(seller: str | None, expected: str, sheet: str, row_number: int) -> None:
    """Every row must be the selected company's own output invoice: one company per upload (both tax
    IDs canonical: channels.records.canonical_tax_id)."""
    if seller != expected:
        raise FileRefused(
            f"文件中的销方税号 {seller or '（空）'} 与所选企业 {expected} 不一致"
            f"（工作表“{sheet}”第 {row_number} 行），请确认选择的企业或上传该企业导出的文件"
        )
