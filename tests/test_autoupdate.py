"""自动更新: the 5th-of-month rule in the org's time zone, catch-up, no duplicates, org privacy, UI."""
from __future__ import annotations

import threading
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from webapp import autoupdate
from webapp.extensions import db
from webapp.models import Batch, Schedule, ScheduleRun

from .conftest import DEMO_TAX_ID, cli_json, login

SHANGHAI = ZoneInfo("Asia/Shanghai")
CREATED = datetime(2026, 11, 20, 10, 0, tzinfo=SHANGHAI)


@pytest.fixture
def schedule(app, runner):
    app.config["CLOCK_NOW"] = CREATED
    made = cli_json(runner, "autoupdate", "create", "--as", "admin", "--invoices", "--usage")
    return made


def _run_due(runner, at: str):
    return cli_json(runner, "autoupdate", "run-due", "--now", at)


def test_created_schedule_runs_on_the_5th_for_last_month(runner, schedule):
    assert schedule["job_id"] == f"sim_his_inv_data_import_task_SKDP_S-{schedule['id']}"
    assert schedule["description"] == f"历史发票数据导入定时计划 #{schedule['id']}"
    assert schedule["next_run"] == "2026-12-05T00:00+08:00"
    assert schedule["companies"] == {"leqi": [DEMO_TAX_ID]}
    assert _run_due(runner, "2026-12-04T23:59") == []
    [run] = _run_due(runner, "2026-12-05T00:00")
    assert run["period"] == "2026-11" and run["trigger"] == "due" and len(run["batches"]) == 2
    assert _run_due(runner, "2026-12-05T00:30") == []  # never doubled


def test_the_5th_is_in_the_orgs_time_zone(runner, schedule):
    assert _run_due(runner, "2026-12-04T15:59+00:00") == []  # 23:59 in Shanghai
    assert len(_run_due(runner, "2026-12-04T16:00+00:00")) == 1  # 00:00 on the 5th in Shanghai


def test_missed_runs_are_caught_up_once(runner, schedule):
    runs = _run_due(runner, "2027-02-10T09:00")  # the server was down on Dec 5, Jan 5 and Feb 5
    assert [(r["period"], r["trigger"]) for r in runs] == [("2026-11", "catch_up"), ("2026-12", "catch_up"),
                                                           ("2027-01", "due")]
    assert _run_due(runner, "2027-02-10T10:00") == []


def test_two_schedulers_at_once_never_double_a_run(app, schedule):
    at = datetime(2026, 12, 5, 0, 1, tzinfo=SHANGHAI)
    started, barrier = [], threading.Barrier(4)

    def scheduler_process():
        barrier.wait()
        with app.app_context():
            started.extend(autoupdate.run_due(at))

    threads = [threading.Thread(target=scheduler_process) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(started) == 1
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ScheduleRun)) == 1


def test_batches_come_from_the_schedule_and_obey_the_channel(app, runner, schedule):
    [run] = _run_due(runner, "2026-12-05T00:05")
    with app.app_context():
        batches = db.session.scalars(select(Batch).where(Batch.batch_no.in_(run["batches"]))).all()
        assert {b.data_type for b in batches} == {"invoices", "usage"}
        assert {b.creator_name for b in batches} == {f"自动更新计划 #{schedule['id']}"}
        assert {b.channel for b in batches} == {"leqi"} and {b.period_from for b in batches} == {"2026-11"}


def test_run_now_then_due_run_of_the_same_period_is_not_doubled(app, client, schedule):
    app.config["CLOCK_NOW"] = datetime(2026, 12, 6, 9, 0, tzinfo=SHANGHAI)
    login(client, "admin", "admin123")
    page = client.post(f"/automation/{schedule['id']}/run").text
    assert "已执行计划" in page and "2026-11" in page
    assert "已执行过" in client.post(f"/automation/{schedule['id']}/run").text
    with app.app_context():
        assert autoupdate.run_due(datetime(2026, 12, 6, 10, 0, tzinfo=SHANGHAI)) == []


def test_disable_enable_delete(app, client, runner, schedule):
    login(client, "admin", "admin123")
    assert "已停用" in client.post(f"/automation/{schedule['id']}/disable").text
    assert _run_due(runner, "2026-12-05T01:00") == []
    assert cli_json(runner, "autoupdate", "list", "--as", "caiwu")[0]["next_run"] is None
    client.post(f"/automation/{schedule['id']}/enable")
    assert len(_run_due(runner, "2026-12-05T01:00")) == 1
    assert "已删除" in client.post(f"/automation/{schedule['id']}/delete").text
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Schedule)) == 0
        assert db.session.scalar(select(func.count()).select_from(Batch)) == 2  # batches stay


def test_other_orgs_never_see_or_touch_a_schedule(client, runner, schedule):
    cli_json(runner, "enterprise", "add", "--tax-id", "91110000MA00000009", "--name", "他组织公司", "--org", "其他组织")
    cli_json(runner, "user", "add", "wang", "--password", "secret123", "--org", "其他组织", "--grant",
             "91110000MA00000009")
    assert cli_json(runner, "autoupdate", "list", "--as", "wang") == []
    login(client, "wang", "secret123")
    assert schedule["job_id"] not in client.get("/automation").text
    for action in ("run", "disable", "enable", "delete"):
        assert client.post(f"/automation/{schedule['id']}/{action}").status_code == 404


def test_scheduler_registers_one_rq_scheduler_job_per_schedule(app, schedule):
    from jobs.scheduler import make_scheduler, sync_registered_jobs

    with app.app_context():
        scheduler = make_scheduler()
        jobs = [j for j in scheduler.get_jobs() if j.id.startswith("sim_his_inv_data_import_task_SKDP_S")]
        assert [j.id for j in jobs] == [schedule["job_id"]] and jobs[0].description == schedule["description"]
        with db.session.begin():
            db.session.get(Schedule, schedule["id"]).enabled = False
        assert sync_registered_jobs(scheduler) == {"added": 0, "removed": 1}
        assert not [j for j in scheduler.get_jobs() if j.id.startswith("sim_his_inv_data_import_task_SKDP_S")]


def test_dialog_creates_the_orgs_schedule(client, app):
    login(client, "admin", "admin123")
    assert "发票明细信息更新" in client.get("/automation/new").text
    assert "请至少勾选一项" in client.post("/automation/new", data={}).text
    created = client.post("/automation/new", data={"invoices": "1"}).text
    assert "已创建自动更新计划" in created
    assert "发票明细信息更新" in client.get("/automation").text


def test_months_a_schedule_was_switched_off_are_not_caught_up(app, client, runner, schedule):
    login(client, "admin", "admin123")
    app.config["CLOCK_NOW"] = datetime(2026, 12, 1, 9, 0, tzinfo=SHANGHAI)
    client.post(f"/automation/{schedule['id']}/disable")
    app.config["CLOCK_NOW"] = datetime(2027, 3, 10, 9, 0, tzinfo=SHANGHAI)
    client.post(f"/automation/{schedule['id']}/enable")
    assert _run_due(runner, "2027-03-10T10:00") == []  # Dec, Jan, Feb runs were skipped on purpose
    assert [r["period"] for r in _run_due(runner, "2027-04-05T00:10")] == ["2027-03"]
