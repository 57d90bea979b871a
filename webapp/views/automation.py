"""自动化设置 and the 【自动更新】 dialog: an org's monthly schedules, private to the org."""
from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask_login import current_user

from webapp import autoupdate
from webapp.clock import now
from webapp.extensions import db
from webapp.lazy import lazy_import
from webapp.transactions import write_transaction

scheduler = lazy_import("jobs.scheduler")  # deferred: RQ Scheduler costs start-up time

bp = Blueprint("automation", __name__, url_prefix="/automation")


def _rows() -> list[dict]:
    """The user's org's schedules, never another org's."""
    return [autoupdate.schedule_json(s, now()) for s in autoupdate.org_schedules(current_user.org_id)]


def _page(message: str | None = None):
    """The schedules table with what an action did, for htmx to swap in."""
    return render_template("automation/_schedules.html", rows=_rows(), message=message)


@bp.route("")
def index():
    """自动化设置: the org's schedules with next run and last runs."""
    return render_template("automation/index.html", rows=_rows(), message=None)


@bp.route("/new", methods=["GET", "POST"])
def new():
    """【自动更新】: ask which updates to create; creates the org's schedule (私有)."""
    if request.method == "GET":
        return render_template("automation/_dialog.html", error=None)
    try:
        schedule = autoupdate.create_schedule(current_user, invoices=bool(request.form.get("invoices")),
                                              usage=bool(request.form.get("usage")), now=now())
    except ValueError as exc:
        return render_template("automation/_dialog.html", error=str(exc))
    scheduler.register_schedules()
    return render_template("automation/_created.html", schedule=autoupdate.schedule_json(schedule, now()))


def _schedule(schedule_id: int):
    """A schedule of the user's org, or 404 so other orgs' schedules stay invisible."""
    schedule = autoupdate.schedule_of_org(current_user.org_id, schedule_id)
    if schedule is None:
        abort(404)
    return schedule


@bp.route("/<int:schedule_id>/<action>", methods=["POST"])
def act(schedule_id: int, action: str):
    """启用 / 停用 / 删除 / 立即执行 one schedule of the user's org."""
    schedule = _schedule(schedule_id)
    if action in ("enable", "disable"):
        autoupdate.set_enabled(schedule, action == "enable", now())
        message = f"已{'启用' if action == 'enable' else '停用'}计划 #{schedule_id}"
    elif action == "delete":
        with write_transaction():
            db.session.delete(schedule)
        message = f"已删除计划 #{schedule_id}（已创建的导入批次保留）"
    elif action == "run":
        run = autoupdate.run_now(schedule, now())
        if run is None:
            message = "上月数据本计划已执行过，不会重复执行"
        elif run.message:
            message = f"计划 #{schedule_id}：{run.message}"
        else:
            message = f"已执行计划 #{schedule_id}：{run.period}，创建 {len(run.batch_nos.split(','))} 个导入批次"
    else:
        abort(404)
    scheduler.register_schedules()
    return _page(message)
