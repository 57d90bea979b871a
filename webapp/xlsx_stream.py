"""The one .xlsx writer: every workbook the product writes goes through it (the pool export,
销项汇总, 来源核对, 错误清单, 审计日志), so that a text can only ever be written as text and a number
as a number with its format.

Formula safety lives here: a text is always an inline string cell (`t="inlineStr"`), which no
spreadsheet program evaluates, so a value such as `=cmd|'/C calc'!A0` or `+1+1` is shown exactly as
it came, with no apostrophe added (a formula needs an `<f>` element, which this writer never
writes). A number is a `<v>` cell: general, money (`#,##0.00`, kind `m`) or a count (`#,##0`, kind
`c`), so that sums work and figures read with thousands separators.

Why not openpyxl or XlsxWriter: for the pool export (100,000 invoices and their 300,000 lines,
10 million cells, docs/performance.md) both build an object per cell and take minutes; the target
is seconds; and openpyxl writes a text starting with `=` as a formula. Here rows come a block at a
time, column by column (`Sheet.write_rows`): each column of a block is checked at once, in C, on its
texts joined (no `&`, `<`, `>`, control character, edge space or over-long text: the common case,
written as is), and each row is then one `%` of a template. Only a column whose block fails the
check is escaped value by value. None is an empty cell; cells carry no `r` reference (readers place
them in order). Excel, LibreOffice, openpyxl and calamine read the result.

Memory holds one block of rows. The first sheet goes straight into the zip; the others are spooled
to temporary files and added when the workbook is closed, because a zip member is written whole
before the next one starts. Compression (zlib, which releases the GIL) runs in a thread beside the
row building.
"""
from __future__ import annotations

import queue
import re
import tempfile
import threading
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from itertools import islice
from typing import IO
from xml.sax.saxutils import escape, quoteattr

MAX_CELL_CHARS = 32767  # Excel's limit for one cell's text
FLUSH_ROWS = 1000  # rows encoded and handed to the writer thread at once
COMPRESS_LEVEL = 1  # deflate level 1: about 3x faster than 6 for a file a few per cent larger
# control characters XML 1.0 cannot hold (tab, newline and carriage return it can)
ILLEGAL_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_EDGE_SPACE = " \t\r\n"  # what an XML reader may trim from a text without xml:space="preserve"

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_STYLES = (_HEAD + f'<styleSheet xmlns="{_MAIN}"><fonts count="1"><font><sz val="11"/><name val="等线"/>'
           '<family val="2"/></font></fonts><fills count="2"><fill><patternFill patternType="none"/></fill>'
           '<fill><patternFill patternType="gray125"/></fill></fills><borders count="1"><border><left/><right/>'
           '<top/><bottom/><diagonal/></border></borders><cellStyleXfs count="1"><xf numFmtId="0" fontId="0" '
           'fillId="0" borderId="0"/></cellStyleXfs><cellXfs count="3"><xf numFmtId="0" fontId="0" fillId="0" '
           'borderId="0" xfId="0"/><xf numFmtId="4" fontId="0" fillId="0" borderId="0" xfId="0" '
           'applyNumberFormat="1"/><xf numFmtId="3" fontId="0" fillId="0" borderId="0" xfId="0" '
           'applyNumberFormat="1"/></cellXfs><cellStyles count="1"><cellStyle name="Normal" xfId="0" '
           'builtinId="0"/></cellStyles></styleSheet>')
_TEXT = '<c t="inlineStr"><is><t>%s</t></is></c>'
_KEPT_TEXT = '<c t="inlineStr"><is><t xml:space="preserve">%s</t></is></c>'  # a text with edge spaces
_NUMBER = "<c><v>%s</v></c>"
_MONEY = '<c s="1"><v>%s</v></c>'  # cellXfs 1: built-in format 4, #,##0.00
_COUNT = '<c s="2"><v>%s</v></c>'  # cellXfs 2: built-in format 3, #,##0
_NUMBERS = {"n": _NUMBER, "m": _MONEY, "c": _COUNT}
_TEXT_SLOT, _KEPT_TEXT_SLOT = _TEXT.encode(), _KEPT_TEXT.encode()


def _clean(text: str) -> str:
    """One text made fit for a cell: control characters removed, Excel's length kept, escaped."""
    return escape(ILLEGAL_XML.sub("", text)[:MAX_CELL_CHARS])


def _cell(value, kind: str = "n") -> str:
    """One cell's XML, whatever the value (the general path, for a header or totals row); a number
    is written in the format its column's kind names (`n`, `m` money, `c` count)."""
    if value is None:
        return "<c/>"
    if value.__class__ is float or (isinstance(value, (int, Decimal)) and not isinstance(value, bool)):
        return _NUMBERS.get(kind, _NUMBER) % value
    text = value if value.__class__ is str else str(value)
    return (_KEPT_TEXT if text[:1] in _EDGE_SPACE or text[-1:] in _EDGE_SPACE else _TEXT) % _clean(text)


def row_xml(values: Iterable, kinds: str = "") -> str:
    """A row's XML, cells in order, each value checked on its own; `kinds` names each column's
    number format (see `cells_xml`; a column past its end is general)."""
    return "<row>" + "".join([_cell(value, kinds[i:i + 1] or "n") for i, value in enumerate(values)]) + "</row>"


def _utf8(texts: Sequence[str]) -> list[bytes]:
    """Texts encoded in one call: joined on a character none of them holds (checked or cleaned), split."""
    return "\x00".join(texts).encode("utf-8").split(b"\x00") if texts else []


def _text_column(values: Sequence) -> tuple[bytes, list[bytes]]:
    """A block's text column as (slot, values): as is when the joined texts pass the check, else cleaned.

    None is written as an empty text cell (readers give '' for it, as for an empty cell).
    """
    if set(map(type, values)) - {str}:
        values = ["" if v is None else v if v.__class__ is str else str(v) for v in values]
    joined = "|".join(values)
    if (joined.isprintable() and "&" not in joined and "<" not in joined and ">" not in joined
            and "| " not in joined and " |" not in joined and joined[:1] != " " and joined[-1:] != " "
            and (len(joined) <= MAX_CELL_CHARS or max(map(len, values)) <= MAX_CELL_CHARS)):
        return _TEXT_SLOT, _utf8(values)  # isprintable: no control character, tab or newline, no odd space
    kept = any(v[:1] in _EDGE_SPACE or v[-1:] in _EDGE_SPACE for v in values if v)
    return (_KEPT_TEXT_SLOT if kept else _TEXT_SLOT), _utf8([_clean(v) for v in values])


def _number_column(values: Sequence, cell: str = _NUMBER) -> tuple[bytes, list[bytes]]:
    """A block's number column (numbers or numerals as text; None is an empty cell), in `cell`'s format."""
    if None not in values:
        return cell.encode(), _utf8(values if set(map(type, values)) == {str} else list(map(str, values)))
    return b"%s", _utf8(["<c/>" if v is None else cell % v for v in values])


def _xml_column(values: Sequence) -> tuple[bytes, Sequence]:
    """Cells already rendered by `cells_xml` (a run of columns repeated on several rows)."""
    return b"%s", values


_COLUMNS = {"t": _text_column, "n": _number_column, "x": _xml_column,
            "m": lambda values: _number_column(values, _MONEY), "c": lambda values: _number_column(values, _COUNT)}


def cells_xml(columns: Sequence[Sequence], kinds: str) -> list[bytes]:
    """Each row's cells, without the row element, given column by column.

    `kinds` has one letter a column: `t` text (or None), `n` number (or None; a numeral as text is
    written as given), `m` the same as money (#,##0.00), `c` as a count (#,##0), `x` cells a previous
    `cells_xml` rendered. Columns are the same length.
    """
    template, values = _template(columns, kinds)
    return list(map(template.__mod__, zip(*values, strict=True)))


def _template(columns: Sequence[Sequence], kinds: str) -> tuple[bytes, list[Sequence]]:
    """A block's row template (one slot a column) and its columns' values, made fit for it."""
    slots, values = [], []
    for column, kind in zip(columns, kinds, strict=True):
        slot, column = _COLUMNS[kind](column)
        slots.append(slot)
        values.append(column)
    return b"".join(slots), values


class _Writer:
    """Writes blocks to their files in a thread, in order, so that zlib compresses beside Python work."""

    def __init__(self):
        self._queue: queue.Queue = queue.Queue(maxsize=3)  # a few blocks in flight: memory stays flat
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="xlsx-writer", daemon=True)
        self._thread.start()

    def write(self, handle: IO[bytes], block: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((handle, block))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    item[0].write(item[1])
                except BaseException as error:  # noqa: BLE001 - raised again in the caller's thread
                    self._error = error

    def finish(self) -> None:
        """Wait for every block to be written; raise what failed."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


class Sheet:
    """One worksheet being written: `append` single rows, `write_rows` blocks of them, in order."""

    def __init__(self, name: str, handle: IO[bytes], writer: _Writer, widths: Sequence[float], freeze_header: bool):
        self.name, self._handle, self._writer, self.count = name, handle, writer, 0
        view = ('<sheetViews><sheetView workbookViewId="0"><pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" '
                'state="frozen"/></sheetView></sheetViews>') if freeze_header else ""
        cols = "".join(f'<col min="{i}" max="{i}" width="{w}" customWidth="1"/>' for i, w in enumerate(widths, 1))
        self._write(_HEAD + f'<worksheet xmlns="{_MAIN}">{view}' + (f"<cols>{cols}</cols>" if cols else "")
                    + "<sheetData>")

    def append(self, values: Iterable, kinds: str = "") -> None:
        """Add one row of any values (a header, a totals row, a small report's row); `kinds` as in
        `cells_xml` gives its numbers their formats."""
        self._write(row_xml(values, kinds))
        self.count += 1

    def write_rows(self, columns: Sequence[Sequence], kinds: str) -> None:
        """Add a block of rows given column by column (see `cells_xml` for `kinds`)."""
        template, values = _template(columns, kinds)
        rows = zip(*values, strict=True)
        count = len(values[0]) if values else 0
        row = (b"<row>" + template + b"</row>").__mod__
        for _ in range(0, count, FLUSH_ROWS):  # a few MB at a time: memory stays flat
            self._writer.write(self._handle, b"".join(map(row, islice(rows, FLUSH_ROWS))))
        self.count += count

    def _write(self, text: str) -> None:
        if text:
            self._writer.write(self._handle, text.encode("utf-8"))

    def close(self) -> None:
        self._write("</sheetData></worksheet>")


class Workbook:
    """A workbook of sheets written in parallel, in the order they were added; `close` finishes the file."""

    def __init__(self, target: str | IO[bytes]):
        self._zip = zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL)
        self._sheets: list[tuple[Sheet, IO[bytes]]] = []
        self._writer = _Writer()

    def add_sheet(self, name: str, widths: Sequence[float] = (), freeze_header: bool = True) -> Sheet:
        """The first sheet streams into the zip itself; later ones into a temporary file until `close`."""
        number = len(self._sheets) + 1
        if number == 1:
            handle = self._zip.open(f"xl/worksheets/sheet{number}.xml", "w", force_zip64=True)
        else:
            handle = tempfile.TemporaryFile()
        sheet = Sheet(name, handle, self._writer, widths, freeze_header)
        self._sheets.append((sheet, handle))
        return sheet

    def __enter__(self) -> Workbook:
        return self

    def __exit__(self, kind, error, trace) -> None:
        """`with Workbook(target) as book:` closes it when the rows are written, abandons it on a failure."""
        if kind is None:
            self.close()
        else:
            self.abandon()

    def close(self) -> None:
        """Finish every sheet, then write the workbook's parts around them."""
        for _step in self.closing():
            pass

    def closing(self) -> Iterator[None]:
        """`close`, one step per MB of a spooled sheet copied into the zip: a caller streaming the zip
        (webapp.pool.export.stream_pool_export) hands on what each step wrote, so memory stays flat."""
        for sheet, _handle in self._sheets:
            sheet.close()
        self._writer.finish()
        for number, (_sheet, handle) in enumerate(self._sheets, 1):
            if number > 1:
                handle.seek(0)
                with self._zip.open(f"xl/worksheets/sheet{number}.xml", "w", force_zip64=True) as member:
                    while block := handle.read(1 << 20):
                        member.write(block)
                        yield
            handle.close()
        self._write_parts()
        self._zip.close()

    def abandon(self) -> None:
        """Drop temporary files after a failure (the target itself is the caller's to remove)."""
        try:
            self._writer.finish()
        except BaseException:  # noqa: BLE001, S110 - the first failure is the one the caller raises
            pass
        for _sheet, handle in self._sheets:
            handle.close()
        self._zip.close()

    def _write_parts(self) -> None:
        names = [sheet.name for sheet, _ in self._sheets]
        numbers = range(1, len(names) + 1)
        overrides = "".join(f'<Override PartName="/xl/worksheets/sheet{n}.xml" ContentType="application/'
                            f'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>' for n in numbers)
        self._zip.writestr("[Content_Types].xml", _HEAD + (
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.'
            'spreadsheetml.sheet.main+xml"/><Override PartName="/xl/styles.xml" ContentType="application/'
            f'vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>{overrides}</Types>'))
        self._zip.writestr("_rels/.rels", _HEAD + (
            f'<Relationships xmlns="{_PKG_REL}"><Relationship Id="rId1" Type="{_REL}/officeDocument" '
            'Target="xl/workbook.xml"/></Relationships>'))
        sheets = "".join(f'<sheet name={quoteattr(name)} sheetId="{n}" r:id="rId{n}"/>'
                         for n, name in zip(numbers, names, strict=False))
        self._zip.writestr("xl/workbook.xml", _HEAD + (
            f'<workbook xmlns="{_MAIN}" xmlns:r="{_REL}"><sheets>{sheets}</sheets></workbook>'))
        rels = "".join(f'<Relationship Id="rId{n}" Type="{_REL}/worksheet" Target="worksheets/sheet{n}.xml"/>'
                       for n in numbers)
        self._zip.writestr("xl/_rels/workbook.xml.rels", _HEAD + (
            f'<Relationships xmlns="{_PKG_REL}">{rels}<Relationship Id="rId{len(names) + 1}" Type="{_REL}/styles" '
            'Target="styles.xml"/></Relationships>'))
        self._zip.writestr("xl/styles.xml", _STYLES)
