"""导入批次 and their monthly subtasks: creation, derived status, 终止 and 重试."""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from flask import current_app
from sqlalchemy import select, update

from channels.invoice_types import DOWNLOAD_KINDS
from channels.months import month_index, month_of
from channels.records import Reasoned, SourceRejected
from webapp.accounts import audit
from webapp.background import background, parse_job_id, subtask_job_id
from webapp.batches.facts import counts_scope, reason_text
from webapp.clock import now
from webapp.disk import check_room
from webapp.extensions import db
from webapp.models import Batch, Company, Subtask, User
from webapp.statuses import BatchStatus, Channel, DataType, Method, Reason, SubtaskStatus
from webapp.transactions import write_transaction

WAIT_LABELS = {Reason.QUOTA_WAIT: SubtaskStatus.WAITING.label, Reason.USAGE_WAIT: "等待发票数据"}


def subtask_label(subtask: Subtask) -> str:
    """A subtask's status as users read it; a waiting one says what it waits for, by its reason code
    (docs/rules.md, 失败与等待原因): the 乐企 quota (等待额度), a usage month for its invoices
    (等待发票数据), else for the tax bureau to prepare the data (等待税局数据)."""
    if subtask.status != SubtaskStatus.WAITING:
        return SubtaskStatus(subtask.status).label
    return WAIT_LABELS.get(subtask.error_code, "等待税局数据")


NO_REASON = {"error": None, "error_code": None, "error_params": None}  # a month or batch set going again


def reason_values(reason: Reason, detail: str | None = None, **params) -> dict:
    """The columns that say why a batch or a month failed, stopped or waits: the code and its
    parameters, which screens, e-mails and the CLI read (docs/rules.md, 失败与等待原因), and the
    full text for 详情 (the sentence itself when there is no more to tell)."""
    return {"error_code": reason, "error_params": params or None, "error": detail or reason.text(params)}


def raised_values(error: Reasoned) -> dict:
    """reason_values of an error that carries its reason (channels.records.Reasoned), its message kept."""
    return reason_values(Reason(error.reason), str(error), **error.params)


def new_batch_no() -> str:
    """导入批次号: a timestamp and a random code, unique by construction and by constraint."""
    return now().strftime("%Y%m%d%H%M%S") + secrets.token_hex(3).upper()


def derive_status(subtask_statuses: list[str], current: str) -> str:
    """The batch status implied by its subtasks (a batch without subtasks keeps its own)."""
    if not subtask_statuses:
        return current
    if any(s in SubtaskStatus.ACTIVE for s in subtask_statuses):
        waiting_only = all(s in SubtaskStatus.UNSTARTED for s in subtask_statuses)
        return BatchStatus.PENDING if waiting_only else BatchStatus.SYNCING
    if SubtaskStatus.TERMINATED in subtask_statuses:
        return BatchStatus.TERMINATED
    succeeded = subtask_statuses.count(SubtaskStatus.SUCCEEDED)
    if succeeded == len(subtask_statuses):
        return BatchStatus.SUCCEEDED
    return BatchStatus.FAILED if succeeded == 0 else BatchStatus.PARTIAL


def refresh_batch(batch_id: int) -> Batch:
    """Recompute a batch's status and counts from its subtasks, under a row lock.

    Call it after the subtask's own UPDATE in the same transaction, so concurrent workers
    finishing sibling subtasks serialise on the batch row and the last one sees all. The lock is
    FOR NO KEY UPDATE (key_share): each invoice a sibling just wrote holds a KEY SHARE lock on this
    row through invoice.batch_id, and a plain FOR UPDATE waited on it while the sibling waited on
    ours, a deadlock with several workers on PostgreSQL (docs/performance.md, several workers).
    """
    batch = db.session.scalar(select(Batch).where(Batch.id == batch_id).with_for_update(key_share=True)
                              .execution_options(populate_existing=True))
    rows = db.session.execute(
        select(Subtask.status, Subtask.total, Subtask.success, Subtask.filtered_lines)
        .where(Subtask.batch_id == batch_id)
    ).all()
    if rows:
        batch.total = sum(r.total for r in rows)
        batch.success = sum(r.success for r in rows)
        batch.filtered_lines = sum(r.filtered_lines for r in rows)
    status = derive_status([r.status for r in rows], batch.status)
    if status != batch.status or (status in BatchStatus.FINISHED) != (batch.finished_at is not None):
        batch.finished_at = now() if status in BatchStatus.FINISHED else None
    batch.status = status
    return batch


def upload_path(batch: Batch) -> Path:
    """Where a file import keeps its upload, so a failed parse can be retried."""
    return Path(current_app.config["UPLOAD_DIR"]) / f"{batch.batch_no}.xlsx"


def staging_dir(batch: Batch) -> Path:
    """Where a file import keeps its parsed months until each month's subtask has written them."""
    return Path(current_app.config["DATA_DIR"]) / "staging" / batch.batch_no


STAGED_MANIFEST = "manifest.json"  # written last into a staged folder (jobs.staging): its months, kinds, warnings


def staged_manifest(folder: Path) -> dict | None:
    """What a folder of staged months holds (None: it was never staged whole)."""
    path = folder / STAGED_MANIFEST
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def receive_file(company: Company, path: Path) -> Path:
    """Check an uploaded file and parse it now, before any batch exists, so that a file refused for
    any reason (another company's, unreadable rows: RowsRejected) is answered where it was given
    (docs/etax-export.md, What refuses a file). Returns the folder of its staged months, for create_file_batch. Refused
    (DiskFull) before anything is written when DATA_DIR lacks room for the file. The upload guard
    (check_upload) runs in the parse's own process (jobs.staging.parse_and_stage)."""
    check_room(path.stat().st_size)
    folder = Path(current_app.config["DATA_DIR"]) / "staging" / f"received-{secrets.token_hex(8)}"
    background().stage_upload(path, company.tax_id, folder)
    return folder


def create_file_batch(user: User, company: Company, staged: Path, file_name: str) -> Batch:
    """A 导入电子税局文件 batch holding the months staged at receipt (receive_file); its parse job
    turns them into month subtasks once the company's earlier file batches have ended (数据预处理中)."""
    with write_transaction():
        batch = Batch(
            batch_no=new_batch_no(), org_id=user.org_id, company_id=company.id, tax_id=company.tax_id,
            seller_name=company.name, data_type=DataType.INVOICES, method=Method.FILE, status=BatchStatus.PREPROCESSING,
            file_name=file_name, created_by_id=user.id, creator_name=user.username, created_at=now(),
        )
        db.session.add(batch)
        db.session.flush()
        staged.rename(staging_dir(batch))  # same folder: a rename; a rollback leaves it to retention
    background().enqueue_parse(batch, staged=True)
    audit.record("batch.create", batch.batch_no, actor=user, tax_id=company.tax_id, method=Method.FILE, file=file_name)
    return batch


PERIOD_YEARS = 5  # 开票日期只能选择近五年 (docs/rules.md, 导入 dialog): the one home of "five years"


def period_years(today) -> list[int]:
    """The years 开票日期 may fall in, this year first: this year and the four before it."""
    return list(range(today.year, today.year - PERIOD_YEARS, -1))


def period_limits(today) -> tuple[str, str]:
    """开票日期 may go back five years: January of (year − 4) up to the current month."""
    return f"{period_years(today)[-1]}-01", month_of(today)


def check_months(first: str, last: str, today) -> None:
    """开票日期 from `first` to `last` ('YYYY-MM'): in order and inside the last five years, or
    ValueError in Chinese (the import dialog and the `download` command say the same)."""
    lowest, highest = period_limits(today)
    if month_index(first) > month_index(last):
        raise ValueError("起始月份不能晚于截止月份")
    if month_index(first) < month_index(lowest) or month_index(last) > month_index(highest):
        raise ValueError(f"开票日期只能选择近五年：{lowest} 至 {highest}")


def missing_prerequisites(company: Company, channel: str) -> str | None:
    """What a company lacks for a channel, said so the user knows where to set it (None: ready)."""
    missing = []
    if channel == Channel.LEQI:
        if not company.leqi_enabled:
            missing.append("未开通乐企归集能力")
        if company.receipt_channel != "乐企平台":
            missing.append("收票通道未配置为乐企平台")
    elif not company.etax_account:
        missing.append("未配置默认电子税局账号")
    if not missing:
        return None
    return f"{company.name}（{company.tax_id}）{'、'.join(missing)}，请管理员在“系统管理 → 企业信息”中设置"


def check_channel_ready(companies: list[Company], channel: str) -> None:
    """SourceRejected naming every company that lacks what the channel needs (the dialog refuses
    the same way before anything is created)."""
    problems = [p for c in companies if (p := missing_prerequisites(c, channel))]
    if problems:
        raise SourceRejected("；".join(problems))


def usable_channel(company: Company, months: list[str] | None = None) -> str | None:
    """乐企 where the company is set up for it (and, given months, authorised it before them: 乐企 holds
    only invoices issued after that), else RPA where it has an e-tax account, else none."""
    for channel in Channel:
        if missing_prerequisites(company, channel) is None and not (
                channel == Channel.LEQI and months and months_before_leqi(company, months)):
            return channel
    return None


NO_CHANNEL = "该企业既未开通乐企，也未配置默认电子税局账号，无法从税局下载（请管理员在“系统管理 → 企业信息”中设置）"


def months_before_leqi(company: Company, months: list[str]) -> list[str]:
    """The months wholly before the company authorised 乐企: it holds no invoices of theirs."""
    if not company.leqi_since:
        return []
    since = month_index(month_of(company.leqi_since))
    return [m for m in months if month_index(m) < since]


@dataclass
class Note:
    """A reason with its parameters, for a batch's note and, when it leaves nothing to do, its failure."""

    reason: Reason
    params: dict

    def text(self) -> str:
        """The sentence, as the dialog and the batch say it."""
        return self.reason.text(self.params)


def leqi_note(company: Company, skipped: list[str]) -> Note:
    """Why these months are not asked of 乐企 (docs/rules.md, 乐企 authorisation)."""
    return Note(Reason.LEQI_NOT_AUTHORISED, {"since": f"{company.leqi_since:%Y-%m-%d}", "first": skipped[0],
                                             "last": skipped[-1], "count": len(skipped)})


def leqi_refusal(company: Company) -> str:
    """Why 乐企 is refused when every chosen month precedes the company's authorisation: docs/rules.md, 乐企
    authorisation: such a batch would have nothing to fetch."""
    return (f"{company.name}于 {company.leqi_since:%Y-%m-%d} 授权乐企，乐企只能下载此后开具的发票，"
            "所选月份均早于该日期，请改选月份或改用 RPA 通道")


def _leqi_months(company: Company, months: list[str]) -> tuple[list[str], Note | None]:
    """乐企 holds only invoices issued after the company authorised it: earlier months are not asked."""
    skipped = months_before_leqi(company, months)
    if not skipped:
        return months, None
    return [m for m in months if m not in skipped], leqi_note(company, skipped)


def add_download_batches(user: User, companies: list[Company], *, channel: str, data_type: str,
                         months: list[str], type_codes: list[str],
                         creator_name: str | None = None) -> tuple[list[Batch], list[Subtask]]:
    """税局下载 inside the caller's transaction: one batch per company (按税号拆分), one subtask
    per month (按月拆分). Returns the batches and the subtasks to enqueue once committed.

    Refuses with SourceRejected, before anything is written, when a company lacks what the
    channel needs.
    """
    check_channel_ready(companies, channel)
    batches, subtasks = [], []
    for company in companies:
        kept, note = _leqi_months(company,
                                  months) if channel == Channel.LEQI and data_type == DataType.INVOICES else (months,
                                                                                                              None)
        batch = Batch(
            batch_no=new_batch_no(), org_id=user.org_id, company_id=company.id, tax_id=company.tax_id,
            seller_name=company.name, data_type=data_type, method=Method.DOWNLOAD, channel=channel,
            kinds=[DOWNLOAD_KINDS[c] for c in type_codes] or ["全部"], type_codes=list(type_codes),
            period_from=months[0], period_to=months[-1], status=BatchStatus.PENDING, note=note and note.text(),
            created_by_id=user.id, creator_name=creator_name or user.username, created_at=now(),
            **(NO_REASON if kept else reason_values(note.reason, **note.params)),
        )
        db.session.add(batch)
        db.session.flush()
        subtasks += add_subtasks(batch, {month: 0 for month in kept})
        if not kept:
            batch.status, batch.finished_at = BatchStatus.FAILED, now()
        batches.append(batch)
    return batches, subtasks


def create_download_batches(user: User, companies: list[Company], **options) -> list[Batch]:
    """税局下载 as one unit of work (see add_download_batches); returns the batches, queued."""
    with write_transaction():
        batches, subtasks = add_download_batches(user, companies, **options)
    background().enqueue_subtasks(subtasks)
    for batch in batches:
        audit.record("batch.create", batch.batch_no, actor=user, tax_id=batch.tax_id, method=Method.DOWNLOAD,
                     channel=batch.channel, data_type=batch.data_type,
                     periods=f"{batch.period_from}～{batch.period_to}")
    return batches


def add_subtasks(batch: Batch, totals_by_period: dict[str, int]) -> list[Subtask]:
    """按月拆分: one pending subtask per month, its total known in advance where it is."""
    subtasks = [Subtask(batch_id=batch.id, period=period, total=total, status=SubtaskStatus.PENDING)
                for period, total in sorted(totals_by_period.items())]
    db.session.add_all(subtasks)
    db.session.flush()
    for subtask in subtasks:
        subtask.job_id = subtask_job_id(subtask)
    return subtasks


def _active_job_ids(batches: list[Batch]) -> list[str]:
    """The RQ jobs doing or about to do the batches' work: parses and active subtasks."""
    ids = [parse_job_id(b) for b in batches if b.status == BatchStatus.PREPROCESSING]
    return ids + [s.job_id for b in batches for s in b.subtasks if s.status in SubtaskStatus.ACTIVE and s.job_id]


STOPPED = reason_values(Reason.TERMINATED)


def terminate(batches: list[Batch]) -> dict:
    """终止: stop the batches' pending and running subtasks (and a parse still under way).

    A file batch keeps its upload and staged months, so 重试 can resume it later.

    Running jobs are stopped first, so their transactions roll back and free the database,
    then the rows are marked; jobs a worker picked up in between are stopped once more, and
    in any case cannot commit, since they only finish a subtask that is still 'running'.
    """
    job_ids = _active_job_ids(batches)
    for job_id in job_ids:
        background().stop_job(job_id)
    at, stopped, batches_hit = now(), 0, 0
    with write_transaction():
        for batch in batches:
            parse = db.session.execute(update(Batch)
                                       .where(Batch.id == batch.id, Batch.status == BatchStatus.PREPROCESSING)
                                       .values(status=BatchStatus.TERMINATED, finished_at=at, **STOPPED))
            hit = parse.rowcount == 1
            stopped_now = db.session.execute(
                update(Subtask).where(Subtask.batch_id == batch.id, Subtask.status.in_(SubtaskStatus.ACTIVE))
                .values(status=SubtaskStatus.TERMINATED, finished_at=at, **STOPPED)).rowcount
            stopped += stopped_now
            hit = hit or stopped_now > 0
            refresh_batch(batch.id)
            batches_hit += hit
    for job_id in job_ids:
        background().stop_job(job_id)
    # a terminated file batch keeps its upload and staged months: 重试 resumes it
    return {"batches": batches_hit, "subtasks": stopped}


def _reparse(batch: Batch) -> bool:
    """A file batch that failed or was stopped before its months were made, whose staged months
    (or, from an older version, its upload) are still kept."""
    return (not batch.subtasks and batch.status in BatchStatus.RETRYABLE and batch.method == Method.FILE
            and ((staging_dir(batch) / STAGED_MANIFEST).exists() or upload_path(batch).exists()))


def retry_plan(batches: list[Batch]) -> list[tuple[Batch, bool, list[Subtask]]]:
    """What 重试 would run, per batch: whether it re-parses its file, and which months run again.

    Batches with nothing to run are left out, so the confirmation lists only real work.
    """
    plan = []
    for batch in batches:
        subtasks = [s for s in batch.subtasks if s.status in SubtaskStatus.RETRYABLE]
        if subtasks or _reparse(batch):
            plan.append((batch, _reparse(batch), subtasks))
    return plan


def _clear_reason(row: Batch | Subtask) -> None:
    """A batch or month set going again says no reason any more."""
    for column, value in NO_REASON.items():
        setattr(row, column, value)


def retry(batches: list[Batch]) -> dict:
    """重试: run the batches' failed and terminated subtasks again (a failed or terminated parse
    re-parses the kept upload). Counts already written (a month's types that were fetched before
    it waited) are kept, since those types are not fetched again."""
    retried, parses = [], []
    with write_transaction():
        for batch, reparse, subtasks in retry_plan(batches):
            if reparse:
                batch.status, batch.finished_at = BatchStatus.PREPROCESSING, None
                _clear_reason(batch)
                parses.append(batch)
            for subtask in subtasks:
                subtask.status = SubtaskStatus.PENDING
                _clear_reason(subtask)
                subtask.started_at = subtask.finished_at = subtask.not_before = None
                subtask.attempts += 1
                subtask.job_id = subtask_job_id(subtask)
                retried.append(subtask)
            db.session.flush()
            refresh_batch(batch.id)
    for batch in parses:
        background().enqueue_parse(batch)
    background().enqueue_subtasks(retried)
    return {"subtasks": len(retried), "parses": len(parses)}


def _reason_json(row: Batch | Subtask) -> dict:
    """Why a batch or a month failed or waits, for the CLI: the code and its parameters to branch on,
    the sentence a user reads, and the full stored text."""
    reason, _detail = reason_text(row.error_code, row.error_params, row.error)
    return {"error_code": row.error_code, "error_params": row.error_params, "reason": reason or None,
            "error": row.error}


def batch_json(batch: Batch) -> dict:
    """A batch as the CLI prints it; `counts_scope` says which months 总份数 and 成功份数 leave out."""
    unfetched = sum(s.status in SubtaskStatus.RETRYABLE for s in batch.subtasks)
    return {
        "batch_no": batch.batch_no, "tax_id": batch.tax_id, "seller_name": batch.seller_name,
        "status": batch.status, "status_label": BatchStatus(batch.status).label, "method": batch.method,
        "channel": batch.channel, "data_type": batch.data_type, "kinds": batch.kinds,
        "total": batch.total, "success": batch.success, "filtered_lines": batch.filtered_lines,
        "months_not_fetched": unfetched, "counts_scope": counts_scope(unfetched),
        **_reason_json(batch), "note": batch.note, "file_name": batch.file_name, "creator": batch.creator_name,
        "created_at": batch.created_at.isoformat(sep=" ", timespec="seconds"),
        "subtasks": [{
            "period": s.period, "status": s.status, "status_label": subtask_label(s), "total": s.total,
            "success": s.success, "filtered_lines": s.filtered_lines, **_reason_json(s), "attempts": s.attempts,
            "waiting_until": s.not_before.isoformat(sep=" ", timespec="minutes") if s.status == SubtaskStatus.WAITING
            and s.not_before else None,
            "started_at": s.started_at.isoformat(sep=" ", timespec="seconds") if s.started_at else None,
            "finished_at": s.finished_at.isoformat(sep=" ", timespec="seconds") if s.finished_at else None,
        } for s in batch.subtasks],
    }
