"""Commands for 导入批次: `import-file`, `download`, `batch show`; `--wait` blocks until the batch ends."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import click
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import select

from channels.etax.container import check_file_name
from channels.etax.parser import RowsRejected
from channels.invoice_types import DOWNLOAD_KINDS
from channels.months import months_between
from channels.records import SourceRejected
from webapp.background import background
from webapp.batches import (
    batch_json,
    check_months,
    create_download_batches,
    create_file_batch,
    receive_file,
)
from webapp.batches.facts import row_reason
from webapp.cli import acting_company, acting_user, fail, print_json
from webapp.clock import now
from webapp.extensions import db
from webapp.models import Batch
from webapp.params import BATCH_NO, MONTH, TAX_ID, TEXT, Choice
from webapp.statuses import BatchStatus, Channel, DataType, SubtaskStatus


def batch_by_no(batch_no: str) -> Batch:
    """The batch of that number, or the command fails saying so."""
    batch = db.session.scalar(select(Batch).filter_by(batch_no=batch_no))
    if batch is None:
        fail(f"导入批次不存在：{batch_no}")
    return batch


def _wait(batch_no: str) -> Batch:
    """Block until the batch ends, or only waits for a later day (乐企 quota) remain; the queue is
    worked in this process when no worker is up."""
    def over() -> bool:
        db.session.rollback()  # see other processes' commits
        batch = batch_by_no(batch_no)
        statuses = {s.status for s in batch.subtasks}
        return batch.status in BatchStatus.FINISHED or bool(
            SubtaskStatus.WAITING in statuses and not statuses & {SubtaskStatus.PENDING, SubtaskStatus.RUNNING}
            and min(s.not_before for s in batch.subtasks
                    if s.status == SubtaskStatus.WAITING) > now() + timedelta(minutes=5))

    background().work_until(over)
    return batch_by_no(batch_no)


@click.command("import-file")
@with_appcontext
@click.option("--tax-id", required=True, type=TAX_ID)
@click.option("--file", "path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--as", "username", required=True, type=TEXT)
@click.option("--wait", is_flag=True, help="block until the batch ends")
def import_file(tax_id, path, username, wait):
    """导入电子税局文件 for one company, with the import dialog's rules: the file is parsed first, and
    a refused one makes no batch (a file with unreadable rows prints them all, as the 错误清单 does)."""
    user = acting_user(username)
    company = acting_company(user, tax_id)
    if not path.exists():
        fail(f"文件不存在：{path}")
    try:
        check_file_name(path.name)
        batch = create_file_batch(user, company, receive_file(company, path), path.name)
    except RowsRejected as exc:
        print_json({"file_name": path.name, "error_code": exc.reason, "error": str(exc), "bad_row_total": exc.total,
                    "bad_rows": [row.as_dict() for row in exc.rows]})
        fail(str(exc))
    except SourceRejected as exc:  # DiskFull too: 磁盘空间不足, nothing written
        fail(str(exc))
    if wait:
        batch = _wait(batch.batch_no)
    print_json(batch_json(batch))
    if batch.status == BatchStatus.FAILED:
        fail(row_reason(batch)[0] or "导入失败")


@click.command("download")
@with_appcontext
@click.option("--tax-id", "tax_ids", required=True, multiple=True, type=TAX_ID, help="repeatable: one batch per tax ID")
@click.option("--channel", type=Choice(Channel.codes(), "下载通道"), required=True)
@click.option("--from", "first", required=True, type=MONTH)
@click.option("--to", "last", required=True, type=MONTH)
@click.option("--type", "types", multiple=True, type=Choice(DOWNLOAD_KINDS, "发票种类"),
              help="fplx code; default all six")
@click.option("--data", "data", type=Choice([*DataType.codes(), "both"], "数据类型"), default=DataType.INVOICES.value,
              show_default=True)
@click.option("--as", "username", required=True, type=TEXT)
@click.option("--wait", is_flag=True, help="block until the batches end")
def download(tax_ids, channel, first, last, types, data, username, wait):
    """税局下载 through 乐企 or RPA, with the import dialog's rules; prints the batches."""
    user = acting_user(username)
    companies = [acting_company(user, tax_id) for tax_id in tax_ids]
    try:
        check_months(first, last, now().date())
    except ValueError as exc:
        fail(str(exc))
    batches = []
    try:
        for data_type in (DataType.codes() if data == "both" else (data,)):
            batches += create_download_batches(user, companies, channel=channel, data_type=data_type,
                                               months=months_between(first, last),
                                               type_codes=list(types or DOWNLOAD_KINDS))
    except SourceRejected as exc:
        fail(str(exc))
    numbers = [b.batch_no for b in batches]
    if wait:
        for number in numbers:  # a job run meanwhile may end this session: each batch is read again after
            _wait(number)
    batches = [batch_by_no(number) for number in numbers]
    print_json([batch_json(batch) for batch in batches])
    if any(b.status == BatchStatus.FAILED for b in batches):
        raise click.exceptions.Exit(1)


batch_group = AppGroup("batch", help="导入批次")


@batch_group.command("show")
@click.argument("batch_no", type=BATCH_NO)
def batch_show(batch_no):
    """One batch with its subtasks."""
    print_json(batch_json(batch_by_no(batch_no)))


COMMANDS = (import_file, download, batch_group)
