"""RQ job functions. They run inside the app context the worker pushed; each unit of work is one transaction."""
from __future__ import annotations

import logging
import marshal
import shutil
from datetime import datetime

from sqlalchemy import update

from channels import etax_file
from channels.records import SourceRejected
from webapp.batches import add_subtasks, refresh_batch, staging_dir, upload_path
from webapp.extensions import db
from webapp.models import Batch, Subtask
from webapp.pool import StagedInvoice, save_staged, stage
from webapp.settings import error_goods_names
from webapp.transactions import write_transaction

from . import queue

log = logging.getLogger(__name__)


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
    folder.mkdir(parents=True, exist_ok=True)
    for period, records in parsed.invoices_by_month.items():
        (folder / f"{period}.staged").write_bytes(marshal.dumps(stage(records)))
    with write_transaction():
        claimed = db.session.execute(update(Batch).where(Batch.id == batch_id, Batch.status == "preprocessing")
                                     .values(status="pending", kinds="、".join(parsed.kinds)))
        if claimed.rowcount == 0:
            return
        batch = db.session.get(Batch, batch_id)
        subtasks = add_subtasks(batch, {p: len(r) for p, r in parsed.invoices_by_month.items()})
        refresh_batch(batch_id)
    for subtask in subtasks:
        queue.enqueue_subtask(subtask)


def _staged_for(subtask: Subtask) -> list[StagedInvoice]:
    """The invoices a subtask writes, from whichever source its batch uses."""
    batch = subtask.batch
    if batch.method == "file":
        path = staging_dir(batch) / f"{subtask.period}.staged"
        if not path.exists():
            raise SourceRejected("该月份的解析数据已不存在，请重新导入文件")
        return marshal.loads(path.read_bytes())
    raise SourceRejected("税局下载通道尚未开通")


def _set_subtask(subtask_id: int, from_status: str, **values) -> bool:
    """Move a subtask on only from the status we expect (a terminated one stays terminated)."""
    result = db.session.execute(update(Subtask).where(Subtask.id == subtask_id, Subtask.status == from_status).values(**values))
    return result.rowcount == 1


def run_subtask(subtask_id: int) -> None:
    """Write one month to the pool: all of it in one transaction, or nothing and a clear reason."""
    with write_transaction():
        subtask = db.session.get(Subtask, subtask_id)
        if subtask is None or not _set_subtask(subtask_id, "pending", status="running", started_at=datetime.now(),
                                               finished_at=None, error=None):
            return
        batch_id = subtask.batch_id
        refresh_batch(batch_id)
    try:
        with write_transaction():
            subtask = db.session.get(Subtask, subtask_id)
            staged = _staged_for(subtask)
            saved, dropped = save_staged(staged, source=subtask.source, batch_id=batch_id, error_goods=error_goods_names())
            if not _set_subtask(subtask_id, "running", status="succeeded", total=len(staged), success=saved,
                                filtered_lines=dropped, finished_at=datetime.now()):
                raise _Terminated()
            batch = refresh_batch(batch_id)
    except _Terminated:
        return
    except Exception as exc:
        message = str(exc) if isinstance(exc, SourceRejected) else f"内部错误：{type(exc).__name__}，详情见服务器日志"
        if not isinstance(exc, SourceRejected):
            log.exception("subtask %s failed", subtask_id)
        with write_transaction():
            _set_subtask(subtask_id, "running", status="failed", success=0, error=message, finished_at=datetime.now())
            refresh_batch(batch_id)
        return
    if batch.status == "succeeded" and batch.method == "file":
        shutil.rmtree(staging_dir(batch), ignore_errors=True)


class _Terminated(Exception):
    """The subtask was terminated while it ran: its writes are rolled back."""
