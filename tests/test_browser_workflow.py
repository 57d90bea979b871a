"""Real-browser tests of the workflow (docs/rules.md, 导入 dialog): resuming a terminated batch, a month
waiting for one kind's quota as the batch detail shows it, the import dialog's pickers and
warnings, and 请先勾选 with nothing ticked."""
from __future__ import annotations

import re
from datetime import date

from playwright.sync_api import Page, expect
from sqlalchemy import select

from . import browser_support
from .browser_support import DEMO_NAME, FINISH_TIMEOUT, batch_row, dialog_rerendered, open_import_dialog


def login(page: Page) -> Page:
    """Log in as caiwu and wait until the list page has loaded (htmx bound) before clicking on it."""
    browser_support.login(page)
    page.wait_for_load_state("load")
    return page


MONTH = "2024-04"  # a past invoicing month: 3 乐企 applications a calendar month, 1 a day


def _confirm(page: Page, button: str, *listed: str) -> None:
    """Click a toolbar button; its dialog lists what will stop or run; 确定."""
    page.get_by_role("button", name=button, exact=True).click()
    dialog = page.get_by_role("dialog")
    for text in listed:
        expect(dialog).to_contain_text(text)
    dialog.get_by_role("button", name="确定").click()
    expect(page.get_by_role("dialog")).to_have_count(0)


def test_a_terminated_batch_is_resumed_by_retry(page, live_server):
    """A month waiting for the bureau is terminated (the list says 已终止); 重试 lists it as 已终止 and
    runs it to 全部执行成功."""
    live_server.sandbox.control(processing_polls=8)  # more polls than one run makes: the month waits
    batch_no = live_server.download([MONTH], ["81"], channel="leqi")
    login(page)
    row = batch_row(page, batch_no)
    page.goto(f"/batches/{batch_no}")
    expect(page.locator("main table tbody tr")).to_contain_text("等待税局数据", timeout=FINISH_TIMEOUT)
    page.goto("/batches")
    page.get_by_label(f"选择 {batch_no}").check()
    _confirm(page, "终止", "将终止以下未执行和执行中的任务", f"{MONTH}（等待税局数据）")
    expect(page.locator("#batch-table [role=status]")).to_contain_text("已终止 1 个批次中的 1 个子任务")
    expect(row).to_contain_text("已终止")

    page.get_by_label(f"选择 {batch_no}").check()
    _confirm(page, "重试", "将重新执行以下执行失败和已终止的任务", batch_no, f"{MONTH}（已终止）")
    expect(page.locator("#batch-table [role=status]")).to_contain_text("已重新执行 1 个执行失败或已终止的任务")
    expect(row).to_contain_text("全部执行成功", timeout=FINISH_TIMEOUT)
    page.goto(f"/batches/{batch_no}")
    expect(page.locator("main table tbody tr")).to_contain_text("执行成功")


def test_a_kind_out_of_quota_waits_alone_on_the_batch_detail(page, live_server):
    """81 of the month was asked today: a download of 81 and 82 shows 82's invoices written and the
    month 等待额度 for 数电发票（增值税专用发票） only."""
    login(page)
    first = live_server.download([MONTH], ["81"], channel="leqi")
    page.goto("/batches")
    expect(batch_row(page, first)).to_contain_text("全部执行成功", timeout=FINISH_TIMEOUT)
    batch_no = live_server.download([MONTH], ["81", "82"], channel="leqi")
    page.goto(f"/batches/{batch_no}")
    month = page.locator("main table tbody tr").filter(has_text=MONTH)
    expect(month).to_contain_text("等待额度", timeout=FINISH_TIMEOUT)
    expect(month).to_contain_text("数电发票（增值税专用发票）已达下载次数限制")
    expect(month).not_to_contain_text("数电发票（普通发票）")
    success = int(month.locator("td").nth(3).inner_text().replace(",", ""))  # shown with thousands separators
    assert success > 0  # 82's invoices are in the pool already


def _download_dialog(page: Page):
    dialog = open_import_dialog(page)
    with dialog_rerendered(page):
        dialog.get_by_label("税局下载").check()
    with dialog_rerendered(page):
        dialog.get_by_label(DEMO_NAME).check()
    return dialog


def test_the_dialog_shows_only_the_chosen_period_picker(page):
    login(page)
    dialog = _download_dialog(page)
    expect(dialog.get_by_label("按年")).to_be_checked()
    expect(dialog.locator("select[name=year]")).to_be_visible()
    expect(dialog.locator("select[name=year_to]")).to_be_visible()
    expect(dialog.locator("input[type=month]")).to_have_count(0)
    with dialog_rerendered(page):
        dialog.get_by_label("按月").check()
    expect(dialog.locator("input[type=month]")).to_have_count(2)
    expect(dialog.locator("select[name=year]")).to_have_count(0)
    expect(dialog.get_by_label("RPA", exact=True)).to_be_visible()
    expect(dialog.get_by_text("当前连接的是沙箱税局")).to_contain_text("91440300MA5SANDB01")


def test_the_dialog_warns_of_months_before_the_leqi_authorisation(page, live_server):
    """Months before 乐企 was authorised are warned about while choosing; only such months are refused."""
    from webapp.extensions import db
    from webapp.models import Batch, Company
    from webapp.transactions import write_transaction

    with live_server.app.app_context():
        with write_transaction():
            db.session.scalar(select(Company).filter_by(name=DEMO_NAME)).leqi_since = date(2024, 3, 15)
        db.session.remove()
    login(page)
    dialog = _download_dialog(page)
    with dialog_rerendered(page):
        dialog.get_by_label("按月").check()
    for name, month in (("起", "2024-01"), ("止", "2024-04")):
        with dialog_rerendered(page):
            dialog.get_by_label(name, exact=True).fill(month)
    expect(dialog.get_by_role("note").filter(has_text="授权乐企能力（2024-03-15）")).to_contain_text(
        "2024-01 至 2024-02 共 2 个月")
    with dialog_rerendered(page):
        dialog.get_by_label("止", exact=True).fill("2024-02")
    with dialog_rerendered(page):
        dialog.get_by_label("数电发票（普通发票）").check()
    dialog.get_by_role("button", name="确定").click()
    expect(dialog.get_by_role("alert")).to_contain_text("所选月份均早于该日期")
    assert live_server.rows(select(Batch.id)) == []


def test_a_file_import_picks_one_company_by_a_single_choice(page):
    login(page)
    dialog = open_import_dialog(page)
    expect(dialog.get_by_label("导入电子税局文件")).to_be_checked()
    expect(dialog.get_by_role("radio", name=re.compile(DEMO_NAME))).to_have_count(1)
    expect(dialog.get_by_role("checkbox", name=re.compile(DEMO_NAME))).to_have_count(0)
