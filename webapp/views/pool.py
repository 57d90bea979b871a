"""销项发票池 (minimal): find what arrived by number, company and month; one invoice's detail."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, request
from flask_login import current_user
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import Invoice
from webapp.permissions import permitted_companies
from webapp.pool import invoice_json

from . import wants_partial

bp = Blueprint("pool", __name__, url_prefix="/pool")


def _permitted_tax_ids() -> list[str]:
    return [c.tax_id for c in permitted_companies(current_user)]


def _query(tax_ids: list[str]):
    """The user's invoices, narrowed by number (prefix of key, code, number or 数电 number), company and month."""
    args = request.args
    chosen = args.get("tax_id")
    query = select(Invoice).where(Invoice.tax_id.in_([chosen] if chosen in tax_ids else tax_ids))
    if number := args.get("q", "").strip():
        query = query.where(Invoice.key.startswith(number) | Invoice.number.startswith(number))
    if month := args.get("month", "").strip():
        query = query.where(Invoice.month == month)
    return query.order_by(Invoice.issued_at.desc(), Invoice.id.desc())


@bp.route("")
def index():
    tax_ids = _permitted_tax_ids()
    page = max(request.args.get("page", 1, type=int), 1)
    pagination = db.paginate(_query(tax_ids), page=page, per_page=current_app.config["PAGE_SIZE"], error_out=False)
    if wants_partial("pool-table"):
        return render_template("pool/_table.html", pagination=pagination)
    return render_template("pool/index.html", pagination=pagination, companies=permitted_companies(current_user))


@bp.route("/<key>")
def detail(key):
    invoice = db.session.scalar(select(Invoice).where(Invoice.key == key, Invoice.tax_id.in_(_permitted_tax_ids())))
    if invoice is None:
        abort(404)
    return render_template("pool/detail.html", invoice=invoice_json(invoice))
