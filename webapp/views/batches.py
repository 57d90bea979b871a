"""历史发票数据同步 page: the batch list, batch detail, the import dialog, 终止 and 重试."""
from __future__ import annotations

import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from flask import Blueprint, abort, current_app, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from sqlalchemy import select
from sqlalchemy.orm import joinedload
from wtforms import RadioField, SelectField, SelectMultipleField, StringField
from wtforms.widgets import CheckboxInput, ListWidget

from channels.etax_file import MAX_UPLOAD_BYTES, check_upload
from channels.invoice_types import DOWNLOAD_KINDS
from channels.records import SourceRejected
from webapp import quota
from webapp.clock import now
from webapp.batches import (BATCH_STATUS, CHANNELS, DATA_TYPES, METHODS, PERIOD_YEARS, create_download_batches,
                            create_file_batch, missing_prerequisites, months_between, period_limits, retry, terminate)
from webapp.batch_facts import RUNNING_BATCH, created_notice, page_facts, unanswered_keys
from webapp.extensions import db
from webapp.models import Batch, Company
from webapp.permissions import batch_for, permitted_companies, permitted_company_ids

from . import wants_partial

bp = Blueprint("batches", __name__, url_prefix="/batches")
POLL_SECONDS = 2  # while a month runs or is about to
POLL_WAITING_SECONDS = 30  # while everything running only waits (quota, the bureau preparing data)
MAX_LIVE_ROWS = 200  # a poll never asks for more rows than a page can show


class MultiCheckbox(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class ImportForm(FlaskForm):
    """The 导入 dialog's fields, as the manual lists them; `_validate` holds the rules.

    CSRF is checked for every POST by CSRFProtect, so the form does not check it again.
    """

    class Meta:
        csrf = False

    data_type = RadioField("发票数据类型", choices=list(DATA_TYPES.items()), default="invoices")
    method = RadioField("导入方式", choices=[("download", METHODS["download"]), ("file", METHODS["file"])], default="file")
    channel = RadioField("下载通道", choices=[("rpa", "rpa"), ("leqi", "乐企")], default="leqi")
    tax_ids = MultiCheckbox("企业名称")
    period_unit = RadioField("开票日期", choices=[("year", "按年"), ("month", "按月")], default="year")
    year = SelectField("年度")
    month_from = StringField("起始月份")
    month_to = StringField("截止月份")
    kinds = MultiCheckbox("发票种类", choices=list(DOWNLOAD_KINDS.items()))
    file = FileField("文件")


def _build_form() -> ImportForm:
    """The dialog's form; a GET may prefill it (同步覆盖 opens it for a gap)."""
    form = ImportForm(formdata=request.args) if request.method == "GET" and request.args else ImportForm()
    form.tax_ids.choices = [(c.tax_id, f"{c.name}（{c.tax_id}）") for c in permitted_companies(current_user)]
    this_year = now().year
    form.year.choices = [(str(y), f"{y}年") for y in range(this_year, this_year - PERIOD_YEARS, -1)]
    return form


def _is_month(text: str) -> bool:
    try:
        return datetime.strptime(text, "%Y-%m").strftime("%Y-%m") == text
    except ValueError:
        return False


def _check_period(form: ImportForm, errors: dict) -> None:
    """开票日期: a year, or a month range, inside the last five years."""
    lowest, highest = period_limits(now().date())
    if form.period_unit.data == "year":
        if form.year.data not in {value for value, _ in form.year.choices}:
            errors["period"] = "请选择近五年内的年度"
        return
    start, end = (form.month_from.data or "").strip(), (form.month_to.data or "").strip()
    if not start or not end:
        errors["period"] = "请选择起止月份"
    elif not (_is_month(start) and _is_month(end)):
        errors["period"] = "月份格式应为 YYYY-MM"
    elif start > end:
        errors["period"] = "起始月份不能晚于截止月份"
    elif start < lowest or end > highest:
        errors["period"] = f"开票日期只能选择近五年：{lowest} 至 {highest}"


def _save_upload(storage) -> Path:
    """Keep the uploaded file in a temporary path, refusing more than 10 MB while reading."""
    folder = Path(current_app.config["UPLOAD_DIR"]) / "incoming"
    folder.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=folder, suffix=".xlsx", delete=False)
    with handle:
        size = 0
        while chunk := storage.stream.read(1024 * 1024):
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                break
            handle.write(chunk)
    path = Path(handle.name)
    if size > MAX_UPLOAD_BYTES:
        path.unlink()
        raise SourceRejected("文件超过10MB上限，请按月份拆分导出后分别导入")
    return path


def _validate(form: ImportForm) -> dict:
    """The dialog's rules; returns field → Chinese message for what is wrong."""
    errors: dict[str, str] = {}
    if form.method.data not in METHODS or form.data_type.data not in DATA_TYPES:
        errors["method"] = "请选择发票数据类型和导入方式"
        return errors
    permitted = {value for value, _ in form.tax_ids.choices}
    chosen = form.tax_ids.data or []
    if any(t not in permitted for t in chosen):
        errors["tax_ids"] = "所选企业不在您的权限范围内"
    elif not chosen:
        errors["tax_ids"] = "请选择企业"
    if form.method.data == "file":
        if form.data_type.data != "invoices":
            errors["data_type"] = "导入电子税局文件仅支持发票数据，不支持发票用途状态"
        if len(chosen) > 1:
            errors["tax_ids"] = "导入电子税局文件时只能选择一个企业"
        if not form.file.data or not form.file.data.filename:
            errors["file"] = "请选择从电子税局导出的文件"
    else:
        if form.channel.data not in CHANNELS:
            errors["channel"] = "请选择下载通道"
        if form.data_type.data == "invoices" and not form.kinds.data:
            errors["kinds"] = "请选择发票种类"
        elif any(kind not in DOWNLOAD_KINDS for kind in form.kinds.data or []):
            errors["kinds"] = "发票种类不正确"
        _check_period(form, errors)
    return errors


def _chosen_months(form: ImportForm) -> list[str]:
    """开票日期 as months: a whole year (up to the current month), or the chosen range."""
    if form.period_unit.data == "year":
        return months_between(f"{form.year.data}-01", min(f"{form.year.data}-12", now().strftime("%Y-%m")))
    return months_between(form.month_from.data.strip(), form.month_to.data.strip())


def _create(form: ImportForm) -> list[Batch]:
    """Create what a valid dialog asks for; SourceRejected says why not."""
    companies = list(db.session.scalars(select(Company).where(
        Company.tax_id.in_(form.tax_ids.data), Company.id.in_(permitted_company_ids(current_user)))))
    if form.method.data == "download":
        codes = form.kinds.data or list(DOWNLOAD_KINDS)
        return create_download_batches(current_user, companies, channel=form.channel.data,
                                       data_type=form.data_type.data, months=_chosen_months(form), type_codes=codes)
    path = _save_upload(form.file.data)
    try:
        check_upload(path)
        return [create_file_batch(current_user, companies[0], path, form.file.data.filename)]
    finally:
        path.unlink(missing_ok=True)


def _dialog_notes(form: ImportForm) -> list[str]:
    """What the chosen channel needs or has left, per chosen company, shown before submitting."""
    if form.method.data != "download" or not form.tax_ids.data:
        return []
    notes, errors = [], {}
    _check_period(form, errors)
    months = [] if errors else _chosen_months(form)
    permitted = {c.tax_id: c for c in permitted_companies(current_user)}
    for company in (permitted[t] for t in form.tax_ids.data if t in permitted):
        problem = missing_prerequisites(company, form.channel.data)
        if problem:
            notes.append(problem)
        elif form.channel.data == "leqi" and form.data_type.data == "invoices" and months:
            notes.append(_quota_note(company, months, form.kinds.data or list(DOWNLOAD_KINDS)))
    return notes


def _quota_note(company: Company, months: list[str], codes: list[str]) -> str:
    """乐企 quota for the chosen months and kinds: which are used up today and when they will run."""
    today = now().date()
    blocked = []
    for month in months:
        for code in codes:
            left = quota.remaining(company.tax_id, month, code, today)
            if not left["today"] or not left["month"]:
                blocked.append(f"{month} {DOWNLOAD_KINDS[code]}（今日剩 {left['today']} 次，本月剩 {left['month']}/{left['limit']} 次）")
    rule = "同一开票月份同一种类每天 1 次；当前开票月份每月 5 次，历史开票月份每月 3 次"
    if not blocked:
        return f"{company.name}：所选 {len(months)} 个月份的乐企下载今日均有额度（{rule}）"
    shown = "；".join(blocked[:6]) + (f" 等 {len(blocked)} 项" if len(blocked) > 6 else "")
    return f"{company.name}：乐企额度不足，提交后这些月份将等待额度自动执行：{shown}（{rule}）"


@bp.route("/import", methods=["GET", "POST"])
def import_dialog():
    """The 导入 dialog: GET or a field change re-renders it; a full submit validates and creates."""
    form = _build_form()
    if request.method == "GET" or request.form.get("refresh"):
        return render_template("batches/_import_dialog.html", form=form, errors={}, notes=_dialog_notes(form))
    errors = _validate(form)
    if not errors:
        try:
            batches = _create(form)
        except SourceRejected as exc:
            errors["file" if form.method.data == "file" else "tax_ids"] = str(exc)
    if errors:
        return render_template("batches/_import_dialog.html", form=form, errors=errors, notes=_dialog_notes(form))
    response = current_app.make_response(("", 204))
    response.headers["HX-Location"] = url_for("batches.index", created="、".join(b.batch_no for b in batches))
    return response


def _filtered_batches():
    """The list's query: the user's companies only, narrowed by the filter fields."""
    args = request.values
    query = select(Batch).where(Batch.company_id.in_(permitted_company_ids(current_user)))
    if args.get("tax_id"):
        query = query.where(Batch.tax_id == args["tax_id"])
    if args.get("status") in BATCH_STATUS:
        query = query.where(Batch.status == args["status"])
    if args.get("method") in METHODS:
        query = query.where(Batch.method == args["method"])
    for name, op in (("date_from", "__ge__"), ("date_to", "__lt__")):
        try:
            day = datetime.strptime(args.get(name, ""), "%Y-%m-%d")
        except ValueError:
            continue
        query = query.where(getattr(Batch.created_at, op)(day + timedelta(days=1) if name == "date_to" else day))
    return query.options(joinedload(Batch.org)).order_by(Batch.created_at.desc(), Batch.id.desc())


def _page_context(batches: list[Batch], message: str | None = None) -> dict:
    """What the rows need beyond the batches: their subtasks' facts (two queries for the page), and
    which of them still run, for the page's one poller."""
    facts = page_facts([b.id for b in batches])
    live = [b for b in batches if b.status in RUNNING_BATCH]
    busy = any(b.status == "preprocessing" or facts[b.id].counts.get("running") or facts[b.id].counts.get("pending")
               for b in live)
    created_nos = [n for n in _created_arg().split("、") if n]
    return {"facts": facts, "message": message, "live_nos": [f"{b.batch_no}.{facts[b.id].signature(b)}" for b in live],
            "poll_every": POLL_SECONDS if busy else POLL_WAITING_SECONDS, "created": "、".join(created_nos),
            "notice": _created_notice(created_nos)}


def _created_arg() -> str:
    """The batches the page was opened for after 导入 (?created=…), also when an htmx action on the
    page (终止, 重试, a filter) asks: then it is in the page's own address."""
    if request.values.get("created"):
        return request.values["created"]
    current = urlsplit(request.headers.get("HX-Current-URL", ""))
    return (parse_qs(current.query).get("created") or [""])[0]


def _created_notice(batch_nos: list[str]) -> list[tuple[str, str, str]]:
    """The notice after 导入, as the created batches stand now (never a stale 正在执行)."""
    if not batch_nos:
        return []
    batches = list(db.session.scalars(select(Batch).where(
        Batch.batch_no.in_(batch_nos), Batch.company_id.in_(permitted_company_ids(current_user)))))
    batches.sort(key=lambda b: batch_nos.index(b.batch_no))
    return created_notice(batches, page_facts([b.id for b in batches]))


def _table_context(message: str | None = None) -> dict:
    """The current page of batches with their facts, for the table partial."""
    page = max(request.values.get("page", 1, type=int), 1)
    pagination = db.paginate(_filtered_batches(), page=page, per_page=current_app.config["PAGE_SIZE"], error_out=False)
    return {"pagination": pagination, **_page_context(pagination.items, message)}


def _render_table(message: str | None = None):
    """The batch table partial, with what 终止/重试 did."""
    return render_template("batches/_table.html", **_table_context(message))


@bp.route("")
def index():
    """历史发票数据同步: the batch list; htmx filter changes swap only the table."""
    if wants_partial("batch-table"):
        return _render_table()
    return render_template("batches/index.html", companies=permitted_companies(current_user), **_table_context())


@bp.route("/live")
def live():
    """The page's one poll: the rows that were still running and have changed since the page last saw
    them (`nos` carries each row's signature), swapped out of band, the notice, and the poller itself
    again while something still runs (a page with nothing running stops asking)."""
    shown = dict(item.partition(".")[::2] for item in request.args.get("nos", "").split(",")[:MAX_LIVE_ROWS] if item)
    batches = list(db.session.scalars(select(Batch).options(joinedload(Batch.org)).where(
        Batch.batch_no.in_(list(shown)), Batch.company_id.in_(permitted_company_ids(current_user)))))
    batches.sort(key=lambda b: list(shown).index(b.batch_no))
    context = _page_context(batches)
    changed = [b for b in batches if context["facts"][b.id].signature(b) != shown[b.batch_no]]
    return render_template("batches/_live.html", batches=changed, **context)


@bp.route("/<batch_no>/row")
def row(batch_no):
    """One list row as it stands now."""
    batch = batch_for(current_user, batch_no)
    return render_template("batches/_row.html", batch=batch, facts=page_facts([batch.id]))


@bp.route("/<batch_no>")
def detail(batch_no):
    """The batch detail: one row per month subtask, what went wrong and what the bureau left unanswered."""
    batch = batch_for(current_user, batch_no)
    template = "batches/_subtasks.html" if wants_partial("subtasks-panel") else "batches/detail.html"
    return render_template(template, batch=batch, facts=page_facts([batch.id]),
                           unanswered=unanswered_keys(batch.id) if batch.data_type == "usage" else [])


def _selected_batches() -> list[Batch]:
    """The ticked batches, each checked against the user's companies (404 otherwise)."""
    numbers = request.form.getlist("batch_no")
    if not numbers:
        abort(400)
    return [batch_for(current_user, number) for number in numbers]


@bp.route("/terminate", methods=["POST"])
def terminate_selected():
    """终止 the selected batches; answers with the refreshed table and what was done."""
    if not request.form.getlist("batch_no"):
        return _render_table("请先勾选要终止的导入批次")
    result = terminate(_selected_batches())
    return _render_table(f"已终止 {result['batches']} 个批次中的 {result['subtasks']} 个子任务" if result["batches"]
                         else "所选批次没有待执行或执行中的任务，无需终止")


@bp.route("/retry", methods=["POST"])
def retry_selected():
    """重试 the failed subtasks of the selected batches."""
    if not request.form.getlist("batch_no"):
        return _render_table("请先勾选要重试的导入批次")
    result = retry(_selected_batches())
    done = result["subtasks"] + result["parses"]
    return _render_table(f"已重新执行 {done} 个失败的任务" if done else "所选批次没有执行失败的任务")
