"""The export's container guard: is an upload an xlsx zip that is safe to open, with the two sheets?

Size, zip structure, zip-bomb limits (declared and actually inflated), CRCs, cells far outside
the data and the required sheet names are checked with the zip alone (no XML parser, nothing
parsed) before calamine opens the file (docs/etax-export.md, What refuses a file).
"""
from __future__ import annotations

import copy
import html
import re
import zipfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

from channels.etax.halves import SheetHalves
from channels.records import FileRefused

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_FILES = 10  # files in one import; the web server's request limit allows for them
MAX_UNCOMPRESSED_BYTES = 400 * 1024 * 1024
MAX_ENTRY_RATIO = 200
RATIO_CHECK_FLOOR = 1024 * 1024  # tiny entries may compress absurdly well; they are harmless
MAX_ENTRIES = 1000
MAX_WORKBOOK_XML_BYTES = 2 * 1024 * 1024
# calamine holds a sheet as a dense grid from A1 to its farthest cell: a stray cell far away costs
# (rows x columns) cells of memory whatever the data. The export has 27 columns and a 10 MB file
# holds well under 200,000 rows, so cells beyond these are refused before calamine opens the file.
MAX_SHEET_ROWS = 200_000
MAX_SHEET_COLUMN = "AZ"
_INFLATE_CHUNK = 1024 * 1024  # bytes of an entry inflated and scanned at a time
BASIC_SHEET = "发票基础信息"
DETAIL_SHEET = "信息汇总表"
REQUIRED_SHEETS = (BASIC_SHEET, DETAIL_SHEET)
_RE_SHEET = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?sheet\b[^>]*?\bname\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
_RE_OFFICE_DOC = re.compile(
    rb"<(?:[\w.-]+:)?Relationship\b(?=[^>]*officeDocument\")[^>]*\bTarget\s*=\s*\"([^\"]+)\""
)
MAX_FILE_NAME = 255  # the batch keeps the name in 255 characters; a longer one is refused, not cut


def check_file_name(name: str) -> None:
    """Refuse a file name the batch cannot keep: a name that was not valid UTF-8 arrives with
    replacement characters or surrogates, NUL and other control characters cannot be stored by
    PostgreSQL, and more than 255 characters do not fit."""
    if any(ch == "\ufffd" or "\ud800" <= ch <= "\udfff" or ord(ch) < 32 for ch in name):
        raise FileRefused("文件名含有无法识别的字符（编码错误或控制字符），请将文件重命名为普通的中文、"
                          "字母或数字后重新选择")
    if len(name) > MAX_FILE_NAME:
        raise FileRefused(f"文件名过长（{len(name)} 个字符），请重命名为 {MAX_FILE_NAME} 个字符以内后重新选择")


def check_container(path: Path, halves: SheetHalves | None = None) -> list[str]:
    """The zip checks both the upload and the parse rely on; returns the sheet names.

    Every entry is inflated once, counting the bytes really produced (a zip may understate its
    sizes), and the two data sheets are scanned for cells that would make the reader allocate
    a grid far beyond the data. `halves`, when given, receives 信息汇总表's XML as it is checked
    and is finished once the whole file is accepted (channels.etax.halves: the parse then reads it
    with two readers, and inflates it no more).
    """
    if path.stat().st_size == 0:
        raise FileRefused("文件为空，请重新从电子税局“全量发票查询”导出后上传")
    with path.open("rb") as handle:
        head = handle.read(512)
    if not head.startswith(b"PK"):
        raise FileRefused(not_xlsx_message(head))
    try:
        with zipfile.ZipFile(path) as archive:
            check_zip_limits(archive)
            if any(info.flag_bits & 0x1 for info in archive.infolist()):
                raise FileRefused("文件已加密（带密码），请在 Excel 中取消密码后另存为 .xlsx 再上传")
            names = read_sheet_names(archive)
            sheet_parts = _data_sheet_parts(archive)
            _check_entries(archive, sheet_parts, halves)
            if halves is not None:
                halves.finish(archive, skipped=set(sheet_parts))
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError) as exc:
        raise FileRefused("文件已损坏，无法作为 xlsx 工作簿打开，请重新导出后上传") from exc
    return names


def not_xlsx_message(head: bytes) -> str:
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
        raise FileRefused(f"文件结构异常：压缩包内有 {len(entries)} 个条目，不是电子税局导出的工作簿")
    total = 0
    for entry in entries:
        total += entry.file_size
        ratio_exceeded = entry.file_size > MAX_ENTRY_RATIO * max(entry.compress_size, 1)
        if entry.file_size > RATIO_CHECK_FLOOR and ratio_exceeded:
            raise FileRefused(
                f"文件结构异常：压缩包内 {entry.filename} 的压缩比超过 {MAX_ENTRY_RATIO}:1，疑似压缩炸弹，已拒绝"
            )
    if total > MAX_UNCOMPRESSED_BYTES:
        raise FileRefused(
            f"文件结构异常：解压后共 {total / 1024 / 1024:.0f} MB，超过 "
            f"{MAX_UNCOMPRESSED_BYTES // 1024 // 1024} MB 上限，疑似压缩炸弹，已拒绝"
        )


def read_sheet_names(archive: zipfile.ZipFile) -> list[str]:
    """Sheet names from the workbook part, read with the zip alone (no XML parser, no parsing)."""
    part = _workbook_part_name(archive)
    if part is None:
        raise FileRefused("文件不是有效的 xlsx 工作簿：缺少工作簿目录（xl/workbook.xml）")
    if archive.getinfo(part).file_size > MAX_WORKBOOK_XML_BYTES:
        raise FileRefused("文件结构异常：工作簿目录过大，不是电子税局导出的工作簿")
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
_RE_REL_REVERSED = re.compile(rb"<(?:[\w.-]+:)?Relationship\b[^>]*?\bTarget\s*=\s*\"([^\"]+)\""
                              rb"[^>]*?\bId\s*=\s*\"([^\"]+)\"")
# a cell beyond column AZ, or any cell or row numbered 100,000 or more (checked exactly in Python)
_RE_FAR_CELL = re.compile(rb"""r=["']((?:[A-Z]{3}|[B-Z][A-Z])[0-9]+|[A-Z]{1,2}[0-9]{6,})["']""")
# where a far cell may start: the same test without its digits and quote, which the scan over every
# cell reference of a sheet runs in less than half the time; each hit is then matched in full. The
# lookahead (a second letter, or six digits) turns away an ordinary reference (A12, AA12) at once:
# 0.115 s instead of 0.167 s for 76 MB of XML
_RE_FAR_CELL_START = re.compile(rb"""r=["'](?=[A-Z][A-Z]|[A-Z][0-9]{6})(?:[A-Z]{3}|[B-Z][A-Z]|[A-Z]{1,2}[0-9]{6})""")
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


def _check_entries(archive: zipfile.ZipFile, sheet_parts: dict[str, str], halves: SheetHalves | None) -> None:
    """Inflate every entry, stopping past the declared size or the total limit (a bomb that
    understates its sizes), and scan the data sheets for cells far outside the data.

    zipfile reads each entry and checks its CRC where the data ends; the bytes it produces are
    counted here, since it would stop quietly at a size that lies (_declaring).
    """
    budget = MAX_UNCOMPRESSED_BYTES
    for info in archive.infolist():
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise FileRefused("文件使用了不支持的压缩方式，不是电子税局导出的工作簿，请上传原始导出文件")
        sheet = sheet_parts.get(info.filename)
        sink = halves if halves is not None and sheet == DETAIL_SHEET else None
        if sink is not None:
            sink.start(info.filename, info.file_size)
        produced = _inflated_size(archive, info, budget, sheet, sink)
        if produced != info.file_size:
            raise FileRefused(_damaged(info.filename))
        budget -= produced


def _inflated_size(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int, sheet: str | None,
                   sink: SheetHalves | None) -> int:
    """Inflate one entry in bounded chunks and count them, refusing it once past its declared size or
    the `budget` left of the total; a data sheet's chunks are scanned for far cells on the way, and
    handed to `sink` once checked."""
    produced, tail = 0, b""
    with (archive.open(_declaring(info, budget + 1)) as entry,
          closing(_read_ahead(_chunks(entry, info.filename))) as chunks):
        for chunk in chunks:
            produced += len(chunk)
            if produced > info.file_size or produced > budget:
                raise FileRefused(
                    f"文件结构异常：压缩包内 {info.filename} 解压后的实际大小超过其声明大小或总上限，"
                    "疑似压缩炸弹，已拒绝"
                )
            if sheet:
                _check_far_cells(sheet, tail + chunk)
                tail = chunk[-32:]
            if sink is not None:
                sink.write(chunk)
    return produced


def _declaring(info: zipfile.ZipInfo, size: int) -> zipfile.ZipInfo:
    """The entry's header as zipfile reads it, declaring `size` bytes: zipfile stops at the declared
    size without a word (and a CRC forged for the bytes up to it passes), so the guard lets it read
    up to the total limit and counts the bytes itself against the declared size."""
    declared = copy.copy(info)
    declared.file_size = size
    return declared


def _chunks(entry: zipfile.ZipExtFile, name: str) -> Iterator[bytes]:
    """An entry's bytes in bounded chunks; zipfile's CRC check where its data ends becomes the user's message."""
    try:
        while chunk := entry.read(_INFLATE_CHUNK):
            yield chunk
    except zipfile.BadZipFile as exc:
        raise FileRefused(_damaged(name)) from exc


def _damaged(name: str) -> str:
    """The message for an entry whose data does not match its header (size or CRC)."""
    return f"文件已损坏：压缩包内 {name} 校验失败，请重新导出后上传"


def _read_ahead(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The chunks, the next one inflated in a thread while the caller checks this one: zlib
    releases the GIL, so inflating (and zipfile's CRC) overlaps the far-cell scan."""
    with ThreadPoolExecutor(max_workers=1) as inflater:
        pending = inflater.submit(next, chunks, None)
        while (chunk := pending.result()) is not None:
            pending = inflater.submit(next, chunks, None)
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
            raise FileRefused(
                f"工作表“{sheet}”的单元格 {ref} 远在数据区域之外（导出文件只用到 A–AA 列），"
                "请删除该单元格（或多余的行、列）后重新上传，或直接上传电子税局的原始导出文件"
            )
    for match in _RE_FAR_ROW.finditer(xml):
        tag_end = xml.find(b">", match.end())
        if int(match.group(1)) > MAX_SHEET_ROWS and tag_end > 0 and xml[tag_end - 1:tag_end] != b"/":
            raise FileRefused(
                f"工作表“{sheet}”第 {int(match.group(1))} 行远在数据区域之外，"
                "请删除多余的行后重新上传，或直接上传电子税局的原始导出文件"
            )


def require_sheets(sheet_names: list[str]) -> None:
    """Name the missing sheet: the usual cause is exporting from another page than 全量发票查询."""
    present = {name.strip() for name in sheet_names}
    missing = [name for name in REQUIRED_SHEETS if name not in present]
    if missing:
        listed = "、".join(f"“{name}”" for name in missing)
        raise FileRefused(
            f"文件缺少工作表 {listed}，请上传电子税局“全量发票查询”导出的原始文件（不要删改工作表）"
        )
