"""Month arithmetic (channels.months): the 'YYYY-MM' sums every layer uses, at year ends and month lengths."""
from __future__ import annotations

from datetime import date, datetime

import pytest

from channels.months import (
    add_months,
    first_day,
    is_month,
    last_day,
    month_of,
    months_between,
    next_month,
    previous_month,
    year_months,
)


def test_next_and_previous_month_cross_the_year_end():
    assert next_month("2024-12") == "2025-01"
    assert previous_month("2025-01") == "2024-12"
    assert next_month("2024-03") == "2024-04"
    assert add_months("2024-01", -13) == "2022-12"
    assert add_months("2024-11", 14) == "2026-01"


def test_months_between_is_inclusive_and_splits_by_month():
    assert months_between("2024-11", "2025-02") == ["2024-11", "2024-12", "2025-01", "2025-02"]
    assert months_between("2024-05", "2024-05") == ["2024-05"]
    assert months_between("2024-06", "2024-05") == []
    assert len(months_between("2021-01", "2025-12")) == 60  # the five-year import


def test_year_months_are_january_to_december():
    assert year_months(2024) == [f"2024-{m:02d}" for m in range(1, 13)]


def test_month_of_a_date_or_a_moment():
    assert month_of(date(2024, 2, 29)) == "2024-02"
    assert month_of(datetime(2025, 1, 1, 0, 0)) == "2025-01"


@pytest.mark.parametrize(("month", "first", "last"), [
    ("2024-02", date(2024, 2, 1), date(2024, 2, 29)),  # leap year
    ("2023-02", date(2023, 2, 1), date(2023, 2, 28)),
    ("2024-12", date(2024, 12, 1), date(2024, 12, 31)),
    ("2024-04", date(2024, 4, 1), date(2024, 4, 30)),
])
def test_first_and_last_day_of_a_month(month, first, last):
    assert (first_day(month), last_day(month)) == (first, last)


@pytest.mark.parametrize(("text", "ok"), [
    ("2024-01", True), ("2024-12", True), ("2024-13", False), ("2024-00", False), ("2024-1", False),
    ("24-01", False), ("2024/01", False), ("2024-01-01", False), ("２０２４-01", False), ("", False),
])
def test_is_month_accepts_only_yyyy_mm(text, ok):
    assert is_month(text) is ok
