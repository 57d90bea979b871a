"""历史发票数据同步 page: the batch list, batch detail, the import dialog, 终止 and 重试."""
from __future__ import annotations

import io
import json
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from flask import Blueprint, Response, abort, current_app, render_template, request, url_for
from flask_htmx import make_response as htmx_response
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import MultipleFileField
from sqlalchemy import select
from sqlalchemy.orm import joinedload
from wtforms import RadioField, SelectField, SelectMultipleField, StringField
from wtforms.widgets import CheckboxInput, ListWidget

from channels.etax_file import MAX_UPLOAD_BYTES, MAX_UPLOAD_FILES, check_file_name, check_upload
from channels.invoice_types import DOWNLOAD_KINDS
from channels.months import is_month, month_of, months_between
from channels.records import SourceRejected
from webapp.accounts import audit
from webapp.accounts.permissions import batch_for, permitted_companies, permitted_company_ids
from webapp.batches import (
    create_download_batches,
    create_file_batch,
    leqi_note,
    missing_prerequisites,
    months_before_leqi,
    period_limits,
    period_years,
    retry,
    retry_plan,
    subtask_label,
    terminate,
)
from webapp.batches import quota_use as quota
from webapp.batches.facts import created_notice, page_facts, unanswered_keys
from webapp.clock import now
from webapp.extensions import db, htmx
from webapp.models import Batch, Company
from webapp.statuses import BatchStatus, Channel, DataType, Method, SubtaskStatus
from webapp.web import wants_partial, xlsx_download

bp = Blueprint("batches", __name__, url_prefix="/batches", template_folder="templates")
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

    data_type = RadioField("发票数据类型", choices=DataType.choices(), default=DataType.INVOICES)
    method = RadioField("导入方式", choices=[(m.value, m.label) for m in (Method.DOWNLOAD, Method.FILE)], default=Method.FILE)
    channel = RadioField("下载通道", choices=[(c.value, c.label) for c in (Channel.RPA, Channel.LEQI)], default=Channel.LEQI)
    tax_ids = MultiCheckbox("企业名称")
    period_unit = RadioField("开票日期", choices=[("year", "按年"), ("month", "按月")], default="year")
    year = SelectField("起始年度")
    year_to = SelectField("截止年度", validate_choice=False)
    month_from = StringField("起始月份")
    month_to = StringField("截止月份")
    kinds = MultiCheckbox("发票种类", choices=list(DOWNLOAD_KINDS.items()))
    file = MultipleFileField("文件")


def _build_form() -> ImportForm:
    """The dialog's form; a GET may prefill it (同步覆盖 opens it for a gap).

    发票用途状态 is only downloaded, never imported from a file: choosing it switches the method
    to 税局下载 (the dialog then does not offer the file import at all).
    """
    form = ImportForm(formdata=request.args) if request.method == "GET" and request.args else ImportForm()
    form.tax_ids.choices = [(c.tax_id, f"{c.name}（{c.tax_id}）") for c in permitted_companies(current_user)]
    form.year.choices = [(str(y), f"{y}年") for y in period_years(now())]
    form.year_to.choices = [("", "同起始年度")] + form.year.choices
    if form.data_type.data == DataType.USAGE and request.form.get("refresh"):
        form.method.data = Method.DOWNLOAD
    return form


def _year_range(form: ImportForm) -> tuple[str, str]:
    """按年: 起始年度 to 截止年度 (one year when the end is not chosen)."""
    first = form.year.data or ""
    return first, (form.year_to.data or first)


def _check_period(form: ImportForm, errors: dict) -> None:
    """开票日期: a range of years, or a range of months, inside the last five years."""
    lowest, highest = period_limits(now().date())
    if form.period_unit.data == "year":
        years = {value for value, _ in form.year.choices}
        first, last = _year_range(form)
        if first not in years or last not in years:
            errors["period"] = "请选择近五年内的年度"
        elif first > last:
            errors["period"] = "起始年度不能晚于截止年度"
        return
    start, end = (form.month_from.data or "").strip(), (form.month_to.data or "").strip()
    if not start or not end:
        errors["period"] = "请选择起止月份"
    elif not (is_month(start) and is_month(end)):
        errors["period"] = "月份格式应为 YYYY-MM"
    elif start > end:
        errors["period"] = "起始月份不能晚于截止月份"
    elif start < lowest or end > highest:
        errors["period"] = f"开票日期只能选择近五年：{lowest} 至 {highest}"


UNREADABLE_UPLOAD = ("上传的内容无法读取：文件名含有无法识别的字符（不是 UTF-8 编码），"
                     "请将文件重命名为普通的中文、字母或数字后重新选择")


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


def _chosen_files(form: ImportForm) -> list:
    """The files chosen in the dialog, in the order chosen (a browser sends them in that order)."""
    return [storage for storage in form.file.data or [] if storage and storage.filename]


def _validate(form: ImportForm) -> dict:
    """The dialog's rules; returns field → Chinese message for what is wrong."""
    errors: dict[str, str] = {}
    if form.method.data not in Method or form.data_type.data not in DataType:
        errors["method"] = "请选择发票数据类型和导入方式"
        return errors
    permitted = {value for value, _ in form.tax_ids.choices}
    chosen = form.tax_ids.data or []
    if any(t not in permitted for t in chosen):
        errors["tax_ids"] = "所选企业不在您的权限范围内"
    elif not chosen:
        errors["tax_ids"] = "请选择企业"
    if form.method.data == Method.FILE:
        if form.data_type.data != DataType.INVOICES:
            errors["data_type"] = "导入电子税局文件仅支持发票数据，不支持发票用途状态"
        if len(chosen) > 1:
            errors["tax_ids"] = "导入电子税局文件时只能选择一个企业"
        if not _chosen_files(form):
            errors["file"] = "请选择从电子税局导出的文件"
        elif len(_chosen_files(form)) > MAX_UPLOAD_FILES:
            errors["file"] = f"一次最多导入 {MAX_UPLOAD_FILES} 个文件，请分次导入"
    else:
        if form.channel.data not in Channel:
            errors["channel"] = "请选择下载通道"
        if form.data_type.data == DataType.INVOICES and not form.kinds.data:
            errors["kinds"] = "请选择发票种类"
        elif any(kind not in DOWNLOAD_KINDS for kind in form.kinds.data or []):
            errors["kinds"] = "发票种类不正确"
        _check_period(form, errors)
        if not errors:
            _check_leqi_since(form, errors)
    return errors


def _chosen_companies(form: ImportForm) -> list[Company]:
    """The ticked companies the user may work on, in the dialog's order."""
    permitted = {c.tax_id: c for c in permitted_companies(current_user)}
    return [permitted[t] for t in form.tax_ids.data or [] if t in permitted]


def _leqi_applies(form: ImportForm) -> bool:
    return (form.method.data == Method.DOWNLOAD and form.channel.data == Channel.LEQI
            and form.data_type.data == DataType.INVOICES)


def _check_leqi_since(form: ImportForm, errors: dict) -> None:
    """Refuse before creating anything when, for a company, every chosen month precedes its 乐企
    authorisation (the batch could fetch nothing); a partial overlap is only warned about."""
    if not _leqi_applies(form):
        return
    months = _chosen_months(form)
    empty = [c for c in _chosen_companies(form) if len(months_before_leqi(c, months)) == len(months)]
    if empty:
        errors["period"] = "；".join(f"{c.name}于 {c.leqi_since:%Y-%m-%d} 授权乐企，乐企只能下载此后开具的发票，"
                                    f"所选月份均早于该日期，请改选月份或改用 RPA 通道" for c in empty)


def _chosen_months(form: ImportForm) -> list[str]:
    """开票日期 as months: whole years (up to the current month), or the chosen range."""
    if form.period_unit.data == "year":
        first, last = _year_range(form)
        return months_between(f"{first}-01", min(f"{last}-12", month_of(now())))
    return months_between(form.month_from.data.strip(), form.month_to.data.strip())


def _create(form: ImportForm) -> list[Batch]:
    """Create what a valid download dialog asks for."""
    companies = list(db.session.scalars(select(Company).where(
        Company.tax_id.in_(form.tax_ids.data), Company.id.in_(permitted_company_ids(current_user)))))
    codes = form.kinds.data or list(DOWNLOAD_KINDS)
    return create_download_batches(current_user, companies, channel=form.channel.data,
                                   data_type=form.data_type.data, months=_chosen_months(form), type_codes=codes)


def _create_file_batches(form: ImportForm) -> list[dict]:
    """One batch per chosen file, in the order chosen, each refused or accepted on its own.

    Returns what happened to each file: {"name", "batch" (or None), "error" (or None)}.
    The batches of one company then run one after another in this order (jobs.tasks).
    """
    company = db.session.scalar(select(Company).where(
        Company.tax_id == form.tax_ids.data[0], Company.id.in_(permitted_company_ids(current_user))))
    outcomes = []
    for storage in _chosen_files(form):
        name = storage.filename
        outcome = {"name": name, "batch": None, "error": None}
        outcomes.append(outcome)
        try:
            check_file_name(name)
            path = _save_upload(storage)
        except SourceRejected as exc:
            outcome["error"] = str(exc)
            continue
        try:
            check_upload(path)
            outcome["batch"] = create_file_batch(current_user, company, path, name)
        except SourceRejected as exc:
            outcome["error"] = str(exc)
        finally:
            path.unlink(missing_ok=True)
    return outcomes


def _printable(name: str) -> str:
    """A refused file's name as it can be shown (undecodable or control characters replaced)."""
    return "".join("�" if "\ud800" <= ch <= "\udfff" or ord(ch) < 32 else ch for ch in name)[:120]


def _dialog_notes(form: ImportForm) -> list[str]:
    """What the chosen channel needs or has left, per chosen company, shown before submitting."""
    if form.method.data != Method.DOWNLOAD or not form.tax_ids.data:
        return []
    notes, errors = [], {}
    _check_period(form, errors)
    months = [] if errors else _chosen_months(form)
    for company in _chosen_companies(form):
        problem = missing_prerequisites(company, form.channel.data)
        if problem:
            notes.append(problem)
        elif _leqi_applies(form) and months:
            if early := months_before_leqi(company, months):
                notes.append(f"{company.name}：{leqi_note(company, early)}（提交后这些月份不下载）")
            kept = [m for m in months if m not in early]
            if kept:
                notes.append(_quota_note(company, kept, form.kinds.data or list(DOWNLOAD_KINDS)))
    return notes


def _sandbox_note() -> str | None:
    """With a channel pointed at the sandbox tax bureau, which tax IDs it knows (the manual: test
    with the sandbox's tax IDs); None against a real bureau."""
    config = current_app.config
    if "sandbox" not in {(config.get(k) or "sandbox").strip().lower() for k in ("LEQI_BASE_URL", "RPA_BASE_URL")}:
        return None
    from channels.sandbox import known_companies

    companies = known_companies(config["SANDBOX_DB"])
    companies = [c for c in companies if c["tax_id"] not in _registered_elsewhere([c["tax_id"] for c in companies])]
    if not companies:
        return "当前连接的是沙箱税局，只能下载沙箱税号的发票"
    known = "；".join(f"{c['tax_id']}（{c['name']}，" + (f"乐企自 {c['leqi_since']} 起" if c["leqi_enabled"] and c["leqi_since"]
                                                      else "乐企已开通" if c["leqi_enabled"] else "未开通乐企") + "）"
                     for c in companies)
    return f"当前连接的是沙箱税局，只能下载以下沙箱税号的发票：{known}"


def _registered_elsewhere(tax_ids: list[str]) -> set[str]:
    """Of these tax IDs, those registered as companies the user may not see: naming them would tell
    the user another org's (or an ungranted) company."""
    registered = set(db.session.scalars(select(Company.tax_id).where(Company.tax_id.in_(tax_ids))))
    visible = {c.tax_id for c in permitted_companies(current_user)}
    return registered - visible


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
    return f"{company.name}：乐企额度不足，提交后其余种类立即下载，以下月份的种类等待额度后自动下载：{shown}（{rule}）"


def _render_dialog(form: ImportForm, errors: dict):
    """The dialog with its errors and the notes for what is chosen."""
    sandbox = _sandbox_note() if form.method.data == Method.DOWNLOAD else None
    return render_template("batches/_import_dialog.html", form=form, errors=errors, notes=_dialog_notes(form),
                           sandbox=sandbox)


@bp.route("/import", methods=["GET", "POST"])
def import_dialog():
    """The 导入 dialog: GET or a field change re-renders it; a full submit validates and creates."""
    form = _build_form()
    if request.method == "GET" or request.form.get("refresh"):
        return _render_dialog(form, {})
    if request.content_length and not request.form and not request.files:
        # the multipart body could not be read at all; in practice a file name that is not UTF-8
        return _errors_only(form, {"file": UNREADABLE_UPLOAD})
    errors = _validate(form)
    if not errors and form.method.data == Method.FILE:
        return _file_outcome(form, _create_file_batches(form))
    if not errors:
        try:
            batches = _create(form)
        except SourceRejected as exc:
            errors["tax_ids"] = str(exc)
    if errors:
        if form.method.data == Method.FILE:
            return _errors_only(form, errors)
        return _render_dialog(form, errors)
    return _created(batches)


def _created(batches: list[Batch]) -> Response:
    """Everything asked for was created: go to the list, which says what was created."""
    return htmx_response("", 204, location=url_for("batches.index", created="、".join(b.batch_no for b in batches)))


def _errors_only(form: ImportForm, errors: dict, outcomes: list[dict] | None = None):
    """A file dialog's errors replace only its error area, so the chosen files stay chosen
    (a re-rendered file input would be empty). Without htmx the whole dialog is rendered."""
    if not htmx:
        return render_template("batches/_import_dialog.html", form=form, errors=errors, notes=[], outcomes=outcomes)
    return htmx_response(render_template("batches/_import_errors.html", errors=errors, outcomes=outcomes),
                         retarget="#import-errors", reswap="innerHTML")


def _file_outcome(form: ImportForm, outcomes: list[dict]):
    """Say what happened to each chosen file: one accepted file goes straight to the list; when
    none was accepted the dialog stays as it was with the reasons; otherwise it lists each file."""
    for outcome in outcomes:
        outcome["shown_name"] = _printable(outcome["name"])
    created = [o["batch"] for o in outcomes if o["batch"]]
    if len(outcomes) == 1 and created:
        return _created(created)
    if not created:
        return _errors_only(form, {}, outcomes)
    return render_template("batches/_import_result.html", outcomes=outcomes,
                           created="、".join(b.batch_no for b in created))


def _filtered_batches():
    """The list's query: the user's companies only, narrowed by the filter fields."""
    args = request.values
    query = select(Batch).where(Batch.company_id.in_(permitted_company_ids(current_user)))
    if args.get("tax_id"):
        query = query.where(Batch.tax_id == args["tax_id"])
    if args.get("status") in BatchStatus:
        query = query.where(Batch.status == args["status"])
    if args.get("method") in Method:
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
    live = [b for b in batches if b.status in BatchStatus.ACTIVE]
    busy = any(b.status == BatchStatus.PREPROCESSING or facts[b.id].counts.get(SubtaskStatus.RUNNING)
               or facts[b.id].counts.get(SubtaskStatus.PENDING)
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
    current = urlsplit(htmx.current_url or "")
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
    return render_template(template, batch=batch, error_rows=error_rows(batch), facts=page_facts([batch.id]),
                           unanswered=unanswered_keys(batch.id) if batch.data_type == DataType.USAGE else [])


ERROR_LIST_HEADERS = ("工作表", "行号", "列", "单元格内容", "问题")


def error_rows(batch: Batch) -> list[dict]:
    """A refused file's unreadable rows, as the parse job kept them (empty for other batches)."""
    return json.loads(batch.error_rows) if batch.error_rows else []


@bp.route("/<batch_no>/errors.xlsx")
def error_list(batch_no):
    """错误清单: every unreadable row of a refused file, one per line, to fix the file against."""
    from openpyxl import Workbook  # deferred: openpyxl costs start-up time

    from webapp.pool.export import safe_text

    batch = batch_for(current_user, batch_no)
    rows = error_rows(batch) if batch.status == BatchStatus.FAILED else []
    if not rows:
        abort(404)
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("错误清单")
    sheet.append(list(ERROR_LIST_HEADERS))
    for row in rows:
        sheet.append([safe_text(row["sheet"]), row["row"], safe_text(row["column"]), safe_text(row["value"]),
                      safe_text(row["why"])])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return xlsx_download(buffer.getvalue(), f"错误清单_{batch.batch_no}.xlsx")  # no-store: auth._security_headers


def _selected_batches() -> list[Batch]:
    """The ticked batches, each checked against the user's companies (404 otherwise)."""
    numbers = request.form.getlist("batch_no")
    if not numbers:
        abort(400)
    return [batch_for(current_user, number) for number in numbers]


ACTIONS = {  # 终止 / 重试: the words each step of the two actions uses
    "terminate": {"name": "终止", "none": "请先勾选要终止的导入批次",
                  "nothing": "所选批次没有待执行或执行中的任务，无需终止", "ask": "将终止以下未执行和执行中的任务："},
    "retry": {"name": "重试", "none": "请先勾选要重试的导入批次",
              "nothing": "所选批次没有执行失败或已终止的任务", "ask": "将重新执行以下执行失败和已终止的任务："},
}


def _table_now(message: str):
    """The refreshed table answering a toolbar button whose target is the modal: it goes to the
    table instead, at once (no question to confirm when there is nothing to do)."""
    return htmx_response(_render_table(message), retarget="#batch-table", reswap="innerHTML")


def _plan_lines(action: str, batches: list[Batch]) -> list[tuple[Batch, list[str]]]:
    """What the action would do, per batch, as the confirmation lists it (empty: nothing to do)."""
    if action == "retry":
        return [(batch, (["重新解析上传的文件"] if reparse else [])
                 + [f"{s.period}（{SubtaskStatus(s.status).label}）" for s in subtasks])
                for batch, reparse, subtasks in retry_plan(batches)]
    lines = []
    for batch in batches:
        months = [f"{s.period}（{subtask_label(s)}）" for s in batch.subtasks if s.status in SubtaskStatus.ACTIVE]
        if batch.status == BatchStatus.PREPROCESSING:
            months.insert(0, "文件解析")
        if months:
            lines.append((batch, months))
    return lines


@bp.route("/<any(terminate, retry):action>/confirm", methods=["POST"])
def confirm(action):
    """终止 / 重试 ask first, listing what will stop or run; with nothing ticked, or nothing to
    do, they answer at once in the table instead of asking."""
    words = ACTIONS[action]
    if not request.form.getlist("batch_no"):
        return _table_now(words["none"])
    plan = _plan_lines(action, _selected_batches())
    if not plan:
        return _table_now(words["nothing"])
    return render_template("batches/_confirm.html", action=action, words=words, plan=plan,
                           hidden=[(k, v) for k in request.form for v in request.form.getlist(k) if k != "csrf_token"])


def _after_action(message: str) -> str:
    """The table with what was done, and the confirmation closed (an out-of-band swap)."""
    return _render_table(message) + '<div id="modal" hx-swap-oob="true"></div>'


def _act_on_selected(action: str, run, said) -> str:
    """终止 / 重试 the ticked batches and record it in the audit log; answers with the refreshed table
    and what was done (`said` of the result, or the action's words for nothing ticked or to do)."""
    numbers = request.form.getlist("batch_no")
    if not numbers:
        return _render_table(ACTIONS[action]["none"])
    result = run(_selected_batches())
    audit.record(f"batch.{action}", "、".join(numbers), batch_nos=numbers, **result)
    return _after_action(said(result) or ACTIONS[action]["nothing"])


@bp.route("/terminate", methods=["POST"])
def terminate_selected():
    """终止 the selected batches; answers with the refreshed table and what was done."""
    def said(result):
        return f"已终止 {result['batches']} 个批次中的 {result['subtasks']} 个子任务" if result["batches"] else None
    return _act_on_selected("terminate", terminate, said)


@bp.route("/retry", methods=["POST"])
def retry_selected():
    """重试 the failed and terminated subtasks of the selected batches (a terminated batch resumes)."""
    def said(result):
        done = result["subtasks"] + result["parses"]
        return f"已重新执行 {done} 个执行失败或已终止的任务" if done else None
    return _act_on_selected("retry", retry, said)
