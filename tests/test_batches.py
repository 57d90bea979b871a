"""Batches: derived status, 终止 of a really running job, 重试, the reconciler, permissions, CSRF."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
from rq.job import Job
from sqlalchemy import func, select

from channels.records import StagedInvoice
from jobs.queue import IN_PROCESS, get_queue, redis_connection
from jobs.staging import dump_month, read_month
from tests.queue_support import job_state
from webapp.accounts.settings import normalise_goods_name, validate_error_goods
from webapp.batches import derive_status, retry, staging_dir, terminate
from webapp.extensions import db
from webapp.models import Batch, Invoice, Subtask

from .conftest import DEMO_TAX_ID, ROOT, SAMPLES, login

SAMPLE = SAMPLES / "etax-export-2024.xlsx"


@pytest.mark.parametrize("statuses, current, expected", [
    ([], "preprocessing", "preprocessing"),
    ([], "failed", "failed"),
    (["pending", "pending"], "pending", "pending"),
    (["pending", "waiting"], "pending", "pending"),
    (["running", "pending"], "pending", "syncing"),
    (["succeeded", "pending"], "syncing", "syncing"),
    (["succeeded", "succeeded"], "syncing", "succeeded"),
    (["failed", "failed"], "syncing", "failed"),
    (["succeeded", "failed"], "syncing", "partial"),
    (["succeeded", "terminated"], "syncing", "terminated"),
])
def test_batch_status_is_derived_from_subtasks(statuses, current, expected):
    assert derive_status(statuses, current) == expected


def test_list_filters_offer_every_status_and_method_in_the_screens_words(client):
    """The 执行状态 and 导入方式 filters list the codes the rows store, labelled as the rules say
    (docs/rules.md, 批次状态)."""
    page = login(client).get("/batches").text

    def options(name):
        select_ = re.search(rf'<select name="{name}">(.*?)</select>', page, re.S).group(1)
        return dict(re.findall(r'<option value="(\w*)"[^>]*>([^<]+)</option>', select_))
    assert options("status") == {"": "全部", "pending": "待同步", "preprocessing": "数据预处理中", "syncing": "同步中",
                                 "partial": "部分执行成功", "succeeded": "全部执行成功", "failed": "全部执行失败",
                                 "terminated": "已终止"}
    assert options("method") == {"": "全部", "file": "导入电子税局文件", "download": "税局下载"}


@pytest.mark.parametrize("name, normalised", [
    ("(详见销货清单)", "详见销货清单"), ("（详见销货清单）", "详见销货清单"), (" (详见销货清单） ", "详见销货清单"),
    ("原价合计", "原价合计"), ("*蔬菜*鲜蔬菜(特级)", "*蔬菜*鲜蔬菜(特级"),
])
def test_goods_names_lose_only_surrounding_parentheses_and_spaces(name, normalised):
    assert normalise_goods_name(name) == normalised


@pytest.mark.parametrize("value, message",
                         [("详见销货清单，原价合计", "英文逗号"), ("详见销货清单,,原价合计", "不能为空"),
                          ("", "不能为空")])
def test_error_goods_setting_is_validated(value, message):
    with pytest.raises(ValueError, match=message):
        validate_error_goods(value)


def _parsed_batch(app, runner) -> Batch:
    """A file batch parsed in this process, its subtasks queued but not yet run."""
    import json

    from jobs.tasks import parse_upload

    result = runner.invoke(args=["import-file", "--tax-id", DEMO_TAX_ID, "--file", str(SAMPLE), "--as", "caiwu"])
    batch_no = json.loads(result.stdout)["batch_no"]
    batch = db.session.scalar(select(Batch).filter_by(batch_no=batch_no))
    parse_upload(batch.id)
    db.session.expire_all()
    return db.session.scalar(select(Batch).filter_by(batch_no=batch_no))


def _inflate_month(batch: Batch, period: str, copies: int) -> None:
    """Make one month heavy (many distinct invoices) so its subtask runs for seconds."""
    path = staging_dir(batch) / f"{period}.staged"
    heavy = [StagedInvoice(header._replace(key=f"{header.key}-{n}"), lines)
             for n in range(copies) for header, lines in read_month(path)]
    path.write_bytes(dump_month(heavy))


def _start_worker(app) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"], "REDIS_URL": app.config["REDIS_URL"],
           "DATA_DIR": app.config["DATA_DIR"]}
    return subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "worker"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_for(predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.rollback()
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


@pytest.mark.parametrize("in_process, ended", [(False, "stopped"), (True, "finished")])
def test_terminate_stops_a_running_month_and_it_rolls_back(app, runner, in_process, ended):
    """A job in a work horse is killed (a download's month, or a file's month queued again); a file's
    month run in the worker itself (jobs.worker) ends on its own: either way the month commits nothing."""
    with app.app_context():
        batch = _parsed_batch(app, runner)
        _inflate_month(batch, "2024-01", copies=400)
        if not in_process:  # the months' jobs as a retry or the reconciler queues them: in a horse
            for subtask in batch.subtasks:
                job = Job.fetch(subtask.job_id, connection=redis_connection())
                job.meta.pop(IN_PROCESS)
                job.save_meta()
        worker = _start_worker(app)
        try:
            january = _wait_for(lambda: db.session.scalar(
                select(Subtask).filter_by(batch_id=batch.id, period="2024-01", status="running")))
            job_id = january.job_id
            result = terminate([db.session.get(Batch, batch.id)])
            assert result["batches"] == 1 and result["subtasks"] >= 1
            assert _wait_for(lambda: job_state(job_id) == ended)
            db.session.rollback()
            january = db.session.get(Subtask, january.id)
            assert january.status == "terminated" and january.error == "已被用户终止"
            assert db.session.get(Batch, batch.id).status == "terminated"
            assert db.session.scalar(select(func.count()).select_from(Invoice).where(Invoice.month == "2024-01")) == 0
        finally:
            worker.terminate()
            worker.wait(20)


def test_a_file_batch_months_run_on_in_the_job_of_its_first(app, runner):
    """The job of a file's first month takes on the next months one after another (jobs.tasks.run_subtask):
    a month so taken names that job, so the reconciler finds its job alive and leaves it running, and
    every month ends written once."""
    from jobs.reconciler import reconcile

    with app.app_context():
        batch = _parsed_batch(app, runner)
        _inflate_month(batch, "2024-03", copies=400)
        first_job = min(batch.subtasks, key=lambda s: s.period).job_id
        worker = _start_worker(app)
        try:
            march = _wait_for(lambda: db.session.scalar(
                select(Subtask).filter_by(batch_id=batch.id, period="2024-03", status="running")))
            assert march.job_id == first_job
            assert reconcile()["recovered"] == 0
            assert _wait_for(lambda: db.session.get(Batch, batch.id).status == "succeeded")
        finally:
            worker.terminate()
            worker.wait(20)
        db.session.rollback()
        months = db.session.scalars(select(Subtask).filter_by(batch_id=batch.id)).all()
        assert {s.status for s in months} == {"succeeded"}
        assert db.session.scalar(select(func.count()).select_from(Invoice)) == sum(s.success for s in months)


def test_retry_reruns_only_failed_subtasks(app, runner, work):
    with app.app_context():
        batch = _parsed_batch(app, runner)
        (staging_dir(batch) / "2024-05.staged").rename(staging_dir(batch) / "hidden")
        work()
        db.session.rollback()
        batch = db.session.get(Batch, batch.id)
        assert batch.status == "partial"
        attempts_before = {s.period: s.attempts for s in batch.subtasks}
        (staging_dir(batch) / "hidden").rename(staging_dir(batch) / "2024-05.staged")
        assert retry([batch]) == {"subtasks": 1, "parses": 0}
        work()
        db.session.rollback()
        batch = db.session.get(Batch, batch.id)
        assert batch.status == "succeeded"
        assert {s.period: s.attempts for s in batch.subtasks} == {**attempts_before, "2024-05": 1}


def test_reconciler_requeues_work_redis_lost(app, runner, work):
    from jobs.reconciler import reconcile

    with app.app_context():
        batch = _parsed_batch(app, runner)
        redis_connection().flushdb()  # Redis lost everything; the database still knows
        assert len(get_queue()) == 0
        assert reconcile()["requeued"] == 12
        work()
        db.session.rollback()
        assert db.session.get(Batch, batch.id).status == "succeeded"


def test_reconciler_runs_again_a_subtask_whose_worker_died_then_gives_up(app, runner):
    """Idempotent work whose process died is queued again, twice at most; the third death fails it."""
    from datetime import datetime, timedelta

    from rq.job import Job

    from jobs.reconciler import reconcile
    from webapp.transactions import write_transaction

    with app.app_context():
        batch = _parsed_batch(app, runner)
        subtask = db.session.scalar(select(Subtask).filter_by(batch_id=batch.id, period="2024-02"))
        for death in range(3):
            with write_transaction():
                subtask = db.session.get(Subtask, subtask.id)
                subtask.status, subtask.started_at = "running", datetime.now() - timedelta(minutes=5)
            Job.fetch(subtask.job_id, connection=redis_connection()).set_status("failed")  # its process died
            result = reconcile()
            db.session.rollback()
            subtask = db.session.get(Subtask, subtask.id)
            if death < 2:
                assert result["recovered"] == 1 and subtask.status == "pending"
                assert job_state(subtask.job_id) == "queued"
        assert result["failed"] == 1
        assert subtask.status == "failed" and subtask.error_code == "process_died" and "重试" in subtask.error


def test_other_users_cannot_see_or_touch_a_batch(app, client, runner, work):
    import json

    runner.invoke(args=["enterprise", "add", "--tax-id", "91110000MA00000001", "--name", "别家公司"])
    runner.invoke(args=["user", "add", "li", "--password", "secret123", "--grant", "91110000MA00000001"])
    batch_no = json.loads(runner.invoke(args=["import-file", "--tax-id", DEMO_TAX_ID, "--file", str(SAMPLE),
                                              "--as", "caiwu", "--wait"]).stdout)["batch_no"]
    login(client, "li", "secret123")
    assert batch_no not in client.get("/batches").text
    assert client.get(f"/batches/{batch_no}").status_code == 404
    assert client.get(f"/batches/{batch_no}/row").status_code == 404
    assert client.post("/batches/terminate", data={"batch_no": batch_no}).status_code == 404
    assert client.post("/batches/retry", data={"batch_no": batch_no}).status_code == 404
    assert "杭州示例科技有限公司" not in client.get("/batches/import").text
    assert "24706900000000003120" not in client.get("/pool?q=2470").text
    assert client.get("/pool/24706900000000003120").status_code == 404
    response = client.post("/batches/import", data={"data_type": "invoices", "method": "file", "tax_ids": DEMO_TAX_ID,
                                                    "file": (open(SAMPLE, "rb"), "x.xlsx")},
                           content_type="multipart/form-data")
    assert "权限" in response.text
    assert client.get("/admin/companies").status_code == 403


def test_every_page_needs_login(client):
    for path in ("/batches", "/batches/import", "/pool", "/admin/companies", "/batches/X/row"):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_forms_without_csrf_token_are_refused(app):
    app.config["WTF_CSRF_ENABLED"] = True
    client = app.test_client()
    page = client.get("/login").text
    assert 'name="csrf_token"' in page
    assert client.post("/login", data={"username": "caiwu", "password": "caiwu123"}).status_code == 400
