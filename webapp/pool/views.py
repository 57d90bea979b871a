"""销项发票池: search and filter, invoice detail with red-flush readiness, coverage, export."""
from __future__ import annotations

from io import BytesIO

from flask import Blueprint, abort, current_app, render_template, request, stream_with_context, url_for
from flask_htmx import make_response as htmx_response
from flask_login import current_user
from markupsafe import Markup

from channels.invoice_types import DOWNLOAD_KINDS, TYPE_NAMES
from channels.records import SourceRejected
from webapp import params
from webapp.accounts import audit
from webapp.accounts.permissions import batch_for, company_for, permitted_companies
from webapp.batches import NO_CHANNEL, create_download_batches, usable_channel
from webapp.batches.facts import page_facts, poll_every
from webapp.clock import now
from webapp.extensions import db
from webapp.models import Batch
from webapp.pool import blue_facts, find_invoice, invoice_json, line_balances, red_invoices_of
from webapp.pool.coverage import coverage, coverage_years, issued_codes
from webapp.pool.export import export_filename, export_size, stream_pool_export, too_large
from webapp.pool.redflush import assess
from webapp.pool.redflush_draft import (
    DraftRefused,
    audit_details,
    entries_from_form,
    form_fields,
    make_draft,
    write_xlsx,
)
from webapp.pool.search import INVOICE_STATUSES, PoolFilter, pool_query, pool_totals
from webapp.pool.usage import ENTRY_LABELS, VAT_USAGE
from webapp.statuses import BatchStatus, DataType, DraftForm, RedFlushReason
from webapp.web import error_response, wants_partial, xlsx_download

bp = Blueprint("pool", __name__, url_prefix="/pool")


def _permitted_tax_ids() -> list[str]:
    return [c.tax_id for c in permitted_companies(current_user)]


def _page(flt: PoolFilter, tax_ids: list[str]):
    """One page of results and whether another follows: no count of the whole table."""
    page = params.arg("page", params.page_number)
    size = current_app.config["PAGE_SIZE"]
    rows = list(db.session.scalars(pool_query(flt, tax_ids).limit(size + 1).offset((page - 1) * size)))
    return {"items": rows[:size], "page": page, "has_next": len(rows) > size, "has_prev": page > 1}


@bp.route("")
def index():
    """The pool list; the filter form swaps only the table (active search). The user's companies are
    read once for both the filter's choices and the query (docs/performance.md, Pages while batches run)."""
    flt = PoolFilter.from_args(request.args)
    companies = permitted_companies(current_user)
    context = {"flt": flt, "results": _page(flt, [c.tax_id for c in companies])}
    if wants_partial("pool-table"):
        return render_template("pool/_table.html", **context)
    return render_template("pool/index.html", companies=companies, kinds=TYPE_NAMES,
                           statuses=INVOICE_STATUSES, vat_usages=VAT_USAGE, entry_labels=ENTRY_LABELS,
                           **context)


@bp.route("/summary")
def summary():
    """共 N 张 and the sums of 金额, 税额, 价税合计 for the filter, with the page count; loaded after the list."""
    flt = PoolFilter.from_args(request.args)
    totals = pool_totals(flt, _permitted_tax_ids())
    size = current_app.config["PAGE_SIZE"]
    return render_template("pool/_summary.html", flt=flt, totals=totals, pages=max(1, -(-totals["count"] // size)),
                           page=params.arg("page", params.page_number), filtered=bool(flt.as_args()))


@bp.route("/export")
def export():
    """The filtered list as xlsx with the export file's own column names, sent as it is written."""
    query = pool_query(PoolFilter.from_args(request.args), _permitted_tax_ids())
    if refusal := too_large(*export_size(query)):
        return error_response(400, refusal)
    return xlsx_download(stream_with_context(stream_pool_export(query)), export_filename(now()))


@bp.route("/export/start")
def export_start():
    """导出 clicked (htmx): the rows are counted first, then the page shows either why they cannot be
    one workbook or how many are being exported, with the link static/app.js follows to start the
    download (which the browser shows growing while the rows are written)."""
    flt = PoolFilter.from_args(request.args)
    invoices, line_rows = export_size(pool_query(flt, _permitted_tax_ids()))
    if refusal := too_large(invoices, line_rows):
        return error_response(400, refusal)
    return render_template("pool/_export_note.html", invoices=invoices, line_rows=line_rows, flt=flt)


@bp.route("/coverage")
def coverage_page():
    """同步覆盖: months × kinds of one company, with gaps that open the import dialog prefilled."""
    companies = permitted_companies(current_user)
    if not companies:
        return render_template("pool/coverage.html", companies=[], grid={}, company=None)
    try:
        company = company_for(current_user, params.arg("tax_id", params.tax_id) or companies[0].tax_id)
    except PermissionError:
        abort(404)
    year = params.arg("year", params.year)
    grid = coverage(company.tax_id, now().date(), year)
    all_kinds = request.args.get("all_kinds") == "1"
    every = list(next(iter(grid.values()), {}))
    # nothing yet: all
    codes = every if all_kinds else (issued_codes(company.tax_id, now().date(), grid, year is None) or every)
    gap_channels = {month: usable_channel(company, [month]) for month in grid}  # a gap opens what can fill it
    return render_template("pool/coverage.html", companies=companies, company=company, grid=grid, year=year,
                           codes=codes, gap_channels=gap_channels,
                           no_channel=NO_CHANNEL if not any(gap_channels.values()) else None, all_kinds=all_kinds,
                           hidden=len(every) - len(codes), kinds=DOWNLOAD_KINDS, type_names=TYPE_NAMES,
                           years=coverage_years(company.tax_id, now().date()))


@bp.route("/<key>")
def detail(key):
    """One invoice: header, lines, source batch, usage, the red/blue links both ways, red-flush readiness."""
    invoice = find_invoice(key, _permitted_tax_ids())
    if invoice is None:
        abort(404)

    batch = db.session.get(Batch, invoice.batch_id) if invoice.batch_id else None
    reds = red_invoices_of(invoice)
    readiness = None if invoice.is_red else assess(blue_facts(invoice, reds), now())
    balance = None if invoice.is_red else line_balances(invoice, reds)
    channel = usable_channel(company_for(current_user, invoice.tax_id))  # 获取用途状态 is offered only when it can run
    return render_template("pool/detail.html", invoice=invoice_json(invoice), batch=batch, reds=reds,
                           readiness=readiness, balance=balance, unanswered_at=_unanswered_at(invoice),
                           usage_channel=channel, no_channel=NO_CHANNEL)


def _unanswered_at(invoice) -> str | None:
    """When the bureau was last asked this invoice's usage and said nothing (None: answered or never asked)."""
    asked, answered = invoice.usage_queried_at, invoice.usage_updated_at
    if asked is None or (answered is not None and answered >= asked):
        return None
    return asked.strftime("%Y-%m-%d %H:%M")


def _draft(key: str, form: DraftForm):
    """The red-flush draft the request asks for (webapp.pool.redflush_draft), recorded in the audit
    log with its company; a request for another company's invoice is a 404 (README, Access)."""
    invoice = find_invoice(key, _permitted_tax_ids())
    if invoice is None:
        abort(404)
    reds = red_invoices_of(invoice)
    balance = line_balances(invoice, reds)
    reason = params.arg("reason", lambda text: params.choice(text, RedFlushReason.codes(), "红冲原因"))
    if not reason:
        raise params.Refused("请选择红冲原因")
    entries = entries_from_form(request.values, [row.line.line_no for row in balance.lines])
    draft = make_draft(invoice, balance, assess(blue_facts(invoice, reds), now()), RedFlushReason(reason), entries,
                       now())
    audit.record("redflush.draft", invoice.key, org_id=company_for(current_user, invoice.tax_id).org_id,
                 **audit_details(draft, form))
    return draft


def _draft_args() -> dict:
    """The draft's own fields of the request (reason, qty_N, amount_N), for the print and xlsx links."""
    return {name: value for name, value in request.values.items()
            if value.strip() and (name == "reason" or name.startswith(("qty_", "amount_")))}


@bp.errorhandler(DraftRefused)
def _draft_refused(refused: DraftRefused):
    """A draft the rules refuse, asked for as a print page or a workbook: a 400 saying why."""
    return error_response(400, str(refused))


@bp.route("/<key>/redflush", methods=["POST"])
def redflush_draft(key):
    """生成红冲草稿 (htmx): the draft below the form, or in red why none is made and what to do first."""
    try:
        draft = _draft(key, DraftForm.PAGE)
    except (DraftRefused, params.Refused) as refused:  # said beside the form, as a form's errors are
        return render_template("pool/_redflush_draft.html", refused=str(refused))
    return render_template("pool/_redflush_draft.html", draft=draft, key=key, args=_draft_args(),
                           fields=form_fields(draft))


@bp.route("/<key>/redflush/print")
def redflush_print(key):
    """The draft as a page to print and copy from."""
    draft = _draft(key, DraftForm.PRINT)
    return render_template("pool/redflush_print.html", draft=draft, key=key, fields=form_fields(draft))


@bp.route("/<key>/redflush.xlsx")
def redflush_xlsx(key):
    """The draft as a workbook, figures as numbers."""
    draft = _draft(key, DraftForm.XLSX)
    body = BytesIO()
    write_xlsx(draft, body)
    return xlsx_download(body.getvalue(), f"红冲草稿-{draft.invoice['key']}.xlsx")


@bp.route("/<key>/refresh-usage", methods=["POST"])
def refresh_usage(key):
    """Fetch usage status for the invoice's month now, through the company's usable channel."""

    invoice = find_invoice(key, _permitted_tax_ids())
    if invoice is None:
        abort(404)
    company = company_for(current_user, invoice.tax_id)
    channel = usable_channel(company)
    if channel is None:
        return Markup('<span class="error">{}</span>').format(NO_CHANNEL)
    try:
        [batch] = create_download_batches(current_user, [company], channel=channel, data_type=DataType.USAGE,
                                          months=[invoice.month], type_codes=[])
    except SourceRejected as exc:
        return Markup('<span class="error">{}</span>').format(str(exc))
    return _usage_progress(key, batch)


def _usage_progress(key: str, batch) -> Markup:
    """The 获取用途状态 notice, the invoice page's one poll: it asks again as a batch page would (often
    while a month runs, seldom while it waits for quota) until its batch ends (then the page reloads)."""
    link = url_for("batches.detail", batch_no=batch.batch_no)
    poll = url_for("pool.usage_batch", key=key, batch_no=batch.batch_no)
    every = poll_every([batch], page_facts([batch.id]))
    return Markup('<span class="note" id="usage-batch" hx-get="{}" hx-trigger="every {}s" hx-target="this" '
                  'hx-swap="outerHTML">'
                  '已创建用途状态获取任务 <a href="{}">{}</a>（{}），完成后本页自动更新</span>').format(
        poll, every, link, batch.batch_no, BatchStatus(batch.status).label)


@bp.route("/<key>/usage-batch/<batch_no>")
def usage_batch(key, batch_no):
    """Whether the invoice's usage batch has ended: then the whole page reloads with the new status."""

    batch = batch_for(current_user, batch_no)
    if batch.status in BatchStatus.FINISHED:
        return htmx_response("", refresh=True)
    return _usage_progress(key, batch)


@bp.record_once
def _template_helpers(state) -> None:
    """发票状态 and 增值税用途状态 as the pool's lists show them (webapp.pool.flushes, webapp.pool.usage), as
    app-wide template globals registered by this feature, so that webapp.web, below every feature,
    names none of them (README, Layout)."""
    from webapp.pool.flushes import shown_status
    from webapp.pool.usage import NOT_APPLICABLE, usage_applies, usage_labels

    state.app.jinja_env.globals["usage_label"] = lambda invoice: (
        usage_labels(invoice.vat_usage, None, None, None)["vat_usage"]
        if usage_applies(invoice.is_red, invoice.status, invoice.vat_usage) else NOT_APPLICABLE)
    state.app.jinja_env.globals["shown_status"] = shown_status
