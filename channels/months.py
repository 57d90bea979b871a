"""Invoicing months as 'YYYY-MM' text, counted as integers: the one place that does month arithmetic.

Subtasks, quotas, the pool's month figures and the channels' requests all name a month by its
'YYYY-MM' text, so the sums over months (next, previous, every month between two, the days a month
spans) live here, in the lowest layer, for channels/, webapp/ and jobs/ alike.

Every sum is done on a month's index (year × 12 + month − 1), never on the text: text order stops
being time order past year 9999 ("10000-01" < "9999-12"), which once made months_between loop
forever. A month's year is bounded (FIRST_YEAR..LAST_YEAR, four digits): a sum that
would leave that range raises ValueError instead of writing a month no date can hold.
"""
from __future__ import annotations

import calendar
import re
from datetime import date

FIRST_YEAR, LAST_YEAR = 1000, 9999  # the years a 'YYYY-MM' (and a date) can hold
_MONTH = re.compile(r"[1-9][0-9]{3}-(0[1-9]|1[0-2])")


def month_of(day: date) -> str:
    """The 'YYYY-MM' a date or datetime falls in (an invoice's 开票月份, today's month)."""
    return f"{day.year:04d}-{day.month:02d}"


def is_month(text: str) -> bool:
    """Whether text is a month written exactly 'YYYY-MM' (what the forms and the sandbox accept)."""
    return bool(_MONTH.fullmatch(text))


def year_and_month(month: str) -> tuple[int, int]:
    """'2024-03' as (2024, 3); ValueError for anything else, or a year outside FIRST_YEAR..LAST_YEAR."""
    year, number = (int(part) for part in month.split("-"))
    if not (FIRST_YEAR <= year <= LAST_YEAR and 1 <= number <= 12):
        raise ValueError(f"月份超出范围：{month}")
    return year, number


def month_index(month: str) -> int:
    """The month as one integer (year × 12 + month − 1): what every comparison and sum here uses."""
    year, number = year_and_month(month)
    return year * 12 + number - 1


def month_at(index: int) -> str:
    """The 'YYYY-MM' of a month index; ValueError when its year is outside FIRST_YEAR..LAST_YEAR."""
    year, offset = divmod(index, 12)
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise ValueError(f"月份超出范围：{year} 年")
    return f"{year:04d}-{offset + 1:02d}"


def add_months(month: str, n: int) -> str:
    """The month n months after (n < 0: before) 'YYYY-MM', across year ends."""
    return month_at(month_index(month) + n)


def next_month(month: str) -> str:
    """The month after: '2024-12' → '2025-01'."""
    return add_months(month, 1)


def previous_month(month: str) -> str:
    """The month before: '2025-01' → '2024-12' (a schedule's run on the 5th fetches it)."""
    return add_months(month, -1)


def months_between(first: str, last: str) -> list[str]:
    """Every 'YYYY-MM' from first to last inclusive (按月拆分); empty when first is after last.
    '2024-1' reads as '2024-01'; the list is written canonically."""
    return [month_at(index) for index in range(month_index(first), month_index(last) + 1)]


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
