"""乐企 quota rules (docs/quota.md, The rules), as a pure function of the dates already used.

Per (tax ID, invoicing month, invoice type): at most 1 application a day; for the current
invoicing month at most 5 in a calendar month; for a past invoicing month at most 3 in a
calendar month. The database counts the applications (webapp.batches.quota_use); this says what they allow.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

from channels.months import month_of

PER_DAY = 1
CURRENT_MONTH_LIMIT = 5
PAST_MONTH_LIMIT = 3
HORIZON_DAYS = 62  # two calendar months always contain a free day
RULE_TEXT = (f"同一开票月份同一种类每天 {PER_DAY} 次；当前开票月份每月 {CURRENT_MONTH_LIMIT} 次，"
             f"历史开票月份每月 {PAST_MONTH_LIMIT} 次")  # the rules as the import dialog states them


def monthly_limit(invoice_month: str, day: date) -> int:
    """5 while the invoicing month is the current month on `day`, else 3."""
    return CURRENT_MONTH_LIMIT if invoice_month == month_of(day) else PAST_MONTH_LIMIT


def _used_in_month(used: list[date], day: date) -> int:
    """Applications sent in the calendar month of `day` (the monthly limits count per calendar month)."""
    return sum(1 for d in used if month_of(d) == month_of(day))


def allowed_on(invoice_month: str, day: date, used: Iterable[date]) -> bool:
    """Whether one more application for this invoicing month may be sent on `day`."""
    used = list(used)
    if sum(1 for d in used if d == day) >= PER_DAY:
        return False
    return _used_in_month(used, day) < monthly_limit(invoice_month, day)


def next_allowed(invoice_month: str, today: date, used: Iterable[date]) -> date:
    """The first day from `today` on which an application may be sent (today when it may)."""
    used = list(used)
    for offset in range(HORIZON_DAYS):
        day = today + timedelta(days=offset)
        if allowed_on(invoice_month, day, used):
            return day
    raise AssertionError("quota rules always allow a day within two months")


def remaining(invoice_month: str, today: date, used: Iterable[date]) -> dict:
    """What is left today and this calendar month, for showing to users."""
    used = list(used)
    return {
        "today": max(PER_DAY - sum(1 for d in used if d == today), 0),
        "month": max(monthly_limit(invoice_month, today) - _used_in_month(used, today), 0),
        "limit": monthly_limit(invoice_month, today),
    }
