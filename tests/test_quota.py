"""乐企 quotas: the rules with a controlled clock, their counting in the database, and concurrency."""
from __future__ import annotations

import threading
from datetime import date, datetime, timedelta

from sqlalchemy import func, select

from channels import quota as rules
from webapp import quota
from webapp.extensions import db
from webapp.models import QuotaUse
from webapp.transactions import write_transaction

TAX_ID = "91330100MA2H4K7Q1X"


def test_one_application_a_day():
    today = date(2024, 6, 10)
    assert rules.allowed_on("2024-06", today, [])
    assert not rules.allowed_on("2024-06", today, [today])
    assert rules.next_allowed("2024-06", today, [today]) == date(2024, 6, 11)


def test_current_invoicing_month_allows_five_in_the_calendar_month():
    used = [date(2024, 6, d) for d in (1, 2, 3, 4)]
    assert rules.allowed_on("2024-06", date(2024, 6, 10), used)
    used.append(date(2024, 6, 5))
    assert not rules.allowed_on("2024-06", date(2024, 6, 10), used)
    # in July June is a past month: a fresh calendar month with the limit of 3
    assert rules.next_allowed("2024-06", date(2024, 6, 10), used) == date(2024, 7, 1)


def test_past_invoicing_month_allows_three_in_the_calendar_month():
    used = [date(2024, 6, 1), date(2024, 6, 2)]
    assert rules.allowed_on("2024-05", date(2024, 6, 10), used)
    used.append(date(2024, 6, 3))
    assert not rules.allowed_on("2024-05", date(2024, 6, 10), used)
    assert rules.next_allowed("2024-05", date(2024, 6, 10), used) == date(2024, 7, 1)
    assert rules.remaining("2024-05", date(2024, 6, 10), used) == {"today": 1, "month": 0, "limit": 3}


def test_last_months_applications_do_not_count_this_month():
    used = [date(2024, 5, d) for d in range(1, 6)]
    assert rules.allowed_on("2024-05", date(2024, 6, 1), used)


def _reserve(app, month, codes, at):
    with app.app_context():
        with write_transaction():
            return quota.reserve(TAX_ID, month, codes, at)


def test_reserve_counts_in_the_database_all_types_or_none(app):
    day = datetime(2024, 6, 10, 9, 0)
    assert _reserve(app, "2024-06", ["81", "82"], day) is None
    assert _reserve(app, "2024-06", ["81", "82"], day + timedelta(hours=3)) == date(2024, 6, 11)
    assert _reserve(app, "2024-06", ["10"], day) is None  # another type has its own quota
    assert _reserve(app, "2024-06", ["81", "10"], day) == date(2024, 6, 11)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(QuotaUse)) == 3


def test_reserve_waits_for_next_month_when_a_past_month_is_used_up(app):
    for day in (1, 2, 3):
        assert _reserve(app, "2024-05", ["81"], datetime(2024, 6, day, 9)) is None
    assert _reserve(app, "2024-05", ["81"], datetime(2024, 6, 4, 9)) == date(2024, 7, 1)
    assert _reserve(app, "2024-05", ["81"], datetime(2024, 7, 1, 9)) is None


def test_concurrent_reservations_never_exceed_the_quota(app):
    """Eight workers at once for the same month and type: exactly one application is recorded."""
    at = datetime(2024, 6, 10, 9, 0)
    results, barrier = [], threading.Barrier(8)

    def worker():
        barrier.wait()
        results.append(_reserve(app, "2024-06", ["81"], at))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(None) == 1
    assert all(r == date(2024, 6, 11) for r in results if r is not None)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(QuotaUse)) == 1
