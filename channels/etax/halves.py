"""The big sheet read by two calamine readers at once: as the upload guard inflates 信息汇总表, its rows
are written into two small workbooks of half the rows each, stored (not compressed), so the parse reads
both halves in parallel threads and neither inflates the sheet again (docs/performance.md, The live import).

calamine spends most of a parse building 信息汇总表's grid from its XML (1.3 s of CPU for 51,000 lines)
and releases the GIL meanwhile, so two readers on halves take about half the time on two cores. Each half
workbook holds every part of the upload but the two data sheets, and the sheet's XML with only its half of
the rows: the part before the first row and the part after the last one are the same in both. The cut is
made before a row that carries its number (`r`), so calamine numbers every row as it does in the whole
sheet. Anything unexpected (no row numbers, no closing tag found, a full disk) gives up the halves, and the
parse reads the upload's sheet as it always did.
"""
from __future__ import annotations

import re
import zipfile
from contextlib import ExitStack
from pathlib import Path

MIN_SPLIT_BYTES = 8 * 1024 * 1024  # a smaller sheet is read in well under the time a second reader saves
_PREFIX = rb"(?:[A-Za-z_][\w.-]*:)?"
_RE_SHEET_DATA = re.compile(rb"<" + _PREFIX + rb"sheetData[\s>/]")
_RE_ROW = re.compile(rb"<" + _PREFIX + rb"row[\s>/]")
_RE_ROW_NUMBER = re.compile(rb"""\sr\s*=\s*["'][0-9]+["']""")
_RE_SHEET_DATA_END = re.compile(rb"</" + _PREFIX + rb"sheetData\s*>")
_KEEP = 4096  # bytes held back at each step: a tag that straddles two chunks is never cut
_HEAD_LIMIT = 4 * 1024 * 1024  # the part before the first row (columns, views) is small in any real export
_TAIL_WINDOW = 1024 * 1024  # the part after the last row (margins, merges) must lie in the last MB


class SheetHalves:
    """A sink for one sheet's inflated XML (channels.etax.container calls `write` with each chunk the
    guard checked) that leaves two half workbooks in `folder` once `finish` is called on a file the
    guard accepted; `discard` removes them whatever happened."""

    def __init__(self, folder: Path, min_bytes: int = MIN_SPLIT_BYTES) -> None:
        self.min_bytes = min_bytes
        self.paths = [folder / ".detail-1.xlsx", folder / ".detail-2.xlsx"]
        self.ready: list[Path] | None = None  # the two half workbooks, once finished
        self.failed = True  # until `start` names a sheet worth splitting
        self.middle, self._part = 0, ""
        self._zips: list[zipfile.ZipFile] = []
        self._entries: list = []
        self._pending, self._seen, self._half, self._tail = b"", 0, -1, b""

    def start(self, part: str, declared_size: int) -> None:
        """The sheet about to be written: its zip part name and declared inflated size."""
        self._part, self.middle = part, declared_size // 2
        self.failed = declared_size < self.min_bytes

    def write(self, chunk: bytes) -> None:
        """The next chunk of the sheet's XML; an error (a full disk) only gives the halves up."""
        if self.failed:
            return
        try:
            self._write(chunk)
        except (OSError, ValueError, RuntimeError, zipfile.LargeZipFile):
            self._give_up()

    def _write(self, chunk: bytes) -> None:
        """Route the bytes: the head to both halves, the rows before the cut to the first, the rest to
        the second; the last bytes are held back until the next chunk shows where a tag ends."""
        data = self._pending + chunk
        start = self._seen - len(self._pending)  # the sheet offset of data[0]
        self._seen += len(chunk)
        if self._half < 0:
            rest = self._write_head(data)
            if rest is None:
                return
            start, data = start + len(data) - len(rest), rest
        if self._half == 0 and start + len(data) > self.middle:
            data = self._cut(data, max(0, self.middle - start))
            if data is None:
                return
        if self._half == 1:
            self._tail = (self._tail + data)[-_TAIL_WINDOW:]
            self._entries[1].write(data)
            self._pending = b""
            return
        self._entries[0].write(data[:-_KEEP])
        self._pending = data[-_KEEP:]

    def _write_head(self, data: bytes) -> bytes | None:
        """Open both halves with the part before the first row once it is seen; the rest of `data`."""
        opening = _RE_SHEET_DATA.search(data)
        row = _RE_ROW.search(data, opening.end()) if opening else None
        if row is None:
            if len(data) > _HEAD_LIMIT:
                self._give_up()
            else:
                self._pending = data
            return None
        for path in self.paths:
            archive = zipfile.ZipFile(path, "w", zipfile.ZIP_STORED)
            self._zips.append(archive)
            self._entries.append(archive.open(self._part, "w"))
        for entry in self._entries:
            entry.write(data[:row.start()])
        self._half = 0
        return data[row.start():]

    def _cut(self, data: bytes, at: int) -> bytes | None:
        """Finish the first half before the first row starting at or after `at`; the rest of `data`
        (None when that row's start tag is not all here yet, or it carries no row number)."""
        row = _RE_ROW.search(data, at)
        end = data.find(b">", row.end()) if row else -1
        if row is None or end < 0:
            if row is not None and row.start() < len(data) - _KEEP:  # a start tag longer than _KEEP
                self._give_up()
                return None
            self._entries[0].write(data[:-_KEEP])
            self._pending = data[-_KEEP:]
            return None
        if not _RE_ROW_NUMBER.search(data, row.start(), end):
            self._give_up()
            return None
        self._entries[0].write(data[:row.start()])
        self._half = 1
        return data[row.start():]

    def finish(self, source: zipfile.ZipFile, skipped: set[str]) -> None:
        """Complete both halves once the guard has accepted the whole upload (the first half gets the part
        after the last row; each gets the upload's other parts but `skipped`, the data sheets), setting
        `ready`; or give them up when the sheet could not be split."""
        if not self.failed and self._half == 1:
            try:
                self.ready = self._finish(source, skipped)
            except (OSError, ValueError, RuntimeError, zipfile.BadZipFile, zipfile.LargeZipFile):
                self.ready = None
        if self.ready is None:
            self._give_up()

    def _finish(self, source: zipfile.ZipFile, skipped: set[str]) -> list[Path] | None:
        """The tail to the first half, the other parts to both, everything closed."""
        ends = list(_RE_SHEET_DATA_END.finditer(self._tail))
        if not ends:
            return None
        self._entries[0].write(self._tail[ends[-1].start():])
        for entry in self._entries:
            entry.close()
        self._entries = []
        for info in source.infolist():  # each part inflated once, written into both halves
            if info.filename not in skipped and not info.is_dir():
                with source.open(info) as part, ExitStack() as copies:
                    targets = [copies.enter_context(archive.open(info.filename, "w")) for archive in self._zips]
                    while chunk := part.read(1024 * 1024):
                        for target in targets:
                            target.write(chunk)
        for archive in self._zips:
            archive.close()
        self._zips = []
        return self.paths

    def _give_up(self) -> None:
        """No halves: the parse reads the upload's sheet itself."""
        self.failed = True
        self.discard()

    def discard(self) -> None:
        """Close and delete the half workbooks (after the parse, or when the guard refused the file)."""
        self.ready = None
        for handle in [*self._entries, *self._zips]:
            try:
                handle.close()
            except (OSError, ValueError, RuntimeError):
                pass
        self._entries, self._zips = [], []
        for path in self.paths:
            path.unlink(missing_ok=True)
