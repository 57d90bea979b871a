"""E-mail to the admins when something needs them and nobody is looking: a scheduled (自动更新)
batch ended with failures, a month has waited for quota too long, a process keeps restarting, or
the disk is running out of room. The scheduler process calls send_due every ALERT_INTERVAL.

One mail per event: each event has a key (SentAlert.key, unique), so a restart of the scheduler or a
re-check never mails twice. Mail never breaks the caller: an SMTP failure is logged, ends this look
(the rest wait for the next one, so a dead server costs one time-out per look) and is tried again
RETRY_AFTER later, at most MAX_ATTEMPTS times.
"""
from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app, url_for
from sqlalchemy import delete, select

from webapp.clock import now
from webapp.extensions import db
from webapp.health import checks
from webapp.health.mail import mail_configured, send_mail
from webapp.models import Batch, ScheduleRun, SentAlert, Subtask, User
from webapp.statuses import AlertKind, BatchStatus, HealthStatus, Reason, Role, SubtaskStatus
from webapp.transactions import write_transaction

log = logging.getLogger(__name__)
ALERT_INTERVAL = 60  # seconds between two looks for due alerts in the scheduler process
MAX_ATTEMPTS = 5
RETRY_AFTER = timedelta(minutes=5)
LOOKBACK = timedelta(days=2)  # a batch that failed longer ago than this is old news, not mailed
RUN_SPAN = timedelta(days=40)  # a monthly run's batches finish well within this
DISK_KEY = "disk_low"  # one open disk episode at a time; its row goes when the disk is fine again


@dataclass
class Alert:
    """One event worth a mail: its key, its kind, whose admins, and what the mail says and links to."""

    key: str
    kind: AlertKind
    org_id: int | None  # None: every org's admins (the server is shared)
    lines: list[str]
    endpoint: str
    values: dict = field(default_factory=dict)

    def subject(self) -> str:
        """The mail's subject: the product and the kind of event."""
        return f"【历史发票数据同步】{self.kind.label}"

    def body(self) -> str:
        """The mail's text: what happened, and the page to look at."""
        return "\n".join([*self.lines, "", f"查看详情：{page_link(self.endpoint, **self.values)}", "",
                          "此邮件由系统自动发送；同一事件只发送一次。"])


def page_link(endpoint: str, **values) -> str:
    """An absolute link to a page, on PUBLIC_URL (the scheduler has no request to take a host from)."""
    base = current_app.config.get("PUBLIC_URL") or "http://127.0.0.1:5000"
    with current_app.test_request_context(base_url=base):
        return url_for(endpoint, _external=True, **values)


def failed_scheduled_batches(moment: datetime) -> list[Alert]:
    """自动更新 batches that ended recently with failed months (部分执行成功 or 全部执行失败)."""
    runs = db.session.scalars(select(ScheduleRun).where(ScheduleRun.started_at >= moment - RUN_SPAN)).all()
    numbers = [number for run in runs for number in run.batch_nos]
    if not numbers:
        return []
    batches = db.session.scalars(select(Batch).where(
        Batch.batch_no.in_(numbers), Batch.status.in_([BatchStatus.PARTIAL, BatchStatus.FAILED]),
        Batch.finished_at >= moment - LOOKBACK)).all()
    return [Alert(f"{AlertKind.BATCH_FAILED}:{b.batch_no}", AlertKind.BATCH_FAILED, b.org_id,
                  [f"自动更新批次 {b.batch_no}（{b.seller_name}，{b.tax_id}，{b.period_from} 至 {b.period_to}）"
                   f"执行结束：{BatchStatus(b.status).label}，成功 {b.success} / 共 {b.total} 份。",
                   "请打开批次查看失败月份的原因，处理后可点“重试”。"],
                  "batches.detail", {"batch_no": b.batch_no}) for b in batches]


def long_quota_waits(moment: datetime) -> list[Alert]:
    """Batches with months still waiting for the 乐企 quota (等待额度: their reason code, docs/rules.md,
    失败与等待原因) longer than QUOTA_WAIT_ALERT_HOURS since created."""
    hours = current_app.config["QUOTA_WAIT_ALERT_HOURS"]
    rows = db.session.execute(select(Batch, Subtask.period).join(Subtask, Subtask.batch_id == Batch.id).where(
        Subtask.status == SubtaskStatus.WAITING, Subtask.error_code == Reason.QUOTA_WAIT,
        Batch.created_at <= moment - timedelta(hours=hours))
        .order_by(Batch.id, Subtask.period)).all()
    months: dict[Batch, list[str]] = {}
    for batch, period in rows:
        months.setdefault(batch, []).append(period)
    return [Alert(f"{AlertKind.QUOTA_WAIT}:{b.batch_no}", AlertKind.QUOTA_WAIT, b.org_id,
                  [f"批次 {b.batch_no}（{b.seller_name}，{b.tax_id}）的月份 {'、'.join(periods)} "
                   f"已等待乐企下载额度超过 {hours:g} 小时（创建于 {b.created_at:%Y-%m-%d %H:%M}）。",
                   "额度恢复后会自动执行；如需尽快取得数据，可改用 RPA 通道或导入电子税局文件。"],
                  "batches.detail", {"batch_no": b.batch_no}) for b, periods in months.items()]


def restarting_processes(moment: datetime) -> list[Alert]:
    """Processes the supervisor gave up on (FATAL), or restarted RESTARTS_WARN times within an hour."""
    alerts = []
    for name, process in (checks.supervised() or {}).items():
        recent = checks.restarts_within_window(process, moment.timestamp())
        if process.get("state") == "FATAL":
            key, text = f"{name}:fatal:{process.get('since')}", f"进程 {name} 反复退出，守护程序已停止重启它。"
        elif len(recent) >= checks.RESTARTS_WARN:
            key, text = (f"{name}:restarts:{int(min(recent))}",
                         f"进程 {name} 一小时内意外退出并重启了 {len(recent)} 次。")
        else:
            continue
        alerts.append(Alert(f"{AlertKind.PROCESS_RESTARTS}:{key}", AlertKind.PROCESS_RESTARTS, None,
                            [text, "请在服务器上查看该进程的日志（make run 的输出）并处理原因。"],
                            "health.status_page"))
    return alerts


def low_disk(_moment: datetime) -> list[Alert]:
    """The disk below DISK_WARN_MB: told before it is full. Once it is fine again the episode's row is
    removed, so that the next time it runs low is mailed again."""
    finding = checks.disk_finding()
    if finding.status == HealthStatus.OK:
        with write_transaction():
            db.session.execute(delete(SentAlert).where(SentAlert.key == DISK_KEY))
        return []
    return [Alert(DISK_KEY, AlertKind.DISK_LOW, None,
                  [finding.message + "。", "磁盘写满后无法导入文件，任务队列也会停止；请尽快清理或扩容。"],
                  "health.status_page")]


SOURCES = (failed_scheduled_batches, long_quota_waits, restarting_processes, low_disk)


def _from(source, moment: datetime) -> list[Alert]:
    """One source's alerts; a source that fails (an unreadable supervisor file, say) is logged and
    keeps no other source from being mailed."""
    try:
        return source(moment)
    except Exception:
        log.exception("alert source %s failed", source.__name__)
        db.session.rollback()
        return []


def admin_addresses(org_id: int | None) -> list[str]:
    """The e-mail addresses of the active admins (of one org, or of every org)."""
    query = select(User.email).where(User.role == Role.ADMIN, User.active.is_(True), User.email.is_not(None),
                                     User.email != "")
    if org_id is not None:
        query = query.where(User.org_id == org_id)
    return sorted(set(db.session.scalars(query)))


def _claim(alert: Alert, moment: datetime) -> SentAlert | None:
    """The event's row, with this attempt counted, when a mail is due now; None when it was sent,
    its attempts are used up, or the last failed one was too recent."""
    with write_transaction():
        row = db.session.scalar(select(SentAlert).where(SentAlert.key == alert.key).with_for_update())
        if row is None:
            row = SentAlert(key=alert.key, kind=alert.kind, created_at=moment, attempts=0)
            db.session.add(row)
        elif row.sent_at or row.attempts >= MAX_ATTEMPTS or (row.last_attempt_at and
                                                              moment - row.last_attempt_at < RETRY_AFTER):
            return None
        row.attempts += 1
        row.last_attempt_at = moment
    return row


def send_due(moment: datetime | None = None) -> dict:
    """Mail every due alert once; SMTP trouble is logged and retried later, never raised."""
    moment = moment or now()
    alerts = [alert for source in SOURCES for alert in _from(source, moment)]
    config = current_app.config
    if not mail_configured(config):
        return {"due": len(alerts), "sent": 0}
    sent = 0
    for alert in alerts:
        recipients = admin_addresses(alert.org_id)
        if not recipients or (row := _claim(alert, moment)) is None:
            continue
        try:
            send_mail(config, recipients, alert.subject(), alert.body())
        except (OSError, smtplib.SMTPException) as error:
            log.warning("alert %s not mailed (attempt %d of %d): %s", alert.key, row.attempts, MAX_ATTEMPTS, error)
            with write_transaction():
                row.error = type(error).__name__
            break  # the mail server is down or refusing: the other alerts wait for the next look
        else:
            with write_transaction():
                row.sent_at, row.error = now(), None
            sent += 1
    return {"due": len(alerts), "sent": sent}



def recent_alerts(limit: int = 10) -> list[SentAlert]:
    """The last alert e-mails sent or tried, newest first: 系统状态 shows them, failures included."""
    return list(db.session.scalars(select(SentAlert).where(SentAlert.attempts > 0)
                                   .order_by(SentAlert.created_at.desc(), SentAlert.id.desc()).limit(limit)))
