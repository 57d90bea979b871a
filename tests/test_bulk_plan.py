"""A bulk 乐企 plan run over the following days with a controlled clock (docs/quota.md, How the product counts).

Plans made the same day share each (company, invoicing month, kind)'s quota, so most of their
work waits for later days; they must end with every batch succeeded and no key ever given more
applications than 乐企 allows (channels/quota_rules.py: one a day, three a calendar month for a past
invoicing month).
"""
from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime

from sqlalchemy import select

from channels.quota_rules import monthly_limit
from webapp.extensions import db
from webapp.models import QuotaUse

from .simulated_days import run_days, unfinished
from .test_download import TODAY, _download, sandbox  # noqa: F401  (the sandbox fixture)

PLAN = ("2023-12", "2024-05")  # six past invoicing months, all six kinds: 36 applications at least
MAX_DAYS = 40
PLANS = 4


def test_a_bulk_plan_finishes_over_following_days_within_every_quota(app, runner, sandbox, work):  # noqa: F811
    """Four plans of the same six months and six kinds, all made on 10 June: the first runs that day,
    the next two on the following days (one application a day), the fourth waits for July (three a
    calendar month for a past invoicing month); the clock moves to each next release until all end."""
    batches = []
    for _ in range(PLANS):
        result, made = _download(runner, "--channel", "leqi", "--from", PLAN[0], "--to", PLAN[1], expect_ok=False)
        assert made, result.output
        batches += made
    day, _days = run_days(app, TODAY, work, lambda today: sandbox.control(today=today.isoformat()),
                          MAX_DAYS - 1)  # TODAY, when the plans were made, is the first
    assert not unfinished(app), unfinished(app)
    shown = [json.loads(runner.invoke(args=["batch", "show", b["batch_no"]]).stdout) for b in batches]
    assert all(b["status"] == "succeeded" for b in shown), [(s["period"], s["status"], s["error"]) for b in shown
                                                             for s in b["subtasks"] if s["status"] != "succeeded"]
    assert day.date() >= date(2024, 7, 1)  # the fourth plan had to wait for the next calendar month

    with app.app_context():
        used = list(db.session.execute(select(QuotaUse.tax_id, QuotaUse.invoice_month, QuotaUse.type_code,
                                              QuotaUse.requested_on)))
        db.session.remove()
    assert len(used) == PLANS * 6 * 6  # every month and kind applied for once per plan, never more
    per_day = Counter(used)
    per_month = Counter((tax, month, code, f"{on:%Y-%m}") for tax, month, code, on in used)
    assert max(per_day.values()) == 1
    # one plan a day while June allows (three a calendar month), the fourth on the first of July
    assert sorted({on for *_key, on in used}) == [date(2024, 6, 10), date(2024, 6, 11), date(2024, 6, 12),
                                                  date(2024, 7, 1)]
    for (_tax, month, _code, calendar), count in per_month.items():
        assert count <= monthly_limit(month, datetime.strptime(calendar, "%Y-%m").date()), (month, calendar, count)
    assert sandbox.sent("PLFPXZSQ") == len(used)  # every application the bureau saw was counted


def test_the_coverage_grid_shows_usage_fetched_after_it_was_first_read(app, runner, sandbox):  # noqa: F811
    """The grid's figures are kept per month (webapp.pool.month_stats); a usage download must refresh them."""
    from webapp.pool.coverage import coverage

    from .conftest import DEMO_TAX_ID

    def cell():
        with app.app_context():
            found = coverage(DEMO_TAX_ID, TODAY.date(), 2024)["2024-05"]["81"]
            db.session.remove()
        return found

    _download(runner, "--channel", "rpa", "--from", "2024-05", "--to", "2024-05", "--type", "81")
    before = cell()
    assert before["positive"] > 0 and before["with_usage"] == 0 and before["usage_updated"] is None
    _, [usage] = _download(runner, "--channel", "leqi", "--data", "usage", "--from", "2024-05", "--to", "2024-05",
                           "--type", "81")
    after = cell()
    assert usage["status"] == "succeeded" and after["with_usage"] == usage["success"] > 0
    assert after["usage_updated"] is not None
