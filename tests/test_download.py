"""税局下载 end to end: 乐企 and RPA through the sandbox tax bureau, quotas with a controlled clock,
prerequisites, transient and permanent failures, usage status, idempotent re-download."""
from __future__ import annotations

import json
import threading
from datetime import datetime

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from channels.sandbox import create_app as create_sandbox
from channels.sandbox.data import invoices_for
from webapp.extensions import db
from webapp.models import Company

from .conftest import DEMO_TAX_ID, SandboxControl
from .servers import free_port

MONTH = "2024-05"
TODAY = datetime(2024, 6, 10, 9, 30)  # May is a past invoicing month: 3 applications a month


@pytest.fixture
def sandbox(app):
    app.config["CLOCK_NOW"] = TODAY
    box = SandboxControl(app.config["SANDBOX_DB"])
    box.control(today=TODAY.date().isoformat(), processing_polls=0)
    return box


def _download(runner, *args, expect_ok=True):
    result = runner.invoke(args=["download", "--tax-id", DEMO_TAX_ID, "--as", "caiwu", "--wait", *args])
    if expect_ok:
        assert result.exit_code == 0, result.output
    return result, (json.loads(result.stdout) if result.stdout.strip().startswith("[") else None)


TOMORROW = datetime(2024, 6, 11, 0, 5)  # the day after the tests' quota day, when a waiting month runs


def _release_and_run(app, runner, work, batch, at=datetime(2024, 6, 10, 9, 50), sandbox=None) -> dict:
    """At `at` (by default twenty minutes later; the sandbox's day moves too when given) the reconciler
    releases the one waiting subtask and a worker runs it; the batch as `batch show` prints it."""
    from jobs.reconciler import reconcile

    app.config["CLOCK_NOW"] = at
    if sandbox is not None:
        sandbox.control(today=at.date().isoformat())
    with app.app_context():
        assert reconcile(at)["released"] == 1
    work()
    return json.loads(runner.invoke(args=["batch", "show", batch["batch_no"]]).stdout)


def _stats(runner):
    return json.loads(runner.invoke(args=["pool", "stats", "--tax-id", DEMO_TAX_ID]).stdout)


def _expected(*codes) -> int:
    return sum(len(invoices_for(DEMO_TAX_ID, MONTH, code, as_of=TODAY.date())) for code in codes)


def test_leqi_download_fills_the_pool_and_spends_one_application_per_type(runner, sandbox):
    _, [batch] = _download(runner, "--channel", "leqi", "--from", MONTH, "--to", MONTH, "--type", "81", "--type", "82")
    assert batch["status"] == "succeeded" and batch["channel"] == "leqi"
    assert batch["total"] == batch["success"] == _expected("81", "82") > 1000
    assert _stats(runner)["invoices"] == _expected("81", "82")
    assert sandbox.sent("PLFPXZSQ") == 2


def test_second_leqi_download_the_same_day_waits_for_tomorrow_and_sends_nothing(app, runner, sandbox, work):
    _download(runner, "--channel", "leqi", "--from", MONTH, "--to", MONTH, "--type", "81")
    _, [batch] = _download(runner, "--channel", "leqi", "--from", MONTH, "--to", MONTH, "--type", "81")
    [subtask] = batch["subtasks"]
    assert subtask["status"] == "waiting" and subtask["waiting_until"] == "2024-06-11 00:00"
    assert "乐企额度" in subtask["error"]
    assert sandbox.sent("PLFPXZSQ") == 1  # the sandbox proves nothing over quota was sent
    assert sandbox.stats()["requests"]["by_code"].get("13", 0) == 0

    shown = _release_and_run(app, runner, work, batch, at=TOMORROW, sandbox=sandbox)
    assert shown["status"] == "succeeded"
    assert sandbox.sent("PLFPXZSQ") == 2


def test_rpa_download_of_the_same_month_is_idempotent_with_leqi(runner, sandbox):
    _download(runner, "--channel", "leqi", "--from", MONTH, "--to", MONTH, "--type", "81", "--type", "82")
    before = _stats(runner)
    _, [batch] = _download(runner, "--channel", "rpa", "--from", MONTH, "--to", MONTH, "--type", "81", "--type", "82")
    assert batch["status"] == "succeeded" and batch["success"] == before["invoices"]
    after = _stats(runner)
    figures = ("invoices", "lines", "amount", "tax")
    assert {k: after[k] for k in figures} == {k: before[k] for k in figures}


def test_usage_status_is_fetched_for_positive_invoices_only(runner, sandbox):
    _download(runner, "--channel", "rpa", "--from", MONTH, "--to", MONTH, "--type", "81")
    _, [usage] = _download(runner, "--channel", "leqi", "--data", "usage", "--from", MONTH, "--to", MONTH, "--type",
                           "81")
    assert usage["status"] == "succeeded" and usage["data_type"] == "usage"
    items = sandbox.stats()["usage_items"]["leqi"]
    assert items["red"] == 0 and items["total"] == usage["total"] > 0
    blue = next(i for i in invoices_for(DEMO_TAX_ID, MONTH, "81", as_of=TODAY.date()) if i["sfzs"] == "Y")
    key = blue["sdfphm"] or f"{blue['fpdm']}-{blue['fphm']}"
    shown = json.loads(runner.invoke(args=["pool", "show", key]).stdout)
    assert shown["usage"]["channel"] == "leqi" and shown["usage"]["updated_at"]
    assert shown["usage"]["labels"]["vat_usage"] != "未获取"
    assert shown["red_flush"]["needs_usage_refresh"] is False


def test_both_runs_invoices_then_usage(runner, sandbox):
    _, batches = _download(runner, "--channel", "rpa", "--data", "both", "--from", MONTH, "--to", MONTH, "--type", "82")
    assert [b["data_type"] for b in batches] == ["invoices", "usage"]
    assert all(b["status"] == "succeeded" for b in batches)
    assert batches[1]["total"] == _stats(runner)["blue"]


def test_prerequisites_are_checked_before_anything_is_sent(app, runner, sandbox):
    with app.app_context():
        from webapp.transactions import write_transaction

        with write_transaction():
            company = db.session.scalar(select(Company).filter_by(tax_id=DEMO_TAX_ID))
            company.receipt_channel, company.etax_account = None, None
    result, _ = _download(runner, "--channel", "leqi", "--from", MONTH, "--to", MONTH, expect_ok=False)
    assert result.exit_code != 0 and "收票通道未配置为乐企平台" in result.stderr and "企业信息" in result.stderr
    result, _ = _download(runner, "--channel", "rpa", "--from", MONTH, "--to", MONTH, expect_ok=False)
    assert "未配置默认电子税局账号" in result.stderr
    assert sandbox.stats()["requests"]["total"] == 0


def test_months_before_the_leqi_authorisation_are_not_requested(app, runner, sandbox):
    with app.app_context():
        from datetime import date

        from webapp.transactions import write_transaction

        with write_transaction():
            db.session.scalar(select(Company).filter_by(tax_id=DEMO_TAX_ID)).leqi_since = date(2024, 5, 1)
    _, [batch] = _download(runner, "--channel", "leqi", "--from", "2024-03", "--to", MONTH, "--type", "81")
    assert [s["period"] for s in batch["subtasks"]] == [MONTH]
    assert "2024-03 至 2024-04" in batch["note"]


def test_transient_failures_are_retried_and_the_download_completes(runner, sandbox):
    sandbox.control(fail_rate=0.3, fail_services="PLFPXZSQFK,FPZTXXCX")
    _, [batch] = _download(runner, "--channel", "leqi", "--from", MONTH, "--to", MONTH, "--type", "81")
    assert batch["status"] == "succeeded" and batch["success"] == _expected("81")
    failed = {code: n for service, codes in sandbox.stats()["requests"]["by_service_code"].items()
              for code, n in codes.items() if code not in ("00", "01")}
    assert sum(failed.values()) > 0  # failures really were injected


def test_permanent_failure_fails_the_subtask_with_the_bureaus_reason(runner, sandbox):
    sandbox.company(leqi_enabled=False)
    result, [batch] = _download(runner, "--channel", "leqi", "--from", MONTH, "--to", MONTH, "--type", "81",
                                expect_ok=False)
    assert result.exit_code != 0 and batch["status"] == "failed"
    assert "乐企" in batch["subtasks"][0]["error"] and "未开通" in batch["subtasks"][0]["error"]


def test_a_pending_application_is_fetched_later_without_a_new_one(app, runner, sandbox, work):
    sandbox.control(processing_polls=8)  # more polls than one run makes (6 attempts)
    _, [batch] = _download(runner, "--channel", "leqi", "--from", MONTH, "--to", MONTH, "--type", "81")
    [subtask] = batch["subtasks"]
    assert subtask["status"] == "waiting" and "不占用下载次数" in subtask["error"]
    shown = _release_and_run(app, runner, work, batch)
    assert shown["status"] == "succeeded" and shown["success"] == _expected("81")
    assert sandbox.sent("PLFPXZSQ") == 1


def test_download_over_real_http(app, runner, sandbox):
    server = make_server("127.0.0.1", free_port(), create_sandbox({"SANDBOX_DB": app.config["SANDBOX_DB"]}),
                         threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        app.config.update(LEQI_BASE_URL=url, RPA_BASE_URL=url)
        app.extensions.pop("channel_clients", None)
        _, [batch] = _download(runner, "--channel", "rpa", "--from", MONTH, "--to", MONTH, "--type", "01")
        assert batch["status"] == "succeeded" and batch["success"] == _expected("01")
    finally:
        server.shutdown()
        thread.join(5)


def test_dialog_tells_which_chosen_months_are_out_of_quota(client, runner, sandbox):
    from .conftest import login

    login(client)
    form = {"refresh": "1", "data_type": "invoices", "method": "download", "channel": "leqi", "tax_ids": DEMO_TAX_ID,
            "period_unit": "month", "month_from": MONTH, "month_to": MONTH, "kinds": "81"}
    assert "今日均有额度" in client.post("/batches/import", data=form).text
    _download(runner, "--channel", "leqi", "--from", MONTH, "--to", MONTH, "--type", "81")
    note = client.post("/batches/import", data=form).text
    assert "乐企额度不足" in note and f"{MONTH} 数电发票（增值税专用发票）（今日剩 0 次，本月剩 2/3 次）" in note


def test_cli_download_keeps_to_the_last_five_years(runner, sandbox):
    result, _ = _download(runner, "--channel", "rpa", "--from", "2024-05", "--to", "2024-07", expect_ok=False)
    assert result.exit_code != 0 and "近五年" in result.stderr  # July 2024 is after the clock's June 2024
    result, _ = _download(runner, "--channel", "rpa", "--from", "2019-12", "--to", "2020-01", expect_ok=False)
    assert result.exit_code != 0 and "2020-01 至 2024-06" in result.stderr
    result, _ = _download(runner, "--channel", "rpa", "--from", "2024-03", "--to", "2024-02", expect_ok=False)
    assert result.exit_code != 0 and "起始月份不能晚于截止月份" in result.stderr  # as the import dialog says it


def test_a_long_rpa_task_is_polled_later_not_submitted_again(app, runner, sandbox, work):
    sandbox.control(processing_polls=8)  # more polls than one run makes
    _, [batch] = _download(runner, "--channel", "rpa", "--from", MONTH, "--to", MONTH, "--type", "81")
    [subtask] = batch["subtasks"]
    assert subtask["status"] == "waiting" and "RPA正在准备下载数据" in subtask["error"]
    shown = _release_and_run(app, runner, work, batch)
    assert shown["status"] == "succeeded" and shown["success"] == _expected("81")
    assert sandbox.sent("tasks", channel="rpa") == 1


def test_a_kind_out_of_quota_waits_alone_while_the_others_download(app, runner, sandbox, work):
    """May's 81 was asked today already: a download of 81 and 82 writes 82 now and waits for 81 only."""
    _download(runner, "--channel", "leqi", "--from", MONTH, "--to", MONTH, "--type", "81")
    _, [batch] = _download(runner, "--channel", "leqi", "--from", MONTH, "--to", MONTH, "--type", "81", "--type", "82")
    [subtask] = batch["subtasks"]
    assert subtask["status"] == "waiting" and subtask["status_label"] == "等待额度"
    assert subtask["waiting_until"] == "2024-06-11 00:00"
    assert "数电发票（增值税专用发票）已达下载次数限制" in subtask["error"] and "普通发票" not in subtask["error"]
    assert subtask["success"] == subtask["total"] == _expected("82") > 0  # 82 is in the pool already
    assert sandbox.sent("PLFPXZSQ") == 2

    shown = _release_and_run(app, runner, work, batch, at=TOMORROW, sandbox=sandbox)
    assert shown["status"] == "succeeded" and shown["success"] == _expected("81", "82")
    assert sandbox.sent("PLFPXZSQ") == 3  # 82 was not asked again


def test_usage_waits_for_invoice_data_only_while_that_download_is_still_to_run(app, runner, sandbox, work):
    """A usage month behind a waiting invoice month says 等待发票数据; once that month is terminated,
    the usage month no longer waits for it."""
    from webapp.batches import terminate
    from webapp.models import Batch

    _download(runner, "--channel", "leqi", "--from", MONTH, "--to", MONTH, "--type", "81")
    _, [invoices] = _download(runner, "--channel", "leqi", "--from", MONTH, "--to", MONTH, "--type", "81")
    assert invoices["subtasks"][0]["status"] == "waiting"
    created = runner.invoke(args=["download", "--tax-id", DEMO_TAX_ID, "--as", "caiwu", "--channel", "leqi", "--data",
                                  "usage", "--from", MONTH, "--to", MONTH, "--type", "81"])
    [usage] = json.loads(created.stdout)
    work()
    usage = json.loads(runner.invoke(args=["batch", "show", usage["batch_no"]]).stdout)
    assert usage["subtasks"][0]["status"] == "waiting" and usage["subtasks"][0]["status_label"] == "等待发票数据"
    with app.app_context():
        terminate([db.session.scalar(select(Batch).filter_by(batch_no=invoices["batch_no"]))])
    shown = _release_and_run(app, runner, work, usage)
    assert shown["status"] == "succeeded" and shown["total"] == _stats(runner)["blue"] > 0


def test_retry_resumes_a_terminated_download_where_it_stopped(app, runner, sandbox, work):
    """终止 while two months wait for the quota, then 重试: the terminated months run, nothing else."""
    from webapp.batches import retry, retry_plan, terminate
    from webapp.models import Batch

    _download(runner, "--channel", "leqi", "--from", "2024-04", "--to", MONTH, "--type", "81")
    _, [batch] = _download(runner, "--channel", "leqi", "--from", "2024-04", "--to", MONTH, "--type", "81")
    with app.app_context():
        row = db.session.scalar(select(Batch).filter_by(batch_no=batch["batch_no"]))
        assert terminate([row]) == {"batches": 1, "subtasks": 2}
        db.session.expire_all()
        [(_, reparse, subtasks)] = retry_plan([row])
        assert not reparse and [s.period for s in subtasks] == ["2024-04", MONTH]
    tomorrow = datetime(2024, 6, 11, 9, 0)
    app.config["CLOCK_NOW"] = tomorrow
    sandbox.control(today=tomorrow.date().isoformat())
    with app.app_context():
        batch_row = db.session.scalar(select(Batch).filter_by(batch_no=batch["batch_no"]))
        assert retry([batch_row]) == {"subtasks": 2, "parses": 0}
    work()
    shown = json.loads(runner.invoke(args=["batch", "show", batch["batch_no"]]).stdout)
    assert shown["status"] == "succeeded" and [s["attempts"] for s in shown["subtasks"]] == [1, 1]


@pytest.mark.parametrize("channel", ["leqi", "rpa"])
def test_the_sandbox_never_returns_invoices_dated_after_now(app, runner, sandbox, channel):
    """On 2024-06-10 at 09:30 the current month's download holds nothing issued later that day."""
    from sqlalchemy import func

    from webapp.models import Invoice

    _, [batch] = _download(runner, "--channel", channel, "--from", "2024-06", "--to", "2024-06", "--type", "82")
    assert batch["status"] == "succeeded" and batch["success"] > 0
    later_today = [i for i in invoices_for(DEMO_TAX_ID, "2024-06", "82", as_of=TODAY.date())
                   if i["kprq"] > "2024-06-10 09:30"]
    assert later_today  # the bureau's data does hold invoices later that day
    with app.app_context():
        assert db.session.scalar(select(func.max(Invoice.issued_at))) <= TODAY


def test_rewording_a_reason_changes_no_screens_category(app, client, runner, sandbox, monkeypatch):
    """Screens read the reason code, the sentence is rendered from it (docs/rules.md, 失败与等待原因):
    with the quota wait and the bureau's refusal reworded, the month still reads 等待额度 with the day
    its wait ends, and the failed month still says the bureau's reason, in the new words."""
    from webapp.statuses import Reason

    from .conftest import login

    monkeypatch.setattr(Reason.QUOTA_WAIT, "label", "配额已用完（{kinds}），{day} 再试")
    monkeypatch.setattr(Reason.CHANNEL_REFUSED, "label", "{channel}不同意：{message}")
    _download(runner, "--channel", "leqi", "--from", MONTH, "--to", MONTH, "--type", "81")
    _, [waiting] = _download(runner, "--channel", "leqi", "--from", MONTH, "--to", MONTH, "--type", "81")
    [month] = waiting["subtasks"]
    assert (month["status_label"], month["error_code"]) == ("等待额度", "quota_wait")
    assert month["reason"] == "配额已用完（），2024-06-11 再试"
    sandbox.company(leqi_enabled=False)
    _, [failed] = _download(runner, "--channel", "leqi", "--from", "2024-04", "--to", "2024-04", "--type", "81",
                            expect_ok=False)
    assert failed["subtasks"][0]["error_code"] == "channel_refused"
    login(client)
    assert "已排队，等待额度至 2024-06-11" in client.get(f"/batches/{waiting['batch_no']}").text
    page = client.get(f"/batches/{failed['batch_no']}").text
    assert "乐企不同意：" in page and "未开通" in page
