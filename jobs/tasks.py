"""RQ job functions. They run inside the app context the worker pushed; each unit of work is one transaction.

A subtask is prepared first (read a staged month, or ask a channel: network, no transaction
open), then its results are written and the subtask finished in one transaction, so a month
lands whole or not at all.
"""
from __future__ import annotations

import logging
import marshal
import shutil
from collections.abc import Callable
from datetime import date, datetime, timedelta

from sqlalchemy import select, update

from channels import etax_file
from channels.http import ChannelRejected, Pending
from channels.records import SourceRejected, TransientError
from webapp.batches import FINISHED_BATCH, add_subtasks, refresh_batch, staging_dir, upload_path
from webapp.clock import now
from webapp.extensions import db
from webapp.models import Batch, Subtask
from webapp.pool import refresh_statistics, save_staged, stage
from webapp.settings import error_goods_names
from webapp.transactions import write_transaction

from . import queue, sources

log = logging.getLogger(__name__)
Finish = Callable[[], tuple[int, int, int]]  # writes a subtask's results; returns (total, success, filtered)
PENDING_RETRY = timedelta(minutes=10)
EXPIRED_SERIAL = "15"  # PROTOCOL.md: 流水号不存在或已过期


class Wait(Exception):
    """The subtask may not run yet (乐企 quota, or its month's invoices still syncing)."""

    def __init__(self, until: datetime, message: str):
        super().__init__(message)
        self.until = until


class _Terminated(Exception):
    """The subtask was terminated while it ran: its writes are rolled back."""


def _fail_batch(batch_id: int, message: str) -> None:
    """A batch whose input is unusable ends 全部执行失败 with the reason, writing nothing else."""
    with write_transaction():
        db.session.execute(update(Batch).where(Batch.id == batch_id, Batch.status == "preprocessing")
                           .values(status="failed", error=message, finished_at=datetime.now()))


def parse_upload(batch_id: int) -> None:
    """数据预处理: parse the uploaded workbook, stage it month by month, create the month subtasks."""
    batch = db.session.get(Batch, batch_id)
    if batch is None or batch.status != "preprocessing":
        return  # terminated meanwhile
    try:
        parsed = etax_file.parse_workbook(upload_path(batch), batch.tax_id)
    except SourceRejected as exc:
        _fail_batch(batch_id, str(exc))
        return
    except Exception as exc:  # an unforeseen fault in the file: say so, keep the details in the log
        log.exception("parse of batch %s failed", batch_id)
        _fail_batch(batch_id, f"文件解析失败，请确认是电子税局导出的原始文件（{type(exc).__name__}）")
        return
    folder = staging_dir(batch)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for period, records in parsed.invoices_by_month.items():
            (folder / f"{period}.staged").write_bytes(marshal.dumps(stage(records)))
    except OSError as exc:
        log.exception("staging of batch %s failed", batch_id)
        _fail_batch(batch_id, f"解析结果无法写入服务器磁盘（{exc.strerror or type(exc).__name__}），请联系管理员后重试")
        return
    with write_transaction():
        claimed = db.session.execute(update(Batch).where(Batch.id == batch_id, Batch.status == "preprocessing")
                                     .values(status="pending", kinds="、".join(parsed.kinds)))
        if claimed.rowcount == 0:
            return
        batch = db.session.get(Batch, batch_id)
        subtasks = add_subtasks(batch, {p: len(r) for p, r in parsed.invoices_by_month.items()})
        refresh_batch(batch_id)
    upload_path(batch).unlink(missing_ok=True)  # the staged months now hold everything the batch needs
    for subtask in subtasks:
        queue.enqueue_subtask(subtask)


def _staged_file(subtask: Subtask) -> Finish:
    """A file import's month, staged by the parse."""
    path = staging_dir(subtask.batch) / f"{subtask.period}.staged"
    if not path.exists():
        raise SourceRejected("该月份的解析数据已不存在，请重新导入文件")
    return _saver(subtask, marshal.loads(path.read_bytes()))


def _saver(subtask: Subtask, staged) -> Finish:
    """Write staged invoices to the pool as this subtask's results."""
    source, batch_id = subtask.source, subtask.batch_id

    def finish():
        saved, dropped = save_staged(staged, source=source, batch_id=batch_id, error_goods=error_goods_names())
        return len(staged), saved, dropped
    return finish


def _download(subtask: Subtask) -> Finish:
    """税局下载 of one month: 乐企 applies within its quota (or waits), then every type is fetched."""
    batch, serials = subtask.batch, None
    if batch.channel == "leqi":
        serials = sources.leqi_applications(batch, subtask, now())
        if isinstance(serials, date):
            raise Wait(datetime.combine(serials, datetime.min.time()),
                       f"乐企额度：已达下载次数限制，将于 {serials:%Y-%m-%d} 自动执行")
    try:
        records = sources.download(batch, subtask, serials)
    except Pending:
        channel = "乐企" if batch.channel == "leqi" else "RPA"
        raise Wait(now() + PENDING_RETRY, f"{channel}正在准备下载数据，稍后自动再次获取（不占用下载次数）") from None
    except ChannelRejected as exc:
        if batch.channel == "rpa":
            sources.forget_rpa_task(subtask)
        elif exc.code == EXPIRED_SERIAL:
            sources.forget_serials(subtask)
            raise SourceRejected("乐企下载流水号已过期（申请结果只保留 7 天），请点击重试重新申请") from exc
        raise
    save = _saver(subtask, stage(records))

    def finish():
        sources.mark_fetched(subtask)
        return save()
    return finish


def _usage(subtask: Subtask) -> Finish:
    """发票用途状态 of one month's positive invoices, after that month's invoices have synced."""
    batch = subtask.batch
    if sources.invoices_still_syncing(batch, subtask):
        raise Wait(now() + timedelta(minutes=1), "等待同月发票数据同步完成后自动执行")
    queries = sources.usage_queries(batch, subtask)
    statuses = sources.query_usage(batch, queries)

    def finish():
        at = now()
        updated = sources.save_usage(batch.channel, statuses, at)
        sources.record_unanswered(subtask.id, queries, statuses, at)
        return len(queries), updated, 0
    return finish


def _prepare(subtask: Subtask) -> Finish:
    """What the subtask does, by source and data type; network work happens here, outside any transaction."""
    if subtask.batch.method == "file":
        return _staged_file(subtask)
    return _usage(subtask) if subtask.batch.data_type == "usage" else _download(subtask)


def _set_subtask(subtask_id: int, from_status: str, **values) -> bool:
    """Move a subtask on only from the status we expect (a terminated one stays terminated)."""
    result = db.session.execute(update(Subtask).where(Subtask.id == subtask_id, Subtask.status == from_status).values(**values))
    return result.rowcount == 1


def _claim(subtask_id: int) -> int | None:
    """pending → running; the batch id, or None when the subtask is not ours to run."""
    with write_transaction():
        subtask = db.session.get(Subtask, subtask_id)
        if subtask is None or not _set_subtask(subtask_id, "pending", status="running", started_at=datetime.now(),
                                               finished_at=None, error=None, not_before=None):
            return None
        refresh_batch(subtask.batch_id)
        return subtask.batch_id


def _end(subtask_id: int, batch_id: int, **values) -> None:
    """Record how a running subtask ended, and its batch's new status."""
    with write_transaction():
        _set_subtask(subtask_id, "running", **values)
        refresh_batch(batch_id)


def run_subtask(subtask_id: int) -> None:
    """Run one month: all of it in one transaction, or nothing and a clear reason."""
    batch_id = _claim(subtask_id)
    if batch_id is None:
        return
    try:
        finish = _prepare(db.session.get(Subtask, subtask_id))
        with write_transaction():
            total, success, filtered = finish()
            if not _set_subtask(subtask_id, "running", status="succeeded", total=total, success=success,
                                filtered_lines=filtered, finished_at=datetime.now()):
                raise _Terminated()
            batch = refresh_batch(batch_id)
    except _Terminated:
        return
    except Wait as wait:
        _end(subtask_id, batch_id, status="waiting", not_before=wait.until, error=str(wait), started_at=None)
        return
    except (SourceRejected, TransientError) as exc:
        _end(subtask_id, batch_id, status="failed", success=0, error=str(exc), finished_at=datetime.now())
        return
    except Exception as exc:
        log.exception("subtask %s failed", subtask_id)
        _end(subtask_id, batch_id, status="failed", success=0, finished_at=datetime.now(),
             error=f"内部错误：{type(exc).__name__}，详情见服务器日志")
        return
    if batch.status in FINISHED_BATCH:
        refresh_statistics()
    if batch.status == "succeeded" and batch.method == "file":
        shutil.rmtree(staging_dir(batch), ignore_errors=True)


def release_waiting(at: datetime) -> list[Subtask]:
    """Waiting subtasks whose time has come go back to pending; the caller enqueues them."""
    with write_transaction():
        due = []
        for subtask in db.session.scalars(select(Subtask).where(Subtask.status == "waiting", Subtask.not_before <= at)).all():
            released = db.session.execute(update(Subtask).where(Subtask.id == subtask.id, Subtask.status == "waiting")
                                          .values(status="pending", not_before=None, job_id=queue.subtask_job_id(subtask)))
            if released.rowcount:  # not terminated meanwhile
                due.append(subtask)
        for batch_id in {s.batch_id for s in due}:
            refresh_batch(batch_id)
    return due
