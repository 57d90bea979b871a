"""Real-browser test of 红冲草稿 (docs/rules.md, 红冲草稿): from the invoice page, a finance user reads
what is left per line, drafts a 销货退回, is told in red what the rules refuse, opens the print page and
downloads the workbook — on the live server with CSRF on, as a user works."""
from __future__ import annotations

from datetime import datetime

import openpyxl
from playwright.sync_api import Page, expect

from webapp.extensions import db
from webapp.models import Invoice
from webapp.transactions import write_transaction

from .browser_support import login, wait_until_finished
from .test_redflush_draft import SPECIAL, shapes
from .workbook_builder import build_workbook


def test_a_return_drafted_from_the_invoice_page(live_server, page: Page, tmp_path):
    path = tmp_path / "shapes.xlsx"
    build_workbook(path, shapes())
    batch_no = live_server.import_file(path)
    login(page)
    wait_until_finished(page, batch_no)
    with live_server.app.app_context():  # the buyer has claimed the deduction (已申请抵扣): partial flushes allowed
        with write_transaction():
            db.session.execute(Invoice.__table__.update().where(Invoice.key == SPECIAL).values(
                vat_usage="1", entry_status="01", usage_channel="leqi", usage_updated_at=datetime.now()))
        db.session.remove()

    page.goto(f"/pool/{SPECIAL}")
    page.wait_for_function("() => window.htmx !== undefined")
    section = page.locator("#redflush")
    expect(section.get_by_role("heading", name="红冲明细与草稿")).to_be_visible()
    switches = section.locator('tr[data-line="1"]')
    expect(switches.locator("td.left-quantity")).to_have_text("7")  # 10 switches, 3 returned
    expect(switches.locator("td.left-amount")).to_have_text("3,500.00")
    expect(section.locator('tr[data-line="3"] td.left-amount')).to_have_text("0.00")  # flushed whole
    expect(section.get_by_label("第 3 行红冲数量")).to_be_disabled()

    section.get_by_label("红冲原因").select_option(label="销货退回")
    section.get_by_label("第 1 行红冲数量").fill("8")
    section.get_by_role("button", name="生成红冲草稿").click()
    expect(page.locator("#draft-refused")).to_have_text("第 1 行红冲数量 8 超过剩余数量 7")

    section.get_by_label("第 1 行红冲数量").fill("2")
    section.get_by_role("button", name="生成红冲草稿").click()
    draft = page.locator("#redflush-draft .draft")
    expect(draft.locator("h3")).to_have_text("红字发票信息确认单（草稿）")
    line = draft.locator('table.draft-lines tr[data-line="1"]')
    expect(line).to_contain_text("-2")  # 2 × 500.00 = 1,000.00, 13% = 130.00
    expect(line).to_contain_text("-1,000.00")
    expect(line).to_contain_text("-130.00")
    expect(draft).to_contain_text("须在 72 小时内确认")
    page.screenshot(path=str(tmp_path / "redflush-draft.png"), full_page=True)

    with page.expect_download() as download:
        draft.get_by_role("link", name="下载 Excel").click()
    saved = tmp_path / "draft.xlsx"
    download.value.save_as(saved)
    rows = list(openpyxl.load_workbook(saved, read_only=True).active.iter_rows(values_only=True))
    lines = [row for row in rows if row and row[0] == 1 and row[1] == "*计算机网络设备*交换机"]
    assert lines == [(1, "*计算机网络设备*交换机", "", "台", -2, 500, -1000, "13%", -130)]

    with page.context.expect_page() as opened:
        draft.get_by_role("link", name="打印页").click()
    printed = opened.value
    expect(printed.locator(".draft.print h3")).to_have_text("红字发票信息确认单（草稿）")
    expect(printed.locator(".draft.print")).to_contain_text("-1,000.00")
    expect(printed.get_by_role("button", name="打印")).to_be_visible()
