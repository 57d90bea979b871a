"""来源核对: one company-month's invoices that only one source has or that sources report differently."""
from __future__ import annotations

import io

from flask import Blueprint, abort, render_template
from flask_login import current_user
from sqlalchemy import func, select

from channels.months import month_of
from webapp import params
from webapp.accounts.permissions import company_for, permitted_companies
from webapp.clock import now
from webapp.extensions import db
from webapp.models import InvoiceSource
from webapp.reconcile import FIELDS, differing_months, source_report, write_report
from webapp.web import xlsx_download

bp = Blueprint("reconcile", __name__, url_prefix="/reconcile")
SHOWN = 100  # invoices only one source has listed on the page; the export lists them all


def _scope():
    """(companies, the chosen company, the month): the latest month synced when none is asked for."""
    companies = permitted_companies(current_user)
    if not companies:
        return companies, None, None
    try:
        company = company_for(current_user, params.arg("tax_id", params.tax_id) or companies[0].tax_id)
    except PermissionError:
        abort(404)
    month = params.arg("month", params.month) or db.session.scalar(
        select(func.max(InvoiceSource.month)).where(InvoiceSource.tax_id == company.tax_id)) or month_of(now())
    return companies, company, month


@bp.route("")
def index():
    """The report page: counts at the top, then both lists with every source's values side by side."""
    companies, company, month = _scope()
    report = source_report(company.tax_id, month, SHOWN) if company else None
    return render_template("reconcile/index.html", companies=companies, company=company, month=month,
                           report=report, fields=FIELDS, shown=SHOWN)


@bp.route("/export")
def export():
    """The report as an xlsx download."""
    _companies, company, month = _scope()
    if company is None:
        abort(404)
    buffer = io.BytesIO()
    write_report(source_report(company.tax_id, month), buffer)
    return xlsx_download(buffer.getvalue(), f"来源核对_{company.tax_id}_{month}.xlsx")


@bp.app_template_global("months_with_source_differences")
def months_with_source_differences(tax_id: str, months) -> set[str]:
    """For the 同步覆盖 grid: which of its months 来源核对 has findings for."""

    return differing_months(tax_id, list(months))
