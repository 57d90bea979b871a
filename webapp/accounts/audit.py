"""审计日志: one row per action worth answering for later — who, when, what, on what, from where.

`record()` is the one way in. It writes in its own transaction, so call it once the action it
describes has committed (a rolled-back action leaves no record). Rows are kept at least a year:
`purge()` only ever removes rows older than AUDIT_KEEP_DAYS days (a setting, default RETENTION_DAYS: 365).
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta

from flask import current_app, has_request_context, request
from flask_login import current_user
from sqlalchemy import delete, select

from webapp.clock import now, stored
from webapp.extensions import db
from webapp.models import AuditLog, User
from webapp.transactions import write_transaction

RETENTION_DAYS = 365
ACTIONS = {
    "login.success": "登录成功",
    "login.failure": "登录失败",
    "logout": "退出登录",
    "batch.create": "创建导入批次",
    "batch.terminate": "终止导入批次",
    "batch.retry": "重试导入批次",
    "schedule.create": "创建自动更新计划",
    "schedule.run": "执行自动更新计划",
    "schedule.enable": "启用自动更新计划",
    "schedule.disable": "停用自动更新计划",
    "schedule.delete": "删除自动更新计划",
    "company.save": "保存企业信息",
    "user.save": "保存用户",
    "grants.change": "修改授权企业",
    "settings.change": "修改参数配置",
    "backup.request": "立即备份",
    "backup.download": "下载备份",
}


def _acting_user(actor: User | str | None) -> tuple[User | None, str]:
    """Who acts: the given user or name, else the logged-in user, else the system (scheduler, CLI)."""
    if isinstance(actor, str):
        return None, actor[:64]
    if actor is None and has_request_context() and current_user.is_authenticated:
        actor = current_user._get_current_object()
    if actor is None:
        return None, "系统"
    return actor, actor.username


def record(action: str, target: str = "", *, actor: User | str | None = None, org_id: int | None = None,
           **details) -> AuditLog:
    """Write one audit row now, in its own transaction; `details` are kept as JSON."""
    user, name = _acting_user(actor)
    entry = AuditLog(at=now(), org_id=org_id or (user.org_id if user else None),
                     user_id=user.id if user else None, username=name, action=action, target=str(target)[:200],
                     details=json.dumps(details, ensure_ascii=False, default=str) if details else "",
                     address=(request.remote_addr or "")[:64] if has_request_context() else None)
    with write_transaction():
        db.session.add(entry)
    return entry


def retention_days() -> int:
    """How many days audit rows are kept: AUDIT_KEEP_DAYS (README, Configuration), default 365."""
    return int(current_app.config.get("AUDIT_KEEP_DAYS", RETENTION_DAYS))


def purge(moment: datetime | None = None) -> int:
    """Remove rows older than the retention period (never younger ones); returns how many."""
    cutoff = (stored(moment) if moment else now()) - timedelta(days=retention_days())
    with write_transaction():
        removed = db.session.execute(delete(AuditLog).where(AuditLog.at < cutoff)).rowcount
    return removed or 0


_last_purge: dict[str, object] = {}


def purge_daily() -> int:
    """Purge at most once a day per process (called on each successful login, so an install that
    is used purges without a cron job); `flask --app wsgi audit purge` does it on demand."""
    today = now().date()
    if _last_purge.get("day") == today:
        return 0
    _last_purge["day"] = today
    return purge()


def org_query(org_id: int, *, username: str = "", action: str = "", date_from=None, date_to=None):
    """An org's rows, newest first, narrowed by user name, action and day range (inclusive)."""
    query = select(AuditLog).where(AuditLog.org_id == org_id)
    if username:
        query = query.where(AuditLog.username == username)
    if action:
        query = query.where(AuditLog.action == action)
    if date_from:
        query = query.where(AuditLog.at >= datetime.combine(date_from, datetime.min.time()))
    if date_to:
        query = query.where(AuditLog.at < datetime.combine(date_to, datetime.min.time()) + timedelta(days=1))
    return query.order_by(AuditLog.at.desc(), AuditLog.id.desc())


def details_text(entry: AuditLog) -> str:
    """The details as `key：value` pairs for people (the page and the export)."""
    if not entry.details:
        return ""
    data = json.loads(entry.details)
    return "；".join(f"{key}：{', '.join(map(str, value)) if isinstance(value, list) else value}"
                    for key, value in data.items())


def write_xlsx(entries, target) -> int:
    """The rows as a workbook (formula-safe text cells, see export.safe_text); returns how many."""
    from openpyxl import Workbook

    from webapp.pool.export import safe_text

    book = Workbook(write_only=True)
    sheet = book.create_sheet("审计日志")
    sheet.append(["时间", "用户", "操作", "对象", "详情", "地址"])
    count = 0
    for entry in entries:
        sheet.append([entry.at.strftime("%Y-%m-%d %H:%M:%S"), safe_text(entry.username),
                      ACTIONS.get(entry.action, entry.action), safe_text(entry.target),
                      safe_text(details_text(entry)), safe_text(entry.address)])
        count += 1
    book.save(target)
    return count


def init_app(app) -> None:
    """`flask --app wsgi audit purge`: remove rows older than a year now (prints how many)."""
    import click
    from flask.cli import AppGroup

    group = AppGroup("audit", help="审计日志")

    @group.command("purge")
    def purge_command():
        """Remove audit rows older than 365 days (never younger ones)."""
        click.echo(json.dumps({"removed": purge(), "retention_days": retention_days()}, ensure_ascii=False))

    app.cli.add_command(group)
