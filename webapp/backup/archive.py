"""The backup archive: one zip holding manifest.json and every table's rows as JSON lines.

Each row is one JSON array of its column values in an engine-neutral form (Decimal as text at its
column's scale, dates and times ISO, booleans true/false, JSON columns as JSON), rows ordered by
primary key in byte order. The same bytes come out of SQLite and PostgreSQL for the same rows, so a
table's SHA-256 over its lines is the checksum the manifest keeps, and a restored database can be
checked against it (README.md, Backup and restore).
"""
from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime
from decimal import Decimal

import orjson
from sqlalchemy import JSON, Boolean, Date, DateTime, Float, Integer, Numeric, Table

FORMAT = "invoice-sync-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
READ_CHUNK = 1 << 20


class BackupRefused(Exception):
    """An archive or a target database the restore will not touch; the message says why, in Chinese."""


def member(table: str) -> str:
    """Where a table's rows live inside the archive."""
    return f"tables/{table}.jsonl"


def type_code(column) -> str:
    """The neutral type of a reflected column: how its values are written and read back."""
    kind = column.type
    if isinstance(kind, Boolean):
        return "bool"
    if isinstance(kind, Integer):
        return "int"
    if isinstance(kind, Numeric) and not isinstance(kind, Float):
        return f"decimal:{kind.scale or 0}"
    if isinstance(kind, DateTime):
        return "datetime"
    if isinstance(kind, Date):
        return "date"
    if isinstance(kind, JSON):
        return "json"
    return "str"


PLAIN = ("int", "str", "json")  # written as the driver returns them


def _encoder(code: str) -> Callable:
    """Value → neutral JSON value for one type code (None stays None); PLAIN codes need none."""
    if code.startswith("decimal:"):
        quantum = Decimal(1).scaleb(-int(code.split(":")[1]))
        return lambda v: None if v is None else str(Decimal(v).quantize(quantum))
    if code == "datetime":
        return lambda v: None if v is None else v.isoformat(sep=" ")
    if code == "date":
        return lambda v: None if v is None else v.isoformat()
    if code == "bool":
        return lambda v: None if v is None else bool(v)
    return lambda v: v


def _decoder(code: str) -> Callable:
    """Neutral JSON value → the Python value the database driver takes."""
    if code.startswith("decimal:"):
        return lambda v: None if v is None else Decimal(v)
    if code == "datetime":
        return lambda v: None if v is None else datetime.fromisoformat(v)
    if code == "date":
        return lambda v: None if v is None else date.fromisoformat(v)
    return lambda v: v


def encode_rows(rows: Iterable, codes: list[str]) -> Iterator[bytes]:
    """Each row as one canonical JSON line (the bytes the checksum is taken over)."""
    converted = [(index, _encoder(code)) for index, code in enumerate(codes) if code not in PLAIN]
    dumps = orjson.dumps
    for row in rows:
        values = list(row)
        for index, encode in converted:
            values[index] = encode(values[index])
        yield dumps(values) + b"\n"


def decode_rows(lines: Iterable[bytes], columns: list[list[str]]) -> Iterator[list]:
    """Lines of a table member back into rows of Python values, in the manifest's column order."""
    converted = [(index, _decoder(code)) for index, (_, code) in enumerate(columns) if code not in PLAIN]
    loads, width = orjson.loads, len(columns)
    for line in lines:
        row = loads(line)
        if not isinstance(row, list) or len(row) != width:
            raise BackupRefused("备份中的数据行与清单的列不符，文件已被改动或损坏。请换一份完整的备份文件。")
        for index, decode in converted:
            row[index] = decode(row[index])
        yield row


def table_columns(table: Table) -> list[list[str]]:
    """[[name, type code], …] of a reflected table, by name: the order its columns are written in, the
    same on every engine whatever order migrations left them in (SQLite rebuilds tables, PostgreSQL adds
    columns at the end)."""
    return [[column.name, type_code(column)] for column in sorted(table.columns, key=lambda column: column.name)]


class Digest:
    """Row count and SHA-256 of a table's lines, as they stream past."""

    def __init__(self):
        self.rows = 0
        self.sha = hashlib.sha256()

    def add(self, line: bytes) -> None:
        self.rows += 1
        self.sha.update(line)

    def summary(self) -> dict:
        return {"rows": self.rows, "sha256": self.sha.hexdigest()}


def well_formed(entry) -> bool:
    """Whether a manifest's table entry has what a restore reads: rows, sha256, [[name, type code], …]."""
    columns = entry.get("columns") if isinstance(entry, dict) else None
    return (isinstance(entry, dict) and isinstance(entry.get("rows"), int) and isinstance(entry.get("sha256"), str)
            and isinstance(columns, list) and bool(columns)
            and all(isinstance(c, list) and len(c) == 2 and all(isinstance(part, str) for part in c) for c in columns))


def open_archive(path) -> tuple[zipfile.ZipFile, dict]:
    """The archive and its manifest, or BackupRefused naming what is wrong (not a zip, not ours)."""
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise BackupRefused(f"备份文件不存在：{path}") from None
    except (zipfile.BadZipFile, OSError, ValueError):
        raise BackupRefused("不是有效的备份文件（文件不完整或已损坏，无法作为 zip 打开）。"
                            "请换一份完整的备份文件。") from None
    try:
        manifest = json.loads(archive.read(MANIFEST))
    except KeyError:
        archive.close()
        raise BackupRefused("该文件不是本产品的备份（缺少 manifest.json）。"
                            "请选择由“flask backup create”生成的备份文件。"
                            ) from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, zlib.error) as error:
        archive.close()
        raise BackupRefused(f"备份清单 manifest.json 已损坏，无法读取（{type(error).__name__}）。"
                            "请换一份完整的备份文件。"
                            ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        archive.close()
        raise BackupRefused("该文件不是本产品的备份（清单格式不符）。请选择由“flask backup create”生成的备份文件。")
    if manifest.get("format_version") != FORMAT_VERSION:
        archive.close()
        raise BackupRefused(f"备份格式版本 {manifest.get('format_version')} 不受支持（本版本读取 {FORMAT_VERSION}）。"
                            "请用生成该备份的版本或更新的版本恢复。")
    return archive, manifest


def read_chunks(archive: zipfile.ZipFile, table: str) -> Iterator[bytes]:
    """A table member's bytes a megabyte at a time (never the whole table in memory)."""
    with archive.open(member(table)) as stream:
        while chunk := stream.read(READ_CHUNK):
            yield chunk


def read_lines(archive: zipfile.ZipFile, table: str) -> Iterator[bytes]:
    """A table member's lines (without their newline), split out of its chunks."""
    rest = b""
    for chunk in read_chunks(archive, table):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def check_member(archive: zipfile.ZipFile, table: str, expected: dict) -> None:
    """Read a table member whole and compare its row count and checksum with the manifest's."""
    digest = Digest()
    try:
        for chunk in read_chunks(archive, table):  # the lines' bytes in a row: the same count and checksum
            digest.rows += chunk.count(b"\n")
            digest.sha.update(chunk)
    except KeyError:
        raise BackupRefused(f"备份文件缺少数据表 {table} 的内容，文件不完整。请换一份完整的备份文件。") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as error:
        raise BackupRefused(f"备份文件中数据表 {table} 的内容已损坏（{type(error).__name__}）。"
                            "请换一份完整的备份文件。") from None
    got = digest.summary()
    if got != {"rows": expected.get("rows"), "sha256": expected.get("sha256")}:
        raise BackupRefused(f"备份文件中数据表 {table} 的校验和与清单不符（清单 {expected.get('rows')} 行，"
                            f"实际 {got['rows']} 行），文件已被改动或损坏。请换一份完整的备份文件。")
