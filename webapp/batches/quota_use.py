"""乐企 quota use, counted in the database: reserve before sending, never exceed (channels.quota_rules)."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from channels import quota_rules as rules
from channels.months import first_day, month_of
from webapp.extensions import db
from webapp.models import QuotaUse


def used_dates(tax_id: str, invoice_month: str, type_code: str, since: date) -> list[date]:
    """The days applications were sent for this key, from `since` on."""
    return list(db.session.scalars(select(QuotaUse.requested_on).where(
        QuotaUse.tax_id == tax_id, QuotaUse.invoice_month == invoice_month, QuotaUse.type_code == type_code,
        QuotaUse.requested_on >= since)))


def reserve(tax_id: str, invoice_month: str, type_codes: list[str], now: datetime,
            subtask_id: int | None = None) -> date | None:
    """Record one application per type for today, all or none; else the day all may be sent.

    Runs inside the caller's write transaction. The unique (…, requested_on) constraint makes
    two workers racing on the same day collide instead of both sending.
    """
    today = now.date()
    waits = [rules.next_allowed(invoice_month, today,
                                used_dates(tax_id, invoice_month, code, first_day(month_of(today))))
             for code in type_codes]
    if any(day > today for day in waits):
        return max(waits)
    try:
        with db.session.begin_nested():
            db.session.add_all([QuotaUse(tax_id=tax_id, invoice_month=invoice_month, type_code=code,
                                         requested_on=today, requested_at=now, subtask_id=subtask_id)
                                for code in type_codes])
    except IntegrityError:  # another worker took today's application first
        return max(rules.next_allowed(invoice_month, today,
                                      used_dates(tax_id, invoice_month, code, first_day(month_of(today))) + [today])
                   for code in type_codes)
    return None


def reserve_each(tax_id: str, invoice_month: str, type_codes: list[str], now: datetime,
                 subtask_id: int | None = None) -> tuple[list[str], date | None]:
    """Record today's application for every type that still has quota, each on its own.

    A type whose quota is spent must not hold back the others (issue: quota waits per kind):
    returns the types granted today, and the first day the refused ones may be sent (None when
    none was refused). Runs inside the caller's write transaction, like `reserve`.
    """
    granted, waits = [], []
    for code in type_codes:
        wait = reserve(tax_id, invoice_month, [code], now, subtask_id)
        if wait is None:
            granted.append(code)
        else:
            waits.append(wait)
    return granted, (min(waits) if waits else None)


def fetched_codes(subtask_id: int) -> set[str]:
    """Types whose results this subtask already wrote to the pool: a later run of the same month
    (after waiting for the other types' quota) does not apply for them again."""
    return set(db.session.scalars(select(QuotaUse.type_code).where(QuotaUse.subtask_id == subtask_id,
                                                                   QuotaUse.fetched.is_(True))))


def outstanding(subtask_id: int) -> dict[str, QuotaUse]:
    """Applications this subtask made whose results are not in the pool yet, by type: fetch
    these again instead of applying again (an application costs quota)."""
    rows = db.session.scalars(select(QuotaUse).where(QuotaUse.subtask_id == subtask_id, QuotaUse.serial.is_not(None),
                                                     QuotaUse.fetched.is_(False)))
    return {row.type_code: row for row in rows}


def remaining(tax_id: str, invoice_month: str, type_code: str, today: date) -> dict:
    """What is left for this key today and this calendar month."""
    return rules.remaining(invoice_month, today,
                           used_dates(tax_id, invoice_month, type_code, first_day(month_of(today))))
