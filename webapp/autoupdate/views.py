"""自动化设置 and the 【自动更新】 dialog: an org's monthly schedules, private to the org.

Who may do what (README, 自动更新 and permissions): every user of the org sees its schedules, cut
down to the companies they are granted; only admins create, enable, disable, delete or run them.
"""
from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import BooleanField

from webapp import autoupdate
from webapp.accounts import audit
from webapp.accounts.permissions import SCHEDULE_ADMINS_ONLY, may_manage_schedules, visible_schedule
from webapp.background import background
from webapp.clock import now
from webapp.extensions import db
from webapp.forms import Rule
from webapp.models import Schedule
from webapp.transactions import write_transaction

bp = Blueprint("automation", __name__, url_prefix="/automation")
ACTIONS = {"enable": "启用", "disable": "停用", "delete": "删除", "run": "立即执行"}
QUESTIONS = {"run": "立即执行计划 #{id}，下载上月数据？", "delete": "删除计划 #{id}？已创建的导入批次不受影响。"}


class ScheduleForm(FlaskForm):
    """【自动更新】: which updates the new schedule makes; the org may not have them scheduled already.

    CSRF is checked for every POST by CSRFProtect, so the form does not check it again.
    """

    class Meta:
        csrf = False

    invoices = BooleanField("发票明细信息更新", default=True, validators=[Rule(
        autoupdate.check_new_schedule, using=lambda form, field: {"org_id": current_user.org_id, **form.what()})])
    usage = BooleanField("发票用途状态更新")

    def what(self) -> dict:
        return {"invoices": self.invoices.data, "usage": self.usage.data}


def _rows() -> list[dict]:
    """The user's org's schedules, never another org's, showing only the user's companies."""
    return [visible_schedule(autoupdate.schedule_json(s, now()), current_user)
            for s in autoupdate.org_schedules(current_user.org_id)]


def _page(message: str | None = None):
    """The schedules table with what an action did, for htmx to swap in."""
    return render_template("automation/_schedules.html", rows=_rows(), message=message,
                           may_manage=may_manage_schedules(current_user))


def _admins_only() -> None:
    """403 for anyone who may not change schedules (the page says so in Chinese)."""
    if not may_manage_schedules(current_user):
        abort(403, SCHEDULE_ADMINS_ONLY)


@bp.route("")
def index():
    """自动化设置: the org's schedules with next run and last runs."""
    return render_template("automation/index.html", rows=_rows(), message=None, task_code=autoupdate.TASK_CODE,
                           task_name=autoupdate.TASK_NAME, may_manage=may_manage_schedules(current_user))


@bp.route("/new", methods=["GET", "POST"])
def new():
    """【自动更新】: ask which updates to create; creates the org's schedule (私有). Admins only: a
    finance user opening the dialog is told to ask an admin."""
    if not may_manage_schedules(current_user):
        if request.method == "POST":
            _admins_only()
        return render_template("automation/_dialog.html", form=None, denied=SCHEDULE_ADMINS_ONLY)
    form = ScheduleForm(formdata=request.form if request.method == "POST" else None)  # nothing ticked is an answer too
    if not form.validate_on_submit():
        existing = form.is_submitted() and autoupdate.covering_schedule(current_user.org_id, **form.what())
        return render_template("automation/_dialog.html", form=form, existing_id=existing.id if existing else None)
    schedule = autoupdate.create_schedule(current_user, **form.what(), now=now())
    audit.record("schedule.create", f"计划 #{schedule.id}", what=autoupdate.what(schedule))
    background().sync_schedules()
    return render_template("automation/_created.html", schedule=autoupdate.schedule_json(schedule, now()))


def _schedule(schedule_id: int):
    """A schedule of the user's org, or 404 so other orgs' schedules stay invisible."""
    return db.one_or_404(select(Schedule).filter_by(id=schedule_id, org_id=current_user.org_id))


@bp.route("/<int:schedule_id>/<any(run, delete):action>/confirm")
def confirm(schedule_id: int, action: str):
    """立即执行 and 删除 ask first, in the product's dialog (admins only)."""
    _schedule(schedule_id)
    _admins_only()
    return render_template("automation/_confirm.html", schedule_id=schedule_id, action=action, name=ACTIONS[action],
                           question=QUESTIONS[action].format(id=schedule_id))


@bp.route("/<int:schedule_id>/<action>", methods=["POST"])
def act(schedule_id: int, action: str):
    """启用 / 停用 / 删除 / 立即执行 one schedule of the user's org (admins only)."""
    schedule = _schedule(schedule_id)
    if action not in ACTIONS:
        abort(404)
    _admins_only()
    if action in ("enable", "disable"):
        autoupdate.set_enabled(schedule, action == "enable", now())
        message = f"已{ACTIONS[action]}计划 #{schedule_id}"
        audit.record(f"schedule.{action}", f"计划 #{schedule_id}")
    elif action == "delete":
        with write_transaction():
            db.session.delete(schedule)
        message = f"已删除计划 #{schedule_id}（已创建的导入批次保留）"
        audit.record("schedule.delete", f"计划 #{schedule_id}")
    else:
        run = autoupdate.run_now(schedule, now(), current_user._get_current_object())
        if run is None:
            message = "上月数据本计划已执行过，不会重复执行"
        elif run.message:
            message = f"计划 #{schedule_id}：{run.message}"
        else:
            message = f"已执行计划 #{schedule_id}：{run.period}，创建 {len(run.batch_nos)} 个导入批次"
    background().sync_schedules()
    return _page(message) + '<div id="modal" hx-swap-oob="true"></div>'  # the question, if asked, is answered
