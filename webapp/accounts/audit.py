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
from sqlalchemy import delete, insert, select

from webapp.accounts.permissions import permitted_company_ids
from webapp.clock import now, stored
from webapp.extensions import db
from webapp.models import AuditLog, Batch, Company, User, audit_companies
from webapp.statuses import Channel, DataType, DraftForm, Method, RedFlushReason, Role, RunTrigger
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
    "redflush.draft": "生成红冲草稿",
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
        db.session.flush()
        named = named_companies(entry.org_id, str(target), json.loads(entry.details) if entry.details else {})
        if named:
            db.session.execute(insert(audit_companies), [{"audit_id": entry.id, "company_id": c} for c in named])
    return entry


def _words(value) -> set[str]:
    """Every text in a details value (lists and mappings walked through)."""
    if isinstance(value, dict):
        return set().union(*map(_words, value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*map(_words, value)) if value else set()
    return {str(value)} if value is not None else set()


def named_companies(org_id: int | None, target: str, details: dict) -> set[int]:
    """The companies a row names: a tax ID of its org or a batch number of one of its batches, in the
    target (several joined by 、) or anywhere in the details. A viewer must be granted each of them
    to read the row (org_query), so no batch number or tax ID reaches an admin not granted it."""
    words = set(target.split("、")) | _words(details)
    if not words:
        return set()
    by_tax_id = select(Company.id).where(Company.org_id == org_id, Company.tax_id.in_(words))
    by_batch = select(Batch.company_id).where(Batch.batch_no.in_(words))
    return set(db.session.scalars(by_tax_id.union(by_batch)))


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


def org_query(viewer: User, *, username: str = "", action: str = "", date_from=None, date_to=None):
    """The viewer's org's rows that name no company he is not granted, newest first, narrowed by
    user name, action and day range (inclusive)."""
    hidden = select(audit_companies.c.audit_id).where(audit_companies.c.audit_id == AuditLog.id,
                                                       audit_companies.c.company_id.not_in(permitted_company_ids(viewer)))
    query = select(AuditLog).where(AuditLog.org_id == viewer.org_id, ~hidden.exists())
    if username:
        query = query.where(AuditLog.username == username)
    if action:
        query = query.where(AuditLog.action == action)
    if date_from:
        query = query.where(AuditLog.at >= datetime.combine(date_from, datetime.min.time()))
    if date_to:
        query = query.where(AuditLog.at < datetime.combine(date_to, datetime.min.time()) + timedelta(days=1))
    return query.order_by(AuditLog.at.desc(), AuditLog.id.desc())


# What each detail key means, as the screens name it (the keys are what `record()` callers pass).
DETAIL_LABELS = {
    "tax_id": "税号", "method": "导入方式", "channel": "下载通道", "data_type": "数据类型", "file": "文件",
    "periods": "所属期间", "period": "所属期", "name": "企业名称", "receipt_channel": "收票通道",
    "leqi_enabled": "乐企归集已开通", "leqi_since": "乐企开通日期", "etax_account": "电子税局账号",
    "role": "角色", "active": "启用", "password_changed": "已修改密码", "grants": "授权企业",
    "before": "修改前", "after": "修改后", "batch_nos": "批次号", "batches": "批次", "subtasks": "子任务数",
    "parses": "重新解析的文件数", "trigger": "触发方式", "creator": "计划创建人", "what": "更新内容",
    "reason": "原因", "org": "组织", "email": "电子邮箱", "flush_reason": "红冲原因", "draft_form": "生成于",
    "draft_lines": "红冲行（行号:金额）", "draft_amount": "红冲金额", "draft_tax": "红冲税额",
}
# Details whose values are stored codes: shown by their code set's label.
_CODED = {"method": Method, "channel": Channel, "data_type": DataType, "role": Role, "trigger": RunTrigger,
          "flush_reason": RedFlushReason, "draft_form": DraftForm}


def _value_text(key: str, value) -> str:
    """One detail value as people read it: 是/否, a code's label, a list joined by 、, — for nothing."""
    if isinstance(value, bool):
        return "是" if value else "否"
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, list):
        return "、".join(_value_text(key, item) for item in value)
    code_set = _CODED.get(key)
    if code_set and value in code_set:
        return code_set(value).label
    return str(value)


def details_text(entry: AuditLog) -> str:
    """The details as `名称：值` pairs in Chinese, for the page and the export (stored as codes)."""
    if not entry.details:
        return ""
    data = json.loads(entry.details)
    return "；".join(f"{DETAIL_LABELS.get(key, key)}：{_value_text(key, value)}" for key, value in data.items())


def write_xlsx(entries, target) -> int:
    """The rows as a workbook (text cells, never formulas: webapp.xlsx_stream); returns how many."""
    from webapp.xlsx_stream import Workbook

    count = 0
    with Workbook(target) as book:
        sheet = book.add_sheet("审计日志", [20, 14, 18, 30, 60, 16])
        sheet.append(["时间", "用户", "操作", "对象", "详情", "地址"])
        for entry in entries:
            sheet.append([entry.at.strftime("%Y-%m-%d %H:%M:%S"), entry.username,
                          ACTIONS.get(entry.action, entry.action), entry.target, details_text(entry), entry.address])
            count += 1
    return count


def init_app(app) -> None:
    """`flask --app wsgi audit purge`: remove rows older than a year now (prints how many)."""
    from flask.cli import AppGroup

    from webapp.cli import print_json

    group = AppGroup("audit", help="审计日志")

    @group.command("purge")
    def purge_command():
        """Remove audit rows older than 365 days (never younger ones)."""
        print_json({"removed": purge(), "retention_days": retention_days()})

    app.cli.add_command(group)
