"""RQ job functions. They run inside the app context the worker pushed; each unit of work is one transaction.

A subtask is prepared first (read a staged month, or ask a channel: network, no transaction
open), then its results are written and the subtask finished in one transaction, so a month
lands whole or not at all.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta

from rq import get_current_job
from sqlalchemy import select, update

from channels.etax.container import check_container
from channels.etax.parser import ParsedWorkbook, RowsRejected, parse_workbook
from channels.invoice_types import DOWNLOAD_KINDS
from channels.records import ChannelRejected, Pending, Reasoned, SourceRejected, gc_paused
from jobs import queue, sources
from jobs.staging import DISK_REFUSAL, field_limits, memory_cap, read_month, write_months
from webapp.accounts.settings import error_goods_names
from webapp.background import subtask_job_id
from webapp.batches import (
    NO_REASON,
    add_subtasks,
    raised_values,
    reason_values,
    refresh_batch,
    staged_manifest,
    staging_dir,
    upload_path,
)
from webapp.clock import now
from webapp.extensions import db
from webapp.models import Batch, Subtask
from webapp.pool import refresh_statistics, save_staged
from webapp.pool.month_stats import mark_months_changed, month_stats
from webapp.reconcile import kept_findings, record_sources
from webapp.statuses import BatchStatus, Channel, DataType, Method, Reason, SubtaskStatus
from webapp.summary import refresh_summaries
from webapp.transactions import fold_log, write_transaction

log = logging.getLogger(__name__)
Finish = Callable[[], tuple[int, int, int]]  # writes a subtask's results; returns (total, success, filtered)
PENDING_RETRY = timedelta(minutes=10)
EXPIRED_SERIAL = "15"  # PROTOCOL.md: 流水号不存在或已过期
MAX_PARSE_ATTEMPTS = 3  # parse jobs that died without an answer before the batch is failed
CHAIN_SECONDS = queue.JOB_TIMEOUT / 2  # a job takes on no further month of its file batch after this long


class Wait(Exception):
    """The subtask may not run yet (乐企 quota, the bureau preparing the data, or its month's invoices
    still syncing): until when, and why as a reason code with its parameters."""

    def __init__(self, until: datetime, reason: Reason, **params):
        super().__init__(reason.text(params))
        self.until, self.values = until, reason_values(reason, **params)


class _Terminated(Exception):
    """The subtask was terminated while it ran: its writes are rolled back."""


def _fail_batch(batch_id: int, reason: dict, rows: list | None = None) -> None:
    """A batch whose input is unusable ends 全部执行失败 with the reason (reason_values; and, for a
    file, every unreadable row for the 错误清单), writing nothing else. The attempt count starts
    again, so a 重试 gets its full share."""
    values = dict(status=BatchStatus.FAILED, **reason, finished_at=now(), parse_attempts=0,
                  error_rows=json.dumps([row.as_dict() for row in rows], ensure_ascii=False) if rows else None)
    with write_transaction():
        db.session.execute(update(Batch).where(Batch.id == batch_id, Batch.status == BatchStatus.PREPROCESSING)
                           .values(**values))


def parse_upload(batch_id: int) -> None:
    """数据预处理: create the month subtasks of the months staged when the file was received
    (jobs.staging); a batch left by an older version holds the upload instead, parsed and staged here.

    A company's file batches run one after another in the order they were created (the later
    file's data is what the pool keeps): this one waits while an earlier one is still active,
    and is started again when that one ends (or by the reconciler).
    """
    batch = db.session.get(Batch, batch_id)
    if batch is None or batch.status != BatchStatus.PREPROCESSING or _earlier_file_batch_active(batch):
        return
    attempt = _count_parse_attempt(batch_id)
    if attempt > MAX_PARSE_ATTEMPTS:
        _fail_batch(batch_id, reason_values(Reason.PARSE_CRASHED, times=MAX_PARSE_ATTEMPTS))
        _start_next_file_batch(batch)
        return
    manifest = staged_manifest(staging_dir(batch))
    if manifest is not None:
        _add_months(batch_id, manifest)
        return
    try:
        with gc_paused():
            parsed = _parse(batch, thorough=attempt > 1)
    except RowsRejected as exc:
        _fail_batch(batch_id, raised_values(exc), exc.rows)
    except SourceRejected as exc:
        _fail_batch(batch_id, raised_values(exc))
    except MemoryError:
        log.exception("parse of batch %s ran out of memory", batch_id)
        _fail_batch(batch_id, reason_values(Reason.PARSE_MEMORY))
    except Exception as exc:  # an unforeseen fault in the file: say so, keep the details in the log
        log.exception("parse of batch %s failed", batch_id)
        _fail_batch(batch_id, reason_values(Reason.FILE_UNREADABLE,
                                            f"文件解析失败，请确认是电子税局导出的原始文件（{type(exc).__name__}）",
                                            error=type(exc).__name__))
    else:
        with gc_paused():
            _stage_months(batch_id, parsed)
        return
    _start_next_file_batch(batch)


def _parse(batch: Batch, *, thorough: bool) -> ParsedWorkbook:
    """Parse under a hard memory limit. After a parse that died, first run the upload's thorough
    checks again (they name a stray far cell or an understated zip) before trying once more."""
    path = upload_path(batch)
    with _memory_limit():
        if thorough:
            check_container(path)
        return parse_workbook(path, batch.tax_id, limits=field_limits(), today=now().date())


def _count_parse_attempt(batch_id: int) -> int:
    """Record that a parse starts, committed before it runs: a parse that kills its process
    still counts, so a file that always crashes fails after MAX_PARSE_ATTEMPTS, never loops."""
    with write_transaction():
        db.session.execute(update(Batch).where(Batch.id == batch_id)
                           .values(parse_attempts=Batch.parse_attempts + 1, error_rows=None))
        return db.session.scalar(select(Batch.parse_attempts).where(Batch.id == batch_id))


@contextmanager
def _memory_limit() -> Iterator[None]:
    """Cap the job process's address space (RLIMIT_AS) while it parses, so no file can take the
    server down: an allocation past the cap fails in this process only. Applied only inside an
    RQ job (a forked work horse, or `import-file --wait` working the queue in its own process, where
    a parse past the cap fails its batch instead of the command); a caller outside a job keeps its
    own limits."""
    if get_current_job() is None:
        yield
        return
    with memory_cap():
        yield


def _earlier_file_batch_active(batch: Batch) -> bool:
    """Whether a file batch of the same company created before this one has still work to do."""
    return db.session.scalar(select(Batch.id).where(
        Batch.company_id == batch.company_id, Batch.method == Method.FILE, Batch.id < batch.id,
        Batch.status.in_(BatchStatus.ACTIVE)).limit(1)) is not None


def _start_next_file_batch(batch: Batch) -> None:
    """When a file batch ends, queue the parse of the company's next file batch waiting for it."""
    waiting = db.session.scalar(select(Batch).where(
        Batch.company_id == batch.company_id, Batch.method == Method.FILE, Batch.id > batch.id,
        Batch.status == BatchStatus.PREPROCESSING).order_by(Batch.id).limit(1))
    if waiting is not None:
        queue.enqueue_parse(waiting)


def _stage_months(batch_id: int, parsed: ParsedWorkbook) -> None:
    """Keep the parsed months on disk, then create one subtask per month."""
    batch = db.session.get(Batch, batch_id)
    try:
        manifest = write_months(staging_dir(batch), parsed)
    except OSError as exc:
        log.exception("staging of batch %s failed", batch_id)
        why = exc.strerror or type(exc).__name__
        _fail_batch(batch_id, reason_values(Reason.DISK_FULL, DISK_REFUSAL.format(why=why), why=why))
        _start_next_file_batch(batch)
        return
    _add_months(batch_id, manifest)


def _add_months(batch_id: int, manifest: dict) -> None:
    """One subtask per staged month, in one step with the batch leaving 数据预处理; then queue them."""
    with write_transaction():
        claimed = db.session.execute(update(Batch)
                                     .where(Batch.id == batch_id, Batch.status == BatchStatus.PREPROCESSING)
                                     .values(status=BatchStatus.PENDING, kinds=manifest["kinds"], parse_attempts=0,
                                             note="；".join(manifest["warnings"]) or None))
        if claimed.rowcount == 0:
            return
        batch = db.session.get(Batch, batch_id)
        subtasks = add_subtasks(batch, manifest["counts"])
        refresh_batch(batch_id)
    upload_path(batch).unlink(missing_ok=True)  # the staged months now hold everything the batch needs
    queue.enqueue_subtasks(subtasks, in_process=True)  # rows staged at receipt, written: no horse needed


def _staged_file(subtask: Subtask) -> Finish:
    """A file import's month, staged when the file was received (or by its parse)."""
    path = staging_dir(subtask.batch) / f"{subtask.period}.staged"
    if not path.exists():
        raise SourceRejected(Reason.STAGED_MISSING.text(), reason=Reason.STAGED_MISSING)
    return _saver(subtask, read_month(path))


def _saver(subtask: Subtask, staged) -> Finish:
    """Write staged invoices to the pool as this subtask's results, and note for 来源核对 that its
    source delivered them, in the one transaction of the month (webapp.reconcile.record_sources)."""
    source, batch_id = subtask.source, subtask.batch_id

    def finish():
        saved, dropped = save_staged(staged, source=source, batch_id=batch_id, error_goods=error_goods_names())
        record_sources(staged, source=source, batch_id=batch_id)
        return len(staged), saved, dropped
    return finish


def _quota_wait(day: date, kinds: list[str] | None = None) -> Wait:
    """Wait for the 乐企 quota until `day`; `kinds` names the types left for then when others ran."""
    return Wait(datetime.combine(day, datetime.min.time()), Reason.QUOTA_WAIT, kinds="、".join(kinds or ()),
                day=f"{day:%Y-%m-%d}")


def _download(subtask: Subtask) -> Finish:
    """税局下载 of one month: 乐企 applies within each type's quota, then what it may is fetched.

    Types whose quota is spent wait alone: the month writes the other types now and goes on
    waiting for the rest (the finish carries that wait), counting on from what it wrote before.
    """
    batch, serials, wait_day = subtask.batch, None, None
    before = (subtask.total, subtask.success, subtask.filtered_lines)
    if batch.channel == Channel.LEQI:
        serials, refused, wait_day = sources.leqi_applications(batch, subtask, now())
        if not serials and wait_day:
            raise _quota_wait(wait_day)
    try:
        staged = sources.download(batch, subtask, serials)
    except Pending:
        raise Wait(now() + PENDING_RETRY, Reason.DATA_PREPARING, channel=Channel(batch.channel).label) from None
    except ChannelRejected as exc:
        if batch.channel == Channel.RPA:
            sources.forget_rpa_task(subtask)
        elif exc.code == EXPIRED_SERIAL:
            sources.forget_serials(subtask)
            raise SourceRejected(Reason.SERIAL_EXPIRED.text(), reason=Reason.SERIAL_EXPIRED) from exc
        raise
    save = _saver(subtask, staged)

    def finish():
        sources.mark_fetched(subtask)
        total, success, filtered = save()
        return total + before[0], success + before[1], filtered + before[2]
    if wait_day:
        finish.wait = _quota_wait(wait_day, [DOWNLOAD_KINDS.get(c, c) for c in refused])
    return finish


def _usage(subtask: Subtask) -> Finish:
    """发票用途状态 of one month's positive invoices, after that month's invoices have synced."""
    batch = subtask.batch
    if sources.invoices_still_syncing(batch, subtask):
        raise Wait(now() + timedelta(minutes=1), Reason.USAGE_WAIT)
    queries = sources.usage_queries(batch, subtask)
    statuses = sources.query_usage(batch, queries)

    def finish():
        at = now()
        updated = sources.save_usage(batch.channel, statuses, at)
        if updated:  # the coverage grid's usage figures of the month are kept (webapp.pool.month_stats)
            mark_months_changed(db.session.connection(), {(batch.tax_id, subtask.period)})
        sources.record_unanswered(subtask.id, queries, statuses, at)
        return len(queries), updated, 0
    return finish


def _prepare(subtask: Subtask) -> Finish:
    """What the subtask does, by source and data type; network work happens here, outside any transaction."""
    if subtask.batch.method == Method.FILE:
        return _staged_file(subtask)
    return _usage(subtask) if subtask.batch.data_type == DataType.USAGE else _download(subtask)


def _set_subtask(subtask_id: int, from_status: str, **values) -> bool:
    """Move a subtask on only from the status we expect (a terminated one stays terminated)."""
    result = db.session.execute(update(Subtask).where(Subtask.id == subtask_id, Subtask.status == from_status)
                                .values(**values))
    return result.rowcount == 1


def _claim(subtask_id: int) -> int | None:
    """pending → running; the batch id, or None when the subtask is not ours to run. The month records the
    job that runs it (its own, or the job that took it on: run_subtask), so the reconciler watches that job."""
    job = get_current_job()
    ours = {"job_id": job.id} if job is not None else {}
    with write_transaction():
        subtask = db.session.get(Subtask, subtask_id)
        if subtask is None or not _set_subtask(subtask_id, SubtaskStatus.PENDING, status=SubtaskStatus.RUNNING,
                                               started_at=now(), finished_at=None, not_before=None, **NO_REASON,
                                               **ours):
            return None
        refresh_batch(subtask.batch_id)
        return subtask.batch_id


def _end(subtask_id: int, batch_id: int, **values) -> None:
    """Record how a running subtask ended, and its batch's new status (a file batch that thereby
    ends lets the company's next file batch start)."""
    with write_transaction():
        _set_subtask(subtask_id, SubtaskStatus.RUNNING, **values)
        batch = refresh_batch(batch_id)
    if batch.status in BatchStatus.FINISHED:  # e.g. 部分成功: the months written before this one
        _after_batch(batch)


def run_subtask(subtask_id: int) -> None:
    """Run one month: all of it in one transaction, or nothing and a clear reason.

    A file batch's job then takes on the batch's next pending month, and so on (for at most CHAIN_SECONDS):
    its rows are staged on disk already, and a job of its own per month cost the queue's bookkeeping
    between two months (docs/performance.md, The live import). Each month is still claimed, written and
    ended on its own; the months' own jobs find them taken and end at once."""
    until = time.monotonic() + CHAIN_SECONDS
    while (batch_id := _claim(subtask_id)) is not None:
        _run_claimed(subtask_id, batch_id)
        if time.monotonic() > until or (subtask_id := _next_file_month(batch_id)) is None:
            return


def _next_file_month(batch_id: int) -> int | None:
    """The first month of a file batch still pending (None for a download or usage batch: their months
    wait for the bureau, each in its own job, so that 终止 can stop it)."""
    return db.session.scalar(select(Subtask.id).join(Batch).where(
        Subtask.batch_id == batch_id, Subtask.status == SubtaskStatus.PENDING, Batch.method == Method.FILE)
        .order_by(Subtask.period).limit(1))


def _run_claimed(subtask_id: int, batch_id: int) -> None:
    """Run a month claimed by this job; on its batch's end, what follows the batch (its figures, the
    company's next file batch, the staged files' removal)."""
    try:
        with gc_paused():  # a month's rows hold no cycles, and are let go before the collector runs again
            batch = _run_month(subtask_id, batch_id)
    except _Terminated:
        return
    except Wait as wait:
        _end(subtask_id, batch_id, status=SubtaskStatus.WAITING, not_before=wait.until, started_at=None, **wait.values)
        return
    except Reasoned as exc:
        _end(subtask_id, batch_id, status=SubtaskStatus.FAILED, finished_at=now(), **raised_values(exc))
        return
    except Exception as exc:
        log.exception("subtask %s failed", subtask_id)
        _end(subtask_id, batch_id, status=SubtaskStatus.FAILED, finished_at=now(), **reason_values(
            Reason.INTERNAL_ERROR, f"{Reason.INTERNAL_ERROR.text()}（内部错误 {type(exc).__name__}，详情见服务器日志）",
            error=type(exc).__name__))
        return
    if batch.status in BatchStatus.FINISHED:
        _after_batch(batch)


def _after_batch(batch: Batch) -> None:
    """What follows a batch's end at once: the company's next file batch, the staged months of a file
    that succeeded; the figures follow in a job of their own (batch_figures), so nothing waiting for
    the batch's end (`import-file --wait`, the company's next file) waits for them too."""
    if batch.method == Method.FILE:
        _start_next_file_batch(batch)
        if batch.status == BatchStatus.SUCCEEDED:
            shutil.rmtree(staging_dir(batch), ignore_errors=True)
    queue.enqueue_batch_figures(batch)


def batch_figures(batch_id: int) -> None:
    """After a batch has ended: the planner's statistics, the month figures of its company, then the
    write-ahead log folded back so the next batch's commits start on a short one. Skipped, they only
    cost the first views of the pages the time to compute the figures themselves."""
    batch = db.session.get(Batch, batch_id)
    if batch is None:
        return
    refresh_statistics()
    _precompute_month_figures(batch.tax_id)
    fold_log()


def _run_month(subtask_id: int, batch_id: int) -> Batch:
    """Prepare the month (network, no transaction open), then write it and end the subtask in one
    transaction; returns the batch as it now stands."""
    finish = _prepare(db.session.get(Subtask, subtask_id))
    with write_transaction():
        total, success, filtered = finish()
        wait = getattr(finish, "wait", None)  # part of the month done, the rest waits
        ended = (dict(status=SubtaskStatus.SUCCEEDED, finished_at=now()) if wait is None else
                 dict(status=SubtaskStatus.WAITING, not_before=wait.until, started_at=None, **wait.values))
        if not _set_subtask(subtask_id, SubtaskStatus.RUNNING, total=total, success=success, filtered_lines=filtered,
                            **ended):
            raise _Terminated()
        return refresh_batch(batch_id)


def _precompute_month_figures(tax_id: str) -> None:
    """销项汇总, the per-month figures of 同步覆盖 and pool stats, and 来源核对's findings (同步覆盖's
    来源差异 marks) for the months this batch touched,
    computed now rather than at the first view (docs/performance.md).

    The batch has already ended: a failure here only leaves the first view to compute them itself.
    """
    try:
        refresh_summaries()
        month_stats(tax_id)
        kept_findings(tax_id)
    except Exception:
        db.session.rollback()
        log.exception("month figures precompute failed; the pages will compute them when viewed")


def release_waiting(at: datetime) -> list[Subtask]:
    """Waiting subtasks whose time has come go back to pending; the caller enqueues them."""
    with write_transaction():
        due = []
        for subtask in db.session.scalars(select(Subtask)
                                          .where(Subtask.status == SubtaskStatus.WAITING,
                                                 Subtask.not_before <= at)).all():
            released = db.session.execute(update(Subtask)
                                          .where(Subtask.id == subtask.id, Subtask.status == SubtaskStatus.WAITING)
                                          .values(status=SubtaskStatus.PENDING, not_before=None,
                                                  job_id=subtask_job_id(subtask)))
            if released.rowcount:  # not terminated meanwhile
                due.append(subtask)
        for batch_id in {s.batch_id for s in due}:
            refresh_batch(batch_id)
    return due
