"""历史发票数据同步 page: the batch list, batch detail, the import dialog, 终止 and 重试."""
from __future__ import annotations

import io
import json
import tempfile
from datetime import datetime, time, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from flask import Blueprint, Response, abort, current_app, render_template, request, url_for
from flask_htmx import make_response as htmx_response
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from channels import quota_rules
from channels.etax.container import MAX_UPLOAD_BYTES, check_file_name
from channels.etax.parser import RowsRejected
from channels.invoice_types import DOWNLOAD_KINDS
from channels.records import SourceRejected
from webapp import params
from webapp.accounts import audit
from webapp.accounts.permissions import batch_for, permitted_companies, permitted_company_ids
from webapp.batches import (
    create_download_batches,
    create_file_batch,
    leqi_note,
    leqi_refusal,
    missing_prerequisites,
    months_before_leqi,
    receive_file,
    retry,
    retry_plan,
    subtask_label,
    terminate,
)
from webapp.batches import quota_use as quota
from webapp.batches.facts import created_notice, page_facts, poll_every, unanswered_keys
from webapp.batches.forms import ImportForm
from webapp.batches.refused import keep_refused, refused_rows
from webapp.clock import now
from webapp.disk import check_room, is_disk_full
from webapp.extensions import db, htmx
from webapp.forms import messages
from webapp.models import Batch, Company
from webapp.statuses import BatchStatus, DataType, Method, SubtaskStatus
from webapp.web import paginate, wants_partial, xlsx_download

bp = Blueprint("batches", __name__, url_prefix="/batches")
MAX_LIVE_ROWS = 200  # a poll never asks for more rows than a page can show


def _build_form() -> ImportForm:
    """The dialog's form; a GET may prefill it (同步覆盖 opens it for a gap).

    发票用途状态 is only downloaded, never imported from a file: choosing it switches the method
    to 税局下载 (the dialog then does not offer the file import at all).
    """
    form = ImportForm(formdata=request.args) if request.method == "GET" and request.args else ImportForm()
    form.offer(permitted_companies(current_user), now())
    if form.data_type.data == DataType.USAGE and request.form.get("refresh"):
        form.method.data = Method.DOWNLOAD
    return form


UNREADABLE_UPLOAD = ("上传的内容无法读取：文件名含有无法识别的字符（不是 UTF-8 编码），"
                     "请将文件重命名为普通的中文、字母或数字后重新选择")


def _save_upload(storage) -> Path:
    """Keep the uploaded file in a temporary path, refusing more than 10 MB while reading.

    Refused before anything is written when DATA_DIR lacks room for the request; the file is
    removed on any failure (a full disk, too large), so no partial file stays in incoming/.
    """
    check_room(request.content_length or MAX_UPLOAD_BYTES)
    folder = Path(current_app.config["UPLOAD_DIR"]) / "incoming"
    folder.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=folder, suffix=".xlsx", delete=False)
    path = Path(handle.name)
    try:
        with handle:
            size = 0
            while chunk := storage.stream.read(1024 * 1024):
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise SourceRejected("文件超过10MB上限，请按月份拆分导出后分别导入")
                handle.write(chunk)
    except BaseException as error:
        path.unlink(missing_ok=True)
        if is_disk_full(error):
            check_room(MAX_UPLOAD_BYTES)  # says 磁盘空间不足 with the folder and the free space
        raise
    return path


def _create(form: ImportForm) -> list[Batch]:
    """Create what a valid download dialog asks for."""
    codes = form.kinds.data or list(DOWNLOAD_KINDS)
    return create_download_batches(current_user, form.chosen_companies(), channel=form.channel.data,
                                   data_type=form.data_type.data, months=form.chosen_months(), type_codes=codes)


def _create_file_batches(form: ImportForm) -> list[dict]:
    """One batch per chosen file, in the order chosen, each refused or accepted on its own.

    Returns what happened to each file: {"name", "batch" (or None), "error" (or None), "error_list"
    (the 错误清单's address of a file refused for unreadable rows, or None)}. Each file is parsed
    as it is received (receive_file), so a refusal is said here, never by a failed batch. The
    batches of one company then run one after another in this order (jobs.tasks).
    """
    company = form.chosen_companies()[0]
    outcomes = []
    for storage in form.chosen_files():
        name = storage.filename
        outcome = {"name": name, "batch": None, "error": None, "error_list": None}
        outcomes.append(outcome)
        try:
            check_file_name(name)
            path = _save_upload(storage)
        except SourceRejected as exc:
            outcome["error"] = str(exc)
            continue
        try:
            outcome["batch"] = create_file_batch(current_user, company, receive_file(company, path), name)
        except RowsRejected as exc:
            outcome["error"] = str(exc)
            if token := keep_refused(current_user, name, exc):
                outcome["error_list"] = url_for("batches.refused_error_list", token=token)
        except SourceRejected as exc:
            outcome["error"] = str(exc)
        finally:
            path.unlink(missing_ok=True)
    return outcomes


def _printable(name: str) -> str:
    """A refused file's name as it can be shown (undecodable or control characters replaced)."""
    return "".join("�" if "\ud800" <= ch <= "\udfff" or ord(ch) < 32 else ch for ch in name)[:120]


def _dialog_notes(form: ImportForm, errors: dict) -> list[str]:
    """What the chosen channel needs or has left, per chosen company, shown before submitting; what
    a refusal already says in red is not said again (docs/rules.md, 导入 dialog)."""
    if form.method.data != Method.DOWNLOAD or not form.tax_ids.data:
        return []
    notes = []
    months = form.chosen_months() if form.period_holds() else []
    for company in form.chosen_companies():
        problem = missing_prerequisites(company, form.channel.data)
        if problem:
            notes.append(problem)
        elif form.leqi_applies() and months:
            early = months_before_leqi(company, months)
            kept = [m for m in months if m not in early]
            if not kept:  # submitting is refused (forms._leqi_covers): say that, not what a batch would skip
                notes.append(leqi_refusal(company))
            elif early:
                notes.append(f"{company.name}：{leqi_note(company, early).text()}（提交后这些月份不下载）")
            if kept:
                notes.append(_quota_note(company, kept, form.kinds.data or list(DOWNLOAD_KINDS)))
    return [note for note in notes if not any(note in str(error) for error in errors.values())]


def _sandbox_note() -> str | None:
    """With a channel pointed at the sandbox tax bureau, which tax IDs it knows (docs/rules.md,
    沙箱); None against a real bureau."""
    config = current_app.config
    if "sandbox" not in {(config.get(k) or "sandbox").strip().lower() for k in ("LEQI_BASE_URL", "RPA_BASE_URL")}:
        return None
    from channels.sandbox import known_companies

    companies = known_companies(config["SANDBOX_DB"])
    companies = [c for c in companies if c["tax_id"] not in _registered_elsewhere([c["tax_id"] for c in companies])]
    if not companies:
        return "当前连接的是沙箱税局，只能下载沙箱税号的发票"
    known = "；".join(f"{c['tax_id']}（{c['name']}，"
                     + (f"乐企自 {c['leqi_since']} 起" if c["leqi_enabled"] and c["leqi_since"]
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
                blocked.append(f"{month} {DOWNLOAD_KINDS[code]}（今日剩 {left['today']} 次，本月剩 "
                               f"{left['month']}/{left['limit']} 次）")
    rule = quota_rules.RULE_TEXT
    if not blocked:
        return f"{company.name}：所选 {len(months)} 个月份的乐企下载今日均有额度（{rule}）"
    shown = "；".join(blocked[:6]) + (f" 等 {len(blocked)} 项" if len(blocked) > 6 else "")
    return f"{company.name}：乐企额度不足，提交后其余种类立即下载，以下月份的种类等待额度后自动下载：{shown}（{rule}）"


def _render_dialog(form: ImportForm, errors: dict):
    """The dialog with its errors and the notes for what is chosen."""
    sandbox = _sandbox_note() if form.method.data == Method.DOWNLOAD else None
    return render_template("batches/_import_dialog.html", form=form, errors=errors, notes=_dialog_notes(form, errors),
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
    if not form.validate_on_submit():
        if form.method.data == Method.FILE:
            return _errors_only(form, messages(form))
        return _render_dialog(form, messages(form))
    if form.method.data == Method.FILE:
        return _file_outcome(form, _create_file_batches(form))
    try:
        return _created(_create(form))
    except SourceRejected as exc:  # a company's settings changed after the form was checked
        return _render_dialog(form, {"tax_ids": str(exc)})


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
    result = render_template("batches/_import_result.html", outcomes=outcomes,
                             created="、".join(b.batch_no for b in created))
    return htmx_response(result, trigger="batches-created")  # the list behind the dialog shows them at once


def _filtered_batches():
    """The list's query: the user's companies only, narrowed by the filter fields."""
    query = select(Batch).where(Batch.company_id.in_(permitted_company_ids(current_user)))
    if tax_id := params.arg("tax_id", params.tax_id):
        query = query.where(Batch.tax_id == tax_id)
    if status := params.arg("status", lambda text: params.choice(text, BatchStatus, "执行状态")):
        query = query.where(Batch.status == status)
    if method := params.arg("method", lambda text: params.choice(text, Method, "导入方式")):
        query = query.where(Batch.method == method)
    if day := params.arg("date_from", params.day):
        query = query.where(Batch.created_at >= datetime.combine(day, time()))
    if day := params.arg("date_to", params.day):
        query = query.where(Batch.created_at < datetime.combine(day + timedelta(days=1), time()))
    return query.options(joinedload(Batch.org)).order_by(Batch.created_at.desc(), Batch.id.desc())


def _page_context(batches: list[Batch], message: str | None = None) -> dict:
    """What the rows need beyond the batches: their subtasks' facts (two queries for the page), and
    which of them still run, for the page's one poller."""
    facts = page_facts([b.id for b in batches])
    live = [b for b in batches if b.status in BatchStatus.ACTIVE]
    created_nos = [n for n in _created_arg().split("、") if n]
    nos = ",".join(f"{b.batch_no}.{facts[b.id].signature(b)}" for b in live)
    return {"facts": facts, "message": message, "notice": _created_notice(created_nos),
            "poll_url": url_for("batches.live", nos=nos, created="、".join(created_nos) or None) if live else None,
            "poll_every": poll_every(live, facts)}


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
    pagination = paginate(_filtered_batches(), current_app.config["PAGE_SIZE"])
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
    return render_template("batches/detail.html", **_detail_context(batch_for(current_user, batch_no)))


@bp.route("/<batch_no>/live")
def detail_live(batch_no):
    """The detail page's one poll: its subtasks and its 错误清单 as they stand now, swapped out of band,
    and the poller itself again while the batch still runs (a finished batch's page stops asking)."""
    return render_template("batches/_detail_live.html", **_detail_context(batch_for(current_user, batch_no)))


def _detail_context(batch: Batch) -> dict:
    """What the detail page and its poll show of one batch, and how often the page asks again."""
    facts = page_facts([batch.id])
    running = batch.status in BatchStatus.ACTIVE
    return {"batch": batch, "facts": facts, "error_rows": error_rows(batch),
            "unanswered": unanswered_keys(batch.id) if batch.data_type == DataType.USAGE else [],
            "poll_url": url_for("batches.detail_live", batch_no=batch.batch_no) if running else None,
            "poll_every": poll_every([batch] if running else [], facts)}


ERROR_LIST_HEADERS = ("工作表", "行号", "列", "单元格内容", "问题")


def error_rows(batch: Batch) -> list[dict]:
    """A refused file's unreadable rows, as the parse job kept them (empty for other batches)."""
    return json.loads(batch.error_rows) if batch.error_rows else []


def _error_list_download(rows: list[dict], name: str) -> Response:
    """错误清单: every unreadable row of a refused file, one per line, to fix the file against."""
    from webapp.xlsx_stream import Workbook

    buffer = io.BytesIO()
    with Workbook(buffer) as workbook:
        sheet = workbook.add_sheet("错误清单", [16, 8, 20, 30, 40])
        sheet.append(list(ERROR_LIST_HEADERS))
        for row in rows:
            sheet.append([row["sheet"], row["row"], row["column"], row["value"], row["why"]], "tctt")
    return xlsx_download(buffer.getvalue(), f"错误清单_{name}.xlsx")  # no-store: auth._security_headers


@bp.route("/<batch_no>/errors.xlsx")
def error_list(batch_no):
    """The 错误清单 of a batch whose file was refused by its parse (a batch left by an older version)."""
    batch = batch_for(current_user, batch_no)
    rows = error_rows(batch) if batch.status == BatchStatus.FAILED else []
    if not rows:
        abort(404)
    return _error_list_download(rows, batch.batch_no)


@bp.route("/refused/<token>/errors.xlsx")
def refused_error_list(token):
    """The 错误清单 of a file refused as it was received, from the import dialog's answer: only for
    the user who uploaded it, for a day (webapp.batches.refused); anything else is 404."""
    record = refused_rows(current_user, token)
    if record is None:
        abort(404)
    return _error_list_download(record["rows"], Path(record["file_name"]).stem)


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
        return [(batch, (["文件数据预处理（生成月份子任务）"] if reparse else [])
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
    question = render_template("batches/_confirm.html", action=action, words=words, plan=plan,
                               hidden=[(k, v) for k in request.form for v in request.form.getlist(k)
                                       if k != "csrf_token"])
    return question + '<div id="batch-message" hx-swap-oob="true"></div>'  # an earlier hint no longer holds


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


@bp.record_once
def _template_helpers(state) -> None:
    """What the batch templates say of a batch and its months (webapp.batches.facts, subtask_label), as
    app-wide template globals registered by this feature, so that webapp.web, below every feature,
    names none of them (README, Layout)."""
    from webapp.batches import facts

    state.app.jinja_env.globals.update(mismatch=facts.mismatch, waiting_text=facts.waiting_text,
                                       row_reason=facts.row_reason, periods_text=facts.periods_text,
                                       counts_scope=facts.counts_scope, subtask_label=subtask_label)
