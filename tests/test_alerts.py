"""Alert e-mail to the admins, received by a real SMTP server (aiosmtpd) this test starts: once per
event whatever restarts or re-checks happen, in Chinese, with a link to the page to look at; an
SMTP server that is down breaks nothing and the mail goes once it is back."""
from __future__ import annotations

import email
import json
import time
from datetime import timedelta
from email import policy

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from tests.conftest import DEMO_TAX_ID, login
from tests.servers import free_port
from webapp import autoupdate
from webapp.batches import create_download_batches, reason_values, refresh_batch
from webapp.clock import now
from webapp.extensions import db
from webapp.health import alerts
from webapp.health.checks import processes_file
from webapp.models import Batch, Company, ScheduleRun, SentAlert, Subtask, User
from webapp.statuses import Reason, SubtaskStatus
from webapp.transactions import write_transaction

PUBLIC_URL = "http://invoices.example:8080"


class Inbox:
    """What the SMTP server received: each mail parsed as a mail client would."""

    def __init__(self):
        self.mails = []

    async def handle_DATA(self, server, session, envelope):
        self.mails.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    def of_kind(self, words: str) -> list:
        return [m for m in self.mails if words in m["Subject"]]


def start_smtp(port: int):
    """A real SMTP server on a loopback port; returns (controller, inbox)."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    return controller, inbox


@pytest.fixture
def smtp(app):
    """The app configured to mail through a real SMTP server; the admin has an address."""
    port = free_port()
    controller, inbox = start_smtp(port)
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=port, SMTP_FROM="invoice-sync@example.com",
                      PUBLIC_URL=PUBLIC_URL)
    with app.app_context():
        with write_transaction():
            db.session.execute(update(User).where(User.username == "admin").values(email="admin@example.com"))
        db.session.remove()
    yield inbox
    controller.stop()


def failed_scheduled_batch(app) -> str:
    """A 自动更新 run whose batch ended with every month failed (as the bureau refusing would leave it)."""
    with app.app_context():
        admin = db.session.scalar(select(User).filter_by(username="admin"))
        company = db.session.scalar(select(Company).filter_by(tax_id=DEMO_TAX_ID))
        schedule = autoupdate.create_schedule(admin, invoices=True, usage=False, now=now())
        [batch] = create_download_batches(admin, [company], channel="leqi", data_type="invoices",
                                          months=[f"{now():%Y-%m}"], type_codes=["81"])
        with write_transaction():
            db.session.execute(update(Subtask).where(Subtask.batch_id == batch.id)
                               .values(status=SubtaskStatus.FAILED, **reason_values(
                                   Reason.CHANNEL_REFUSED, "乐企：请求被拒绝", channel="乐企", message="请联系管理员")))
            refresh_batch(batch.id)
            db.session.add(ScheduleRun(schedule_id=schedule.id, period=f"{now():%Y-%m}", started_at=now(),
                                       trigger="due", batch_nos=[batch.batch_no]))
        number = batch.batch_no
        db.session.remove()
    return number


def scheduler_cycle(app) -> None:
    """One cycle of a freshly started scheduler process (a restart each time): it mails what is due."""
    from jobs import queue
    from jobs.scheduler import ReconcilingScheduler

    with app.app_context():
        ReconcilingScheduler(queue=queue.get_queue(), connection=queue.redis_connection()).enqueue_jobs()
        db.session.remove()


def test_a_failed_scheduled_batch_is_mailed_once_in_chinese_with_its_link(app, smtp):
    number = failed_scheduled_batch(app)
    for _ in range(3):  # three scheduler starts, three looks: one mail
        scheduler_cycle(app)
    [mail] = smtp.of_kind("自动更新批次执行失败")
    assert mail["To"] == "admin@example.com"
    body = mail.get_content()
    assert number in body and "全部执行失败" in body and "重试" in body
    assert f"{PUBLIC_URL}/batches/{number}" in body
    assert len(smtp.mails) == 1


def test_smtp_down_breaks_nothing_and_the_mail_goes_once_it_is_back(app, smtp):
    number = failed_scheduled_batch(app)
    down_port = free_port()
    app.config["SMTP_PORT"] = down_port
    with app.app_context():
        assert alerts.send_due() == {"due": 1, "sent": 0}  # refused connection: logged, not raised
        assert alerts.send_due()["sent"] == 0  # too soon to try again
        row = db.session.scalar(select(SentAlert))
        assert row.attempts == 1 and row.sent_at is None and row.error
        db.session.remove()
    controller, inbox = start_smtp(down_port)
    try:
        app.config["CLOCK_NOW"] = now_later = (time_now(app) + alerts.RETRY_AFTER + timedelta(seconds=1))
        with app.app_context():
            assert alerts.send_due(now_later)["sent"] == 1
            assert alerts.send_due(now_later + alerts.RETRY_AFTER * 2)["sent"] == 0
            db.session.remove()
        [mail] = inbox.mails
        assert number in mail.get_content()
    finally:
        controller.stop()
    client = app.test_client()
    login(client, "admin", "admin123")
    page = client.get("/admin/status").text
    assert "自动更新批次执行失败" in page and "已发送" in page


def time_now(app):
    with app.app_context():
        return now()


def test_low_disk_restarts_and_long_quota_waits_are_mailed_once_each(app, smtp):
    """The disk below DISK_WARN_MB (mailed again only after it recovered), a process restarted three
    times within the hour, and a month waiting for quota past QUOTA_WAIT_ALERT_HOURS (by its reason code: a month
    waiting as long for the bureau to prepare its data is no quota wait)."""
    app.config["DISK_WARN_MB"] = 10 ** 9  # any disk is "low" against this: a real threshold, not a mock
    moment = time.time()
    with app.app_context():
        path = processes_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"updated": moment, "processes": {
            "worker": {"state": "RUNNING", "restarts": [moment - 300, moment - 200, moment - 100], "since": moment}}}))
        admin = db.session.scalar(select(User).filter_by(username="admin"))
        company = db.session.scalar(select(Company).filter_by(tax_id=DEMO_TAX_ID))
        [batch, preparing] = [create_download_batches(admin, [company], channel=channel, data_type="invoices",
                                                      months=[f"{now():%Y-%m}"], type_codes=["81"])[0]
                              for channel in ("leqi", "rpa")]
        with write_transaction():  # the second month waits for the bureau to prepare its data, not for quota
            for one, why in ((batch, reason_values(Reason.QUOTA_WAIT, kinds="", day=f"{now():%Y-%m-%d}")),
                             (preparing, reason_values(Reason.DATA_PREPARING, channel="RPA"))):
                db.session.execute(update(Subtask).where(Subtask.batch_id == one.id).values(
                    status=SubtaskStatus.WAITING, **why))
                db.session.execute(update(Batch).where(Batch.id == one.id)
                                   .values(created_at=now() - timedelta(hours=50)))
        waiting_no, preparing_no = batch.batch_no, preparing.batch_no
        db.session.remove()
    for _ in range(2):
        scheduler_cycle(app)
    [disk] = smtp.of_kind("磁盘空间不足")
    assert "磁盘空间不足" in disk.get_content() and f"{PUBLIC_URL}/admin/status" in disk.get_content()
    [restarts] = smtp.of_kind("进程反复重启")
    assert "worker" in restarts.get_content() and "3 次" in restarts.get_content()
    [waiting] = smtp.of_kind("等待乐企额度过久")
    assert waiting_no in waiting.get_content() and "48 小时" in waiting.get_content()
    assert preparing_no not in waiting.get_content() and len(smtp.mails) == 3

    app.config["DISK_WARN_MB"] = 1  # the disk recovers: the episode ends; running low again is a new mail
    scheduler_cycle(app)
    app.config["DISK_WARN_MB"] = 10 ** 9
    scheduler_cycle(app)
    assert len(smtp.of_kind("磁盘空间不足")) == 2 and len(smtp.mails) == 4
