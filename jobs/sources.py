"""What a download or usage subtask asks of the channels, and what it writes back.

The channels know nothing of batches; this module turns a subtask into channel calls
(dates, types, accounts) and channel answers into pool updates.
"""
from __future__ import annotations

from datetime import date, datetime

from flask import current_app
from sqlalchemy import bindparam, select, update

from channels.months import first_day, last_day
from channels.records import StagedInvoice, UsageQuery, UsageStatus
from webapp.batches import quota_use as quota
from webapp.clock import now
from webapp.extensions import db
from webapp.models import Batch, Invoice, QuotaUse, Subtask
from webapp.pool import latest_copies
from webapp.statuses import Channel, DataType, SubtaskStatus
from webapp.transactions import write_transaction


def _clients():
    """The channel clients for this process, made once from the app's configuration."""
    ext = current_app.extensions
    if "channel_clients" not in ext:
        from channels.clients import make_clients

        ext["channel_clients"] = make_clients({**current_app.config,
                                               "SANDBOX_CLOCK": _clock_of(current_app._get_current_object())})
    return ext["channel_clients"]


def _clock_of(app):
    """The product's one clock (webapp.clock.now) for the in-process sandbox, which answers inside
    its own app context: it never returns invoices dated after the product's now."""
    def clock() -> datetime:
        with app.app_context():
            return now()
    return clock


def month_range(batch: Batch, period: str) -> tuple[date, date]:
    """The days a month's subtask asks for; a 乐企 month starts no earlier than the authorisation."""
    start, end = first_day(period), last_day(period)
    since = batch.company.leqi_since if batch.channel == Channel.LEQI else None
    return (max(start, since) if since else start), end


def leqi_applications(batch: Batch, subtask: Subtask, at: datetime) -> tuple[dict[str, str], list[str], date | None]:
    """The 乐企 serial (lsh) per type for this month, the types refused today, and the day they may be asked.

    Outstanding serials are reused; types already written by an earlier run of this month are
    done; every other type takes today's quota on its own, so a type whose quota is spent waits
    alone while the rest download now. Each serial is committed as soon as it is given, so a
    later run fetches it rather than spending quota again.
    """
    leqi, _ = _clients()
    with write_transaction():
        serials = {code: row.serial for code, row in quota.outstanding(subtask.id).items()}
        done = quota.fetched_codes(subtask.id)
        needed = [code for code in batch.type_codes if code not in serials and code not in done]
        granted, wait_day = (quota.reserve_each(batch.tax_id, subtask.period, needed, at, subtask.id)
                             if needed else ([], None))
    start, end = month_range(batch, subtask.period)
    for code in granted:
        serial = leqi.apply(batch.tax_id, start, end, code)
        with write_transaction():
            db.session.execute(update(QuotaUse).where(
                QuotaUse.subtask_id == subtask.id, QuotaUse.type_code == code, QuotaUse.requested_on == at.date())
                .values(serial=serial))
        serials[code] = serial
    return serials, [code for code in needed if code not in granted], wait_day


def forget_serials(subtask: Subtask) -> None:
    """The bureau no longer knows these serials: the next run applies again (within the quota)."""
    with write_transaction():
        db.session.execute(update(QuotaUse).where(QuotaUse.subtask_id == subtask.id, QuotaUse.fetched.is_(False))
                           .values(serial=None, subtask_id=None))


def mark_fetched(subtask: Subtask) -> None:
    """The month's results are in the pool: part of the transaction that writes them."""
    db.session.execute(update(QuotaUse).where(QuotaUse.subtask_id == subtask.id, QuotaUse.serial.is_not(None))
                       .values(fetched=True))
    db.session.execute(update(Subtask).where(Subtask.id == subtask.id).values(channel_ref=None))


def rpa_task(batch: Batch, subtask: Subtask) -> str:
    """The robot task of this month: the one still running from an earlier run, else a new one
    (committed at once, so a task that takes longer than one run is polled, not submitted again)."""
    if subtask.channel_ref:
        return subtask.channel_ref
    _, rpa = _clients()
    start, end = month_range(batch, subtask.period)
    task_id = rpa.submit(batch.tax_id, batch.company.etax_account, start, end, batch.type_codes)
    with write_transaction():
        db.session.execute(update(Subtask).where(Subtask.id == subtask.id).values(channel_ref=task_id))
    return task_id


def forget_rpa_task(subtask: Subtask) -> None:
    """The task failed or is gone: the next run submits a new one."""
    with write_transaction():
        db.session.execute(update(Subtask).where(Subtask.id == subtask.id).values(channel_ref=None))


def download(batch: Batch, subtask: Subtask, serials: dict[str, str] | None = None) -> list[StagedInvoice]:
    """Every invoice of the month and the batch's types, as the pool's staged rows (built straight
    from the wire, each invoice once): 乐企 by the given serials, or the RPA task."""
    leqi, rpa = _clients()
    if batch.channel == Channel.LEQI:
        rows = (r for serial in serials.values() for r in leqi.fetch_rows(serial, batch.tax_id))
    else:
        rows = rpa.fetch_rows(rpa_task(batch, subtask), batch.tax_id)
    return latest_copies(rows)


def invoices_still_syncing(batch: Batch, subtask: Subtask) -> bool:
    """Usage status goes after the same month's invoice download of the same company, while that
    download is still to run: created before this subtask (a later one cannot hold it back for
    ever), and not ended (failed or terminated months are not waited for)."""
    return db.session.scalar(select(Subtask.id).join(Batch).where(
        Batch.tax_id == batch.tax_id, Batch.data_type == DataType.INVOICES, Subtask.period == subtask.period,
        Subtask.id < subtask.id, Subtask.status.in_(SubtaskStatus.ACTIVE)).limit(1)) is not None


def usage_queries(batch: Batch, subtask: Subtask) -> list[UsageQuery]:
    """The month's positive invoices in the pool (red ones are never asked), of the batch's types."""
    query = select(Invoice.key, Invoice.type_code, Invoice.code, Invoice.number, Invoice.digital_number,
                   Invoice.issued_at).where(Invoice.tax_id == batch.tax_id, Invoice.month == subtask.period,
                                            Invoice.is_red.is_(False))
    if codes := batch.type_codes:  # none: every kind
        query = query.where(Invoice.type_code.in_(codes))
    return [UsageQuery(key=row.key, type_code=row.type_code or "", code=row.code,
                       number=row.digital_number or row.number, issued_on=row.issued_at.strftime("%Y%m%d"))
            for row in db.session.execute(query.order_by(Invoice.key))]


def query_usage(batch: Batch, queries: list[UsageQuery]) -> list[UsageStatus]:
    """Ask the batch's channel for these invoices' usage status (no request when there are none)."""
    if not queries:
        return []
    leqi, rpa = _clients()
    if batch.channel == Channel.LEQI:
        return leqi.query_usage(batch.tax_id, queries)
    return rpa.query_usage(batch.tax_id, batch.company.etax_account, queries)


def save_usage(channel: str, statuses: list[UsageStatus], at: datetime) -> int:
    """Write 增值税用途 / 消费税用途 / 入账状态 with the channel whose code set they use; returns how many."""
    answered = [s for s in statuses if s.vat_usage is not None or s.entry_status is not None]
    if answered:
        table = Invoice.__table__
        db.session.execute(
            update(table).where(table.c.key == bindparam("k")).values(
                vat_usage=bindparam("vat"), excise_usage=bindparam("excise"), entry_status=bindparam("entry"),
                red_lock=bindparam("lock"), usage_channel=channel, usage_updated_at=at),
            [{"k": s.key, "vat": s.vat_usage, "excise": s.excise_usage, "entry": s.entry_status, "lock": s.red_lock}
             for s in answered])
    return len(answered)




def record_unanswered(subtask_id: int, queries: list[UsageQuery], statuses: list[UsageStatus],
                      at: datetime) -> list[str]:
    """Remember which queried invoices the bureau returned no usage status for, so the batch can list
    them and each invoice's page can say it was asked but not answered (instead of 未获取).

    Part of the transaction that saves the answers; returns the unanswered keys."""
    answered = {s.key for s in statuses if s.vat_usage is not None or s.entry_status is not None}
    missing = [q.key for q in queries if q.key not in answered]
    if queries:
        table = Invoice.__table__
        db.session.execute(update(table).where(table.c.key == bindparam("k")).values(usage_queried_at=at),
                           [{"k": q.key} for q in queries])
    db.session.execute(update(Subtask).where(Subtask.id == subtask_id)
                       .values(unanswered_keys="\n".join(missing) or None))
    return missing
