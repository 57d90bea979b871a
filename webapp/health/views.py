"""GET /healthz for monitors (no login, no secrets) and 系统管理 → 系统状态 for admins."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, jsonify, render_template
from flask_login import current_user

from webapp.health import overall, run_checks
from webapp.health.alerts import recent_alerts
from webapp.health.cli import health_json
from webapp.health.mail import mail_configured
from webapp.statuses import HealthStatus
from webapp.web import wants_partial

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """200 when no check is at fault, else 503; the checks by name, status and message only."""
    results = run_checks()
    response = jsonify(health_json(results))
    response.status_code = 503 if overall(results) == HealthStatus.FAULT else 200
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/admin/status")
def status_page():
    """系统状态: the same checks, refreshed live by htmx, and whether alert e-mail is sent."""
    if not current_user.is_authenticated or not current_user.is_admin:
        abort(403)
    results = run_checks()
    context = {"results": results, "overall": overall(results)}
    if wants_partial("health-checks"):
        return render_template("health/_checks.html", **context)
    return render_template("health/status.html", mail_on=mail_configured(current_app.config),
                           alerts=recent_alerts(), **context)
