"""Invoicing months as 'YYYY-MM' text: the one place that does month arithmetic.

Subtasks, quotas, the pool's month figures and the channels' requests all name a month by its
'YYYY-MM' text (text order is time order), so the sums over months (next, previous, every month
between two, the days a month spans) live here, in the lowest layer, for channels/, webapp/ and
jobs/ alike.
"""
from __future__ import annotations

import calendar
import re
from datetime import date

_MONTH = re.compile(r"[1-9][0-9]{3}-(0[1-9]|1[0-2])")


def month_of(day: date) -> str:
    """The 'YYYY-MM' a date or datetime falls in (an invoice's 开票月份, today's month)."""
    return f"{day.year:04d}-{day.month:02d}"


def is_month(text: str) -> bool:
    """Whether text is a month written exactly 'YYYY-MM' (what the forms and the sandbox accept)."""
    return bool(_MONTH.fullmatch(text))


def year_and_month(month: str) -> tuple[int, int]:
    """'2024-03' as (2024, 3)."""
    year, number = month.split("-")
    return int(year), int(number)


def add_months(month: str, n: int) -> str:
    """The month n months after (n < 0: before) 'YYYY-MM', across year ends."""
    year, number = year_and_month(month)
    year, index = divmod(year * 12 + number - 1 + n, 12)
    return f"{year:04d}-{index + 1:02d}"


def next_month(month: str) -> str:
    """The month after: '2024-12' → '2025-01'."""
    return add_months(month, 1)


def previous_month(month: str) -> str:
    """The month before: '2025-01' → '2024-12' (a schedule's run on the 5th fetches it)."""
    return add_months(month, -1)


def months_between(first: str, last: str) -> list[str]:
    """Every 'YYYY-MM' from first to last inclusive (按月拆分); empty when first is after last."""
    months = []
    month = add_months(first, 0)  # written canonically ('2024-1' reads as '2024-01')
    while month <= last:
        months.append(month)
        month = next_month(month)
    return months


def year_months(year: int) -> list[str]:
    """The twelve months of a year, January first."""
    return months_between(f"{year:04d}-01", f"{year:04d}-12")


def first_day(month: str) -> date:
    """The 1st of the month."""
    return date(*year_and_month(month), 1)


def last_day(month: str) -> date:
    """The month's last day (28th to 31st)."""
    year, number = year_and_month(month)
    return date(year, number, calendar.monthrange(year, number)[1])
