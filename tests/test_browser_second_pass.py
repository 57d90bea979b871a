"""Real-browser tests that the batch screens and dialogs do not mislead (docs/rules.md, 批次状态, 导入 dialog).

Chromium drives the live server (CSRF on, a real RQ worker, the sandbox tax bureau). Batches whose history
would take days to produce are written as rows, exactly as the worker leaves them (test_browser_screens.add_batch).
"""
from __future__ import annotations

import re
from datetime import datetime

from playwright.sync_api import Page, expect
from sqlalchemy import select

from .browser_support import (
    DEMO_NAME,
    OTHER_TAX_ID,
    SAMPLE_2024,
    batch_row,
    column,
    login,
    open_import_dialog,
    wait_until_finished,
)
from .conftest import DEMO_TAX_ID, SAMPLES
from .test_browser_screens import BUREAU_DOWN, QUOTA_UNTIL_DECEMBER, add_batch

SAMPLE_2023 = SAMPLES / "etax-export-2023-old-header.xlsx"


def _solid_share(row) -> float:
    """How much of a row's bar is drawn solid (a fill colour, no hatching), as a share of the bar."""
    return row.locator(".progress").evaluate("""bar => {
        let solid = 0;
        for (const seg of bar.querySelectorAll('.seg')) {
            const style = getComputedStyle(seg);
            if (style.backgroundImage === 'none' && style.backgroundColor !== 'rgba(0, 0, 0, 0)')
                solid += seg.offsetWidth;
        }
        return solid / bar.clientWidth;
    }""")


def test_a_partly_failed_batch_says_its_counts_cover_only_the_months_that_ran(page: Page, live_server):
    """Item 3: 2 months succeeded (100 each), 4 failed: 总份数 200 = 成功份数 200 on the row and the detail page,
    each saying that 4 months were not fetched."""
    months = {f"2023-{m:02d}": ("succeeded" if m <= 2 else "failed", None if m <= 2 else BUREAU_DOWN)
              for m in range(1, 7)}
    batch_no = add_batch(live_server, months, status="partial", channel="rpa")
    login(page)
    page.goto("/batches")
    row = batch_row(page, batch_no)
    expect(column(page, row, "总份数")).to_have_text("200（4 个月份未获取）")
    expect(column(page, row, "成功份数")).to_have_text("200")
    page.get_by_role("link", name=batch_no).click()
    expect(page.locator("#subtasks-panel p").first).to_contain_text(
        "总份数 200，成功份数 200（只含已执行的月份，4 个月份未获取）")


def test_a_waiting_month_is_not_drawn_as_progress(page: Page, live_server):
    """Item 4: a batch whose only month waits for the quota shows an empty, hatched bar; one with a month done
    and a month waiting is solid on its done half only; a batch whose months all ended is solid end to end."""
    waiting = add_batch(live_server, {"2026-11": ("waiting", QUOTA_UNTIL_DECEMBER)},
                        status="pending", not_before=datetime(2026, 12, 1))
    half = add_batch(live_server, {"2026-09": ("succeeded", None), "2026-10": ("pending", None)}, status="syncing")
    ended = add_batch(live_server, {"2026-09": ("succeeded", None), "2026-10": ("failed", BUREAU_DOWN)},
                      status="partial")
    login(page)
    page.goto("/batches")
    expect(column(page, batch_row(page, waiting), "执行状态")).to_contain_text("0/1 个月份成功")
    assert _solid_share(batch_row(page, waiting)) == 0
    assert _solid_share(batch_row(page, half)) <= 0.51
    assert _solid_share(batch_row(page, ended)) >= 0.99


def test_a_hint_of_the_toolbar_goes_when_the_next_question_opens(page: Page, live_server):
    """Item 5: 重试 with nothing ticked says 请先勾选…; ticking a batch and clicking 重试 opens the question and
    the hint is gone."""
    batch_no = add_batch(live_server, {"2024-01": ("failed", BUREAU_DOWN)}, status="failed")
    login(page)
    page.goto("/batches")
    page.get_by_role("button", name="重试", exact=True).click()
    expect(page.locator("#batch-table [role=status]")).to_have_text("请先勾选要重试的导入批次")
    page.get_by_label(f"选择 {batch_no}").check()
    page.get_by_role("button", name="重试", exact=True).click()
    expect(page.get_by_role("dialog").get_by_role("heading", name="重试")).to_be_visible()
    expect(page.get_by_text("请先勾选要重试的导入批次")).to_have_count(0)


def test_the_list_behind_the_import_result_shows_the_new_batches(page: Page, live_server):
    """Item 5: after a two-file import the list behind the 导入结果 dialog shows both batches, not 暂无导入批次."""
    login(page)
    page.goto("/batches")
    expect(page.locator("#batch-table")).to_contain_text("暂无导入批次")
    dialog = open_import_dialog(page)
    dialog.get_by_label(DEMO_NAME).check()
    dialog.locator("input[type=file]").set_input_files([SAMPLE_2024, SAMPLE_2023])
    dialog.get_by_role("button", name="确定").click()
    expect(page.get_by_role("dialog").get_by_role("heading", name="导入结果")).to_be_visible()
    expect(page.locator("#batch-table tr[id^=batch-]")).to_have_count(2)
    expect(page.locator("#batch-table")).not_to_contain_text("暂无导入批次")
    expect(page.get_by_role("dialog")).to_be_visible()


def _without_channels(live_server) -> None:
    """The demo company as one that never had 乐企 nor an e-tax account (its data came from files)."""
    from webapp.extensions import db
    from webapp.models import Company
    from webapp.transactions import write_transaction

    with live_server.app.app_context():
        with write_transaction():
            company = db.session.scalar(select(Company).filter_by(tax_id=DEMO_TAX_ID))
            company.leqi_enabled, company.etax_account = False, None
        db.session.remove()


def test_only_actions_that_can_run_are_offered(page: Page, live_server):
    """Item 6: for a company with no channel, an invoice offers no 获取用途状态 button but says why; a 缺口 opens
    the file import, not a 乐企 download; with RPA only, a 缺口 opens an RPA download."""
    batch_no = live_server.import_file()
    login(page)
    wait_until_finished(page, batch_no)
    _without_channels(live_server)
    page.goto("/pool?color=blue&status=正常")
    page.locator("table.pool tbody tr a").first.click()
    section = page.locator("#red-flush")
    expect(section).to_contain_text("需先获取用途状态")
    expect(section.get_by_role("button")).to_have_count(0)
    expect(section.locator("#usage-unavailable")).to_contain_text("既未开通乐企，也未配置默认电子税局账号")

    page.goto(f"/pool/coverage?tax_id={DEMO_TAX_ID}&year=2023")
    expect(page.locator("#no-channel")).to_contain_text("缺口只能通过导入电子税局文件补齐")
    page.locator("table.coverage").get_by_role("link", name="缺口").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("导入电子税局文件")).to_be_checked()
    expect(dialog.get_by_label(re.compile(DEMO_NAME))).to_be_checked()
    expect(dialog.get_by_text("下载通道")).to_have_count(0)


def test_another_companys_file_is_refused_in_the_dialog(page: Page, live_server, tmp_path):
    """Item 9: choosing 杭州示例 and uploading another company's export is answered in the dialog, like a
    non-Excel file, and no batch is created."""
    from tests.workbook_builder import build_workbook
    from webapp.models import Batch

    other = tmp_path / "别家.xlsx"
    build_workbook(other, n_random=20, tax_id=OTHER_TAX_ID)
    login(page)
    dialog = open_import_dialog(page)
    dialog.get_by_label(DEMO_NAME).check()
    dialog.locator("input[type=file]").set_input_files(other)
    dialog.get_by_role("button", name="确定").click()
    expect(dialog.get_by_role("alert")).to_contain_text(
        f"别家.xlsx：文件中的销方税号 {OTHER_TAX_ID} 与所选企业 {DEMO_TAX_ID} 不一致")
    expect(page.get_by_role("dialog")).to_be_visible()
    assert live_server.rows(select(Batch.id)) == []
