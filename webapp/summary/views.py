"""销项汇总: a company's (or every granted company's) year summed by tax rate, its chart and export."""
from __future__ import annotations

import io

from flask import Blueprint, abort, render_template
from flask_login import current_user

from webapp import params
from webapp.accounts.permissions import company_for, permitted_companies
from webapp.clock import now
from webapp.summary import chart_bars, write_summary, year_summary
from webapp.web import xlsx_download

bp = Blueprint("summary", __name__, url_prefix="/summary")
ALL = "all"
YEARS = 6


def _company_or_all(text: str) -> str:
    """The tax_id parameter: one company's tax ID, or "all" for every granted company."""
    return ALL if text.strip() == ALL else params.tax_id(text)


def _scope():
    """(companies shown, the selected company or None for all, the year), checked against the user's grants."""
    companies = permitted_companies(current_user)
    tax_id = params.arg("tax_id", _company_or_all) or (companies[0].tax_id if companies else ALL)
    if tax_id == ALL:
        chosen, tax_ids = None, [c.tax_id for c in companies]
    else:
        try:
            chosen = company_for(current_user, tax_id)
        except PermissionError:
            abort(404)
        tax_ids = [chosen.tax_id]
    year = params.arg("year", params.year) or now().year
    return companies, chosen, tax_ids, year


@bp.route("")
def index():
    """The summary page: month × rate table with month and year totals, the 价税合计 chart, counts by kind."""
    companies, chosen, tax_ids, year = _scope()
    summary = year_summary(tax_ids, year) if tax_ids else None
    return render_template("summary/index.html", companies=companies, company=chosen, year=year,
                           years=range(now().year, now().year - YEARS, -1), summary=summary,
                           chart=chart_bars(summary["chart"]) if summary else None)


@bp.route("/export")
def export():
    """The same summary as an xlsx download."""
    _companies, chosen, tax_ids, year = _scope()
    if not tax_ids:
        abort(404)
    buffer = io.BytesIO()
    write_summary(year_summary(tax_ids, year), buffer)
    return xlsx_download(buffer.getvalue(), f"销项汇总_{chosen.tax_id if chosen else '全部企业'}_{year}.xlsx")
