"""A file import's parse at receipt: in a child process under a memory cap, its months staged on disk.

Why (docs/etax-export.md, What refuses a file): a file refused for unreadable rows is answered where it was
given (the import dialog, `import-file`) with its 错误清单, instead of becoming a 全部执行失败 batch; and a good file
is parsed once: the months staged here are the ones the batch writes (webapp.batches.create_file_batch
moves the folder to the batch, jobs.tasks.parse_upload adopts it). The child keeps the web process
small: a 10 MB export needs some 300 MB while it is parsed, given back when the child ends, and a
file that would need more than PARSE_MEMORY_LIMIT fails in the child only.
"""
from __future__ import annotations

import json
import marshal
import multiprocessing
import resource
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import orjson
from sqlalchemy import String

from channels.etax.halves import SheetHalves
from channels.etax.parser import BadRow, FieldLimits, ParsedWorkbook, RowsRejected, check_upload, parse_workbook
from channels.records import (
    SourceRejected,
    StagedInvoice,
    gc_paused,
    new_invoice_row,
    new_line_row,
    new_staged,
)
from webapp.batches import STAGED_MANIFEST
from webapp.disk import written_atomically
from webapp.models import Invoice, InvoiceLine
from webapp.statuses import Reason

PARSE_MEMORY_LIMIT = 1024**3  # address space a parse may add: a 10 MB export needs about 300 MB
MEMORY_REFUSAL = Reason.PARSE_MEMORY.text()
CRASHED_REFUSAL = ("文件解析进程意外中断（文件可能过大或结构异常），未导入任何数据。"
                   "请确认上传的是电子税局“全量发票查询”导出的原始文件，或缩小开票日期范围分次导出后重新导入")
DISK_REFUSAL = "解析结果无法写入服务器磁盘（{why}），请联系管理员后重试"
STAGED_FORMAT = "invoice-sync staged month, JSON, version 1"  # a month file's first key says what it is
_PRELOADED = ("channels.etax.parser", "jobs.staging")  # imported once by the fork server, not per file


def field_limits() -> FieldLimits:
    """The pool's text column sizes by column, so the parser names a value too long for them
    (PostgreSQL refuses it; SQLite would keep it): one rule on both databases."""
    def sizes(table) -> dict[str, int]:
        return {c.name: c.type.length for c in table.columns if isinstance(c.type, String) and c.type.length}
    return {"invoice": sizes(Invoice.__table__), "line": sizes(InvoiceLine.__table__)}


@contextmanager
def memory_cap() -> Iterator[None]:
    """Cap this process's address space (RLIMIT_AS) at its size now plus PARSE_MEMORY_LIMIT while
    a parse runs, so no file can take the server down: an allocation past the cap fails here only."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space() + PARSE_MEMORY_LIMIT
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _address_space() -> int:
    """This process's current virtual size (VmSize) in bytes."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def write_months(folder: Path, parsed: ParsedWorkbook) -> dict:
    """Keep the parsed months on disk, one file a month (dump_month), then the manifest naming them
    (written last: a folder without one is not a staged file). Returns the manifest."""
    manifest = {"counts": {period: len(staged) for period, staged in parsed.staged_by_month.items()},
                "kinds": parsed.kinds, "warnings": parsed.warnings}
    folder.mkdir(parents=True, exist_ok=True)
    while parsed.staged_by_month:  # month by month from the parse's result to disk, each let go once written
        period, staged = parsed.staged_by_month.popitem()
        with written_atomically(folder / f"{period}.staged") as temp:  # a full disk leaves no partial month
            temp.write_bytes(dump_month(staged))
    with written_atomically(folder / STAGED_MANIFEST) as temp:
        temp.write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    return manifest


def dump_month(staged: list[StagedInvoice]) -> bytes:
    """A month's staged rows as one JSON document: {"format": STAGED_FORMAT, "invoices": [[header,
    [line, …]], …]}, each row an array in channels.records' column order.

    Why JSON (orjson): DATA_DIR may be shared by hosts running different Python versions (docs/deploy.md),
    and a month staged on one may be saved by a worker on another. marshal, used before, is documented to
    change between Python versions; pickle would tie the file to the row classes' import paths. JSON is a
    fixed standard any version reads, its values here are exactly the rows' (text, integers, booleans,
    null), and orjson writes and reads it about as fast as marshal did (docs/performance.md, Rows with names).
    """
    return orjson.dumps({"format": STAGED_FORMAT, "invoices": staged}, default=tuple)  # named rows as arrays


def read_month(path: Path) -> list[StagedInvoice]:
    """A staged month back as named rows (dump_month's document).

    A file staged by a version before the JSON format (marshal) is read as marshal, so imports under way
    across an upgrade on the same host go on; one that cannot be read (another Python version's marshal,
    or a damaged file) is refused (Reason.STAGED_UNREADABLE), and the user imports the file again (saving is
    an upsert: nothing is duplicated).
    """
    data = path.read_bytes()
    try:
        rows = _json_rows(data) if data[:1] == b"{" else marshal.loads(data)
        return [new_staged((new_invoice_row(header), list(map(new_line_row, lines)))) for header, lines in rows]
    except (ValueError, EOFError, TypeError, KeyError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise SourceRejected(Reason.STAGED_UNREADABLE.text(), reason=Reason.STAGED_UNREADABLE) from exc


def _json_rows(data: bytes) -> list:
    """The invoices of a JSON month file, refusing a document that is not one."""
    document = orjson.loads(data)
    if not isinstance(document, dict) or document.get("format") != STAGED_FORMAT:
        raise ValueError("not a staged month")
    return document["invoices"]


def parse_and_stage(path: str, tax_id: str, folder: str, limits: FieldLimits, today: date) -> dict:
    """The child's work: the upload guard, then parse under the memory cap and stage the months. Returns a
    plain verdict (pickled back to the parent): {"manifest"}, {"rows", "total"} for unreadable rows, or
    {"refused"}.

    The guard runs here, not in the web process: it keeps 信息汇总表 in two half workbooks as it inflates
    it, which the parse reads with two readers at once (channels.etax.halves), and its CPU is not the
    web's. They are deleted before the months are written."""
    halves = SheetHalves(Path(folder))
    try:
        with memory_cap(), gc_paused():
            Path(folder).mkdir(parents=True, exist_ok=True)
            check_upload(path, halves)
            parsed = parse_workbook(path, tax_id, limits=limits, today=today, detail_halves=halves.ready)
            halves.discard()
            return {"manifest": write_months(Path(folder), parsed)}
    except RowsRejected as exc:
        return {"rows": [row.as_dict() for row in exc.rows], "total": exc.total}
    except SourceRejected as exc:
        return {"refused": str(exc)}
    except MemoryError:
        return {"refused": MEMORY_REFUSAL}
    except OSError as exc:
        return {"refused": DISK_REFUSAL.format(why=exc.strerror or type(exc).__name__)}
    finally:
        halves.discard()


def _context():
    """Children forked from a small server process that has the parser imported: a fresh child per
    file (its memory goes back when it ends) costs a fork, not an interpreter start; and nothing of
    the web process (threads, database connections) is copied into it."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(_PRELOADED))
    return context


def _child_context():
    """Where this upload's parse child comes from: a process running one thread (`import-file`) forks
    it directly, the parser already imported, sparing the fork server's interpreter start (about 0.4 s
    of a command that imports one file: docs/performance.md, The live import); a fork copies no other
    thread's locks there. A process with threads (the web's waitress processes) uses the fork server."""
    if threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return _context()


def start_parse_server() -> None:
    """Start this process's fork server now (it loads the parser and the models, about half a second
    of CPU), so the first file this web server process receives is parsed as fast as the next ones:
    each waitress process (wsgi.PROCESSES) has a fork server of its own, and the first upload landing
    on a process started it while the user waited (docs/performance.md, The live import)."""
    from multiprocessing import forkserver

    _context()
    forkserver.ensure_running()


def stage_upload(path: Path, tax_id: str, folder: Path, limits: FieldLimits, today: date) -> dict:
    """Parse an upload in a child process and stage its months in `folder`; returns the manifest.

    Refuses as the parse does: RowsRejected naming every unreadable place, SourceRejected otherwise
    (a child that died, e.g. past the memory cap inside the reader, is said so). Nothing is left in
    `folder` when refused.
    """
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=_child_context()) as pool:
            verdict = pool.submit(parse_and_stage, str(path), tax_id, str(folder), limits, today).result()
    except BrokenProcessPool:
        verdict = {"refused": CRASHED_REFUSAL}
    if "manifest" in verdict:
        return verdict["manifest"]
    shutil.rmtree(folder, ignore_errors=True)
    if "rows" in verdict:
        raise RowsRejected([BadRow(**row) for row in verdict["rows"]], verdict["total"])
    raise SourceRejected(verdict["refused"])
