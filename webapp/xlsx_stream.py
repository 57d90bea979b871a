"""A minimal streaming .xlsx writer: sheets of plain rows, written as SpreadsheetML text into a zip.

Why not openpyxl or XlsxWriter: for the pool export (100,000 invoices and their 300,000 lines,
docs/performance.md) openpyxl's write-only mode with lxml and XlsxWriter's constant-memory mode
spend 25-35 µs a cell building objects per cell; the workbook is 10 million cells, 4-6 minutes of
CPU. Here a row is one string join: text is an inline string cell (`t="inlineStr"`), a number a
`<v>` cell, None an empty `<c/>`. Cells carry no `r` reference (readers place them in order), and
there is one default style. Excel, LibreOffice, openpyxl and calamine read the result.

Rows are written as they come; memory holds one block of rows. The first sheet goes straight into
the zip; the others are spooled to temporary files and added when the workbook is closed, because
a zip member is written whole before the next one starts.
"""
from __future__ import annotations

import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import IO
from xml.sax.saxutils import escape, quoteattr

MAX_CELL_CHARS = 32767  # Excel's limit for one cell's text
FLUSH_ROWS = 500
COMPRESS_LEVEL = 1  # deflate level 1: about 3x faster than 6 for a file a few per cent larger
# control characters XML 1.0 cannot hold (tab, newline and carriage return it can)
ILLEGAL_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# the same as bytes: UTF-8 never uses them inside a multi-byte character, so deleting them is safe
_ILLEGAL_BYTES = bytes([*range(0x00, 0x09), 0x0b, 0x0c, *range(0x0e, 0x20)])

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_STYLES = (_HEAD + f'<styleSheet xmlns="{_MAIN}"><fonts count="1"><font><sz val="11"/><name val="等线"/>'
           '<family val="2"/></font></fonts><fills count="2"><fill><patternFill patternType="none"/></fill>'
           '<fill><patternFill patternType="gray125"/></fill></fills><borders count="1"><border><left/><right/>'
           '<top/><bottom/><diagonal/></border></borders><cellStyleXfs count="1"><xf numFmtId="0" fontId="0" '
           'fillId="0" borderId="0"/></cellStyleXfs><cellXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" '
           'borderId="0" xfId="0"/></cellXfs><cellStyles count="1"><cellStyle name="Normal" xfId="0" '
           'builtinId="0"/></cellStyles></styleSheet>')
# xml:space="preserve" always: checking each text for edge spaces costs more than the bytes
_TEXT_OPEN, _TEXT_CLOSE = '<c t="inlineStr"><is><t xml:space="preserve">', "</t></is></c>"


def _cell(value) -> str:
    """One cell's XML: text as an inline string, numbers as numbers, None as an empty cell."""
    if value is None:
        return "<c/>"
    if value.__class__ is str:
        if len(value) > MAX_CELL_CHARS:
            value = value[:MAX_CELL_CHARS]
        return _TEXT_OPEN + escape(value) + _TEXT_CLOSE
    if value.__class__ is float:
        return f"<c><v>{value!r}</v></c>"
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return f"<c><v>{value}</v></c>"
    return _cell(str(value))


def row_xml(values: Iterable) -> str:
    """A row's XML, cells in order (the general path: any value, checked cell by cell)."""
    return "<row>" + "".join([_cell(v) for v in values]) + "</row>"


_SEP = "\x00"  # never left in a written cell: the block filter removes it


class RowFormat:
    """Rows whose columns have fixed kinds (`t` text or None, `n` number or None), rendered fast.

    The general path costs about 1.5 µs a cell. Here the text cells of a row are checked at once,
    on the row's texts joined, and the row is one `str.format` of a template; only a row with `&`,
    `<`, `>` or an over-long text takes the general path. None in a text column is written as an
    empty text cell (readers give '' for it, as for an empty cell), which spares a pass per row.
    """

    def __init__(self, kinds: str):
        self.width = len(kinds)
        self._texts = [i for i, k in enumerate(kinds) if k == "t"]
        self._numbers = [i for i, k in enumerate(kinds) if k == "n"]
        slots, t, n = [], 0, len(self._texts)
        for kind in kinds:
            if kind == "t":
                slots.append(_TEXT_OPEN.replace("{", "{{") + f"{{{t}}}" + _TEXT_CLOSE)
                t += 1
            else:
                slots.append(f"{{{n}}}")
                n += 1
        self._template = "<row>" + "".join(slots) + "</row>"

    def render(self, values) -> str:
        texts = ["" if (v := values[i]) is None else v for i in self._texts]
        joined = _SEP.join(texts)
        if len(joined) > MAX_CELL_CHARS or "&" in joined or "<" in joined or ">" in joined:
            return row_xml(values)
        numbers = ["<c/>" if (v := values[i]) is None else f"<c><v>{v!r}</v></c>" if v.__class__ is float
                   else f"<c><v>{v}</v></c>" for i in self._numbers]
        return self._template.format(*texts, *numbers)


class Sheet:
    """One worksheet being written: `append` rows, in order, as tuples of str/number/None."""

    def __init__(self, name: str, handle: IO[bytes], widths: Sequence[float], freeze_header: bool,
                 kinds: str | None = None):
        self.name, self._handle, self._rows, self.count = name, handle, [], 0
        self._render = RowFormat(kinds).render if kinds else row_xml
        view = ('<sheetViews><sheetView workbookViewId="0"><pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" '
                'state="frozen"/></sheetView></sheetViews>') if freeze_header else ""
        cols = "".join(f'<col min="{i}" max="{i}" width="{w}" customWidth="1"/>' for i, w in enumerate(widths, 1))
        self._write(_HEAD + f'<worksheet xmlns="{_MAIN}">{view}' + (f"<cols>{cols}</cols>" if cols else "")
                    + "<sheetData>")

    def append(self, values: Iterable, general: bool = False) -> None:
        """Add a row; `general` for one that does not fit the sheet's kinds (its header)."""
        self._rows.append(row_xml(values) if general else self._render(values))
        self.count += 1
        if len(self._rows) >= FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        block = "".join(self._rows).encode("utf-8")
        self._rows.clear()
        self._handle.write(block.translate(None, _ILLEGAL_BYTES))  # one pass per block, not one per cell

    def _write(self, text: str) -> None:
        self._handle.write(text.encode("utf-8"))

    def close(self) -> None:
        self._flush()
        self._write("</sheetData></worksheet>")


class Workbook:
    """A workbook of sheets written in parallel, in the order they were added; `close` finishes the file."""

    def __init__(self, target: str | IO[bytes]):
        self._zip = zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL)
        self._sheets: list[tuple[Sheet, IO[bytes]]] = []

    def add_sheet(self, name: str, widths: Sequence[float] = (), freeze_header: bool = True,
                  kinds: str | None = None) -> Sheet:
        """The first sheet streams into the zip itself; later ones into a temporary file until `close`.

        `kinds` (one `t`/`n` a column, see RowFormat) makes appending rows of that shape fast.
        """
        number = len(self._sheets) + 1
        if number == 1:
            handle = self._zip.open(f"xl/worksheets/sheet{number}.xml", "w", force_zip64=True)
        else:
            handle = tempfile.TemporaryFile()
        sheet = Sheet(name, handle, widths, freeze_header, kinds)
        self._sheets.append((sheet, handle))
        return sheet

    def close(self) -> None:
        """Finish every sheet, then write the workbook's parts around them."""
        for number, (sheet, handle) in enumerate(self._sheets, 1):
            sheet.close()
            if number > 1:
                handle.seek(0)
                with self._zip.open(f"xl/worksheets/sheet{number}.xml", "w", force_zip64=True) as member:
                    shutil.copyfileobj(handle, member, 1 << 20)
            handle.close()
        self._write_parts()
        self._zip.close()

    def abandon(self) -> None:
        """Drop temporary files after a failure (the target itself is the caller's to remove)."""
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
        sheets = "".join(f'<sheet name={quoteattr(name)} sheetId="{n}" r:id="rId{n}"/>' for n, name in zip(numbers, names, strict=False))
        self._zip.writestr("xl/workbook.xml", _HEAD + (
            f'<workbook xmlns="{_MAIN}" xmlns:r="{_REL}"><sheets>{sheets}</sheets></workbook>'))
        rels = "".join(f'<Relationship Id="rId{n}" Type="{_REL}/worksheet" Target="worksheets/sheet{n}.xml"/>'
                       for n in numbers)
        self._zip.writestr("xl/_rels/workbook.xml.rels", _HEAD + (
            f'<Relationships xmlns="{_PKG_REL}">{rels}<Relationship Id="rId{len(names) + 1}" Type="{_REL}/styles" '
            'Target="styles.xml"/></Relationships>'))
        self._zip.writestr("xl/styles.xml", _STYLES)
