"""乐企 quotas: the rules with a controlled clock, their counting in the database, and concurrency."""
from __future__ import annotations

import threading
from datetime import date, datetime, timedelta

from sqlalchemy import func, select

from channels import quota_rules as rules
from webapp.batches import quota_use as quota
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


# Property tests: whatever the sequence of requests, never more than the rules allow ----------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

START = date(2024, 5, 20)
INVOICE_MONTHS = ("2024-04", "2024-05", "2024-06", "2024-07")
request_days = st.lists(st.integers(min_value=0, max_value=80), max_size=60).map(
    lambda offsets: [START + timedelta(days=o) for o in sorted(offsets)])


def _assert_within_rules(invoice_month: str, used: list[date]) -> None:
    """At most one a day; per calendar month at most 5 while it is the invoicing month, else 3."""
    assert len(set(used)) == len(used)
    for year_month in {(d.year, d.month) for d in used}:
        in_month = [d for d in used if (d.year, d.month) == year_month]
        assert len(in_month) <= rules.monthly_limit(invoice_month, in_month[0])


@given(invoice_month=st.sampled_from(INVOICE_MONTHS), days=request_days)
def test_granting_whatever_is_allowed_never_exceeds_the_rules(invoice_month, days):
    used: list[date] = []
    for day in days:
        if rules.allowed_on(invoice_month, day, used):
            used.append(day)
    _assert_within_rules(invoice_month, used)


@given(invoice_month=st.sampled_from(INVOICE_MONTHS), days=request_days,
       today=st.integers(min_value=0, max_value=80).map(lambda o: START + timedelta(days=o)))
def test_next_allowed_is_the_first_allowed_day(invoice_month, days, today):
    """Seen from any `today`, with the applications recorded up to then."""
    used: list[date] = []
    for day in (d for d in days if d <= today):
        if rules.allowed_on(invoice_month, day, used):
            used.append(day)
    first = rules.next_allowed(invoice_month, today, used)
    assert first >= today and rules.allowed_on(invoice_month, first, used)
    assert not any(rules.allowed_on(invoice_month, today + timedelta(days=n), used)
                   for n in range((first - today).days))
    left = rules.remaining(invoice_month, today, used)
    assert (first == today) == (left["today"] > 0 and left["month"] > 0)


CODES = ("10", "81", "82")
requests = st.lists(st.tuples(st.integers(min_value=0, max_value=75), st.sampled_from(INVOICE_MONTHS),
                              st.lists(st.sampled_from(CODES), min_size=1, max_size=3, unique=True)),
                    max_size=40).map(sorted)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=requests)
def test_reserving_per_kind_in_the_database_never_exceeds_the_rules(app, sequence):
    """Any sequence of per-kind reservations (several a day, several months and kinds): the recorded
    applications keep to the rules for every (month, kind), and a refused kind is told a later day."""
    with app.app_context():
        with write_transaction():
            db.session.query(QuotaUse).delete()
        for offset, month, codes in sequence:
            at = datetime.combine(START + timedelta(days=offset), datetime.min.time()) + timedelta(hours=9)
            with write_transaction():
                granted, wait = quota.reserve_each(TAX_ID, month, codes, at)
            assert set(granted) <= set(codes)
            assert (wait is None) == (set(granted) == set(codes))
            assert wait is None or wait > at.date()
        rows = db.session.execute(select(QuotaUse.invoice_month, QuotaUse.type_code, QuotaUse.requested_on)).all()
        for month in INVOICE_MONTHS:
            for code in CODES:
                used = [r.requested_on for r in rows if (r.invoice_month, r.type_code) == (month, code)]
                _assert_within_rules(month, used)


def test_a_kind_whose_quota_is_spent_does_not_hold_back_the_others(app):
    day = datetime(2024, 6, 10, 9, 0)
    with app.app_context():
        with write_transaction():
            assert quota.reserve_each(TAX_ID, "2024-05", ["81"], day) == (["81"], None)
        with write_transaction():
            assert quota.reserve_each(TAX_ID, "2024-05", ["81", "82", "10"], day) == (["82", "10"], date(2024, 6, 11))
