"""The workflow at the HTTP level (docs/rules.md, 导入 dialog): the import dialog's pickers and warnings,
the confirmation of 终止 / 重试, the 自动更新 duplicate rule, an admin's new company."""
from __future__ import annotations

import re
from datetime import date, datetime

import pytest
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import Batch, Company, User
from webapp.transactions import write_transaction

from .conftest import DEMO_TAX_ID, login

TODAY = datetime(2024, 6, 10, 9, 30)
DOWNLOAD = {"data_type": "invoices", "method": "download", "channel": "leqi", "tax_ids": DEMO_TAX_ID, "kinds": "81"}


@pytest.fixture
def dialog(app, client):
    """A logged-in client posting the import dialog, on a fixed day."""
    app.config["CLOCK_NOW"] = TODAY
    login(client)

    def post(refresh=True, **fields):
        data = {**DOWNLOAD, **fields, **({"refresh": "1"} if refresh else {})}
        return client.post("/batches/import", data=data, headers={"HX-Request": "true"}).text
    return post


def _batches(app) -> list[tuple]:
    """(period_from, period_to, subtasks) of every batch."""
    with app.app_context():
        return [(b.period_from, b.period_to, len(b.subtasks))
                for b in db.session.scalars(select(Batch).order_by(Batch.period_from))]


def test_only_the_chosen_modes_picker_is_shown(dialog):
    by_year = dialog(period_unit="year")
    assert 'name="year"' in by_year and 'name="year_to"' in by_year and 'name="month_from"' not in by_year
    by_month = dialog(period_unit="month")
    assert 'name="month_from"' in by_month and 'name="month_to"' in by_month and 'name="year"' not in by_month


def test_a_range_of_years_becomes_every_month_up_to_now(app, dialog):
    assert dialog(refresh=False, channel="rpa", period_unit="year", year="2022", year_to="2024") == ""
    assert _batches(app) == [("2022-01", "2024-06", 30)]


def test_a_reversed_year_range_is_refused(app, dialog):
    assert "起始年度不能晚于截止年度" in dialog(refresh=False, channel="rpa", period_unit="year", year="2024",
                                                year_to="2022")
    assert _batches(app) == []


def _authorised_on(app, day: date) -> None:
    with app.app_context(), write_transaction():
        db.session.scalar(select(Company).filter_by(tax_id=DEMO_TAX_ID)).leqi_since = day


def test_months_before_the_leqi_authorisation_are_warned_about_before_submitting(app, dialog):
    _authorised_on(app, date(2024, 3, 15))
    page = dialog(period_unit="month", month_from="2024-01", month_to="2024-04")
    assert "2024-03-15" in page and "2024-01 至 2024-02 共 2 个月" in page
    page = dialog(refresh=False, period_unit="month", month_from="2023-10", month_to="2024-02")
    assert "所选月份均早于该日期" in page and "RPA" in page
    assert _batches(app) == []  # refused in the dialog, not a failed batch afterwards


def test_usage_status_is_not_offered_with_a_file_import(dialog):
    page = dialog(data_type="usage", method="file")
    [download] = re.findall(r'<input[^>]*name="method"[^>]*>', page)
    assert 'value="download"' in download and "checked" in download
    assert 'value="file"' not in page and "发票用途状态只能从税局下载" in page


def test_a_file_import_picks_its_one_company_with_a_single_choice(dialog):
    page = dialog(method="file")
    assert re.search(rf'type="radio" name="tax_ids" value="{DEMO_TAX_ID}"', page)
    assert not re.search(rf'type="checkbox"[^>]*value="{DEMO_TAX_ID}"', page)


def test_the_dialog_lists_the_sandbox_tax_ids(app, dialog):
    page = dialog(period_unit="month", month_from="2024-05", month_to="2024-05")
    assert "沙箱税局" in page and DEMO_TAX_ID in page and "91440300MA5SANDB01" in page
    app.config.update(LEQI_BASE_URL="https://lqpt.example.cn", RPA_BASE_URL="https://rpa.example.cn")
    assert "沙箱税局" not in dialog(period_unit="month", month_from="2024-05", month_to="2024-05")


def test_download_channel_is_spelled_rpa_in_capitals(dialog):
    page = dialog()
    assert "> RPA</label>" in page and "> rpa</label>" not in page


# 终止 / 重试 -------------------------------------------------------------------------------------

def test_with_nothing_ticked_the_answer_comes_at_once(client):
    login(client)
    for action, text in (("terminate", "请先勾选要终止的导入批次"), ("retry", "请先勾选要重试的导入批次")):
        response = client.post(f"/batches/{action}/confirm", headers={"HX-Request": "true"})
        assert text in response.text and response.headers["HX-Retarget"] == "#batch-table"
        assert 'role="dialog"' not in response.text


def test_retry_confirmation_lists_failed_and_terminated_months(app, client, dialog):
    dialog(refresh=False, channel="rpa", period_unit="month", month_from="2024-03", month_to="2024-05")
    with app.app_context(), write_transaction():
        batch = db.session.scalar(select(Batch))
        march, april, may = batch.subtasks
        march.status, april.status, may.status = "failed", "terminated", "succeeded"
        batch_no = batch.batch_no
    page = client.post("/batches/retry/confirm", data={"batch_no": batch_no}, headers={"HX-Request": "true"}).text
    assert 'role="dialog"' in page and "2024-03（执行失败）" in page and "2024-04（已终止）" in page
    assert "2024-05" not in page


# 自动更新 and 系统管理 ------------------------------------------------------------------------------

def test_a_second_schedule_for_the_same_data_is_refused_with_a_pointer(app, client):
    login(client, "admin", "admin123")
    first = client.post("/automation/new", data={"invoices": "1"}).text
    assert "已创建自动更新计划" in first
    again = client.post("/automation/new", data={"invoices": "1", "usage": "1"}).text
    assert "已有" in again and "#" in again and "自动化设置" in again
    assert again.count("查看计划 #") == 1 and ">前往自动化设置</a>" in again  # the pointer is said once
    with app.app_context():
        from webapp.models import Schedule

        assert db.session.scalar(select(func.count()).select_from(Schedule)) == 1


def test_an_admin_who_adds_a_company_is_granted_it(app, client):
    login(client, "admin", "admin123")
    client.post("/admin/companies",
                data={"tax_id": "91310000MA1NEWCO01", "name": "上海新设有限公司", "receipt_channel": ""})
    with app.app_context():
        admin = db.session.scalar(select(User).filter_by(username="admin"))
        assert "91310000MA1NEWCO01" in {c.tax_id for c in admin.companies}
    assert "上海新设有限公司" in client.get("/batches/import").text


# one spelling per label ----------------------------------------------------------------------------

def test_each_entry_status_is_listed_once_and_finds_both_channels_codes(app, client, runner, tmp_path):
    """入账撤销 is 03 from 乐企 and 06 from RPA: listed once, the filter finds both."""
    import json

    from sqlalchemy import update

    from webapp.models import Invoice

    from .workbook_builder import build_workbook, digital_invoice, make_line

    numbers = ["24332000000000000001", "24332000000000000002", "24332000000000000003"]
    path = tmp_path / "three.xlsx"
    build_workbook(path, [digital_invoice(n, [make_line("*信息技术服务*运维服务", "100.00")], "2024-03-05 10:00:00")
                          for n in numbers], tax_id=DEMO_TAX_ID, seller_name="杭州示例科技有限公司")
    result = runner.invoke(args=["import-file", "--tax-id", DEMO_TAX_ID, "--file", str(path), "--as", "caiwu",
                                 "--wait"])
    assert json.loads(result.stdout)["status"] == "succeeded", result.output
    with app.app_context(), write_transaction():
        for number, channel, code in zip(numbers, ("leqi", "rpa", "leqi"), ("03", "06", "01"), strict=False):
            db.session.execute(update(Invoice).where(Invoice.key == number)
                               .values(usage_channel=channel, entry_status=code))
    login(client)
    page = client.get("/pool").text
    select_html = page[page.index('name="entry_status"'):]
    select_html = select_html[:select_html.index("</select>")]
    options = re.findall(r"<option[^>]*>([^<]+)</option>", select_html)
    assert len(options) == len(set(options)) and options.count("未入账") == 1 and options.count("入账撤销") == 1
    revoked = client.get("/pool?entry_status=入账撤销").text
    assert numbers[0] in revoked and numbers[1] in revoked and numbers[2] not in revoked


def test_no_time_zone_suffix_or_job_id_on_the_automation_page(client):
    """The task code is named once, as the rules name it (docs/rules.md, 自动更新), never as a row's job id."""
    login(client, "admin", "admin123")
    client.post("/automation/new", data={"invoices": "1"})
    page = client.get("/automation").text
    assert "+08:00" not in page and "sim_his_inv_data_import_task_SKDP_S-" not in page
    assert page.count("sim_his_inv_data_import_task_SKDP_S") == 1 and "（历史发票数据导入定时计划）" in page
    assert re.search(r"\d{4}-\d{2}-05 00:00", page)
