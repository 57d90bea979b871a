"""Real-browser tests of 税局下载 (乐企 and RPA through the sandbox tax bureau), 发票用途状态, the
销项发票池 (search, red/blue links, discount lines, 红冲预检, export) and 同步覆盖.

Chromium drives the live server; the worker subprocess talks to the same sandbox tax bureau as the
app, which answers at once (processing_polls 0). The worker uses the real clock, so the dates here
are real: March and April 2024 are past invoicing months, where 乐企 allows one application a day.
"""
from __future__ import annotations

import re
from datetime import date, timedelta

import openpyxl
from playwright.sync_api import Locator, Page, expect
from sqlalchemy import select

from .browser_support import (
    DEMO_NAME,
    EXPECTED_2024,
    FINISH_TIMEOUT,
    column,
    dialog_rerendered,
    login,
    open_import_dialog,
    wait_until_finished,
)

KINDS = ("数电发票（普通发票）", "数电发票（增值税专用发票）")  # codes 82 and 81
KIND_CODES = ["82", "81"]
MONTHS = ("2024-03", "2024-04")
RED, BLUE = "24706900000000003120", EXPECTED_2024["red_links"]["24706900000000003120"]
DISCOUNTED = "24791123400000000013"  # line 2 is a 折扣行 of line 1 (*蔬菜*鲜蔬菜)
ETAX_HEADERS = ["序号", "发票代码", "发票号码", "数电发票号码", "销方识别号", "销方名称", "购方识别号", "购买方名称",
                "开票日期", "金额", "税额", "价税合计", "发票来源", "发票票种", "发票状态", "是否正数发票",
                "发票风险等级", "开票人", "备注"]


# helpers ----------------------------------------------------------------------------------------------

def fill_download(page: Page, *, channel: str = "乐企", months=MONTHS, kinds=KINDS, usage: bool = False) -> Locator:
    """Open 导入 and fill it for 税局下载 of the demo company, waiting for each field's re-render."""
    dialog = open_import_dialog(page)
    if usage:
        with dialog_rerendered(page):
            dialog.get_by_label("发票用途状态").check()
    if not dialog.get_by_label("税局下载").is_checked():  # 发票用途状态 switches to it by itself
        with dialog_rerendered(page):
            dialog.get_by_label("税局下载").check()
    if not dialog.get_by_label(channel, exact=True).is_checked():  # 乐企 is the default
        with dialog_rerendered(page):
            dialog.get_by_label(channel, exact=True).check()
    expect(dialog.get_by_label(channel, exact=True)).to_be_checked()
    with dialog_rerendered(page):
        dialog.get_by_label(DEMO_NAME).check()
    with dialog_rerendered(page):
        dialog.get_by_label("按月").check()
    for name, month in (("起", months[0]), ("止", months[-1])):
        with dialog_rerendered(page):
            dialog.get_by_label(name, exact=True).fill(month)
    for kind in kinds:
        with dialog_rerendered(page):
            dialog.get_by_label(kind).check()
    return dialog


def submit(page: Page, dialog: Locator) -> Locator:
    """确定: the modal closes and the list shows the new batch (按税号拆分: one per company); returns its row."""
    dialog.get_by_role("button", name="确定").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(page.get_by_text("已创建导入批次")).to_be_visible()
    row = page.locator("tr[id^=batch-]").first
    expect(row).to_be_visible()
    return row


def number(cell: Locator) -> int:
    return int(cell.inner_text().strip().replace(",", ""))  # counts carry thousands separators


def expect_finished_with_invoices(page: Page, row: Locator) -> int:
    """The row polls itself to 全部执行成功 with 总份数 = 成功份数 > 0; returns that count."""
    page.evaluate("window.__noReload = true")
    expect(column(page, row, "执行状态")).to_contain_text("全部执行成功", timeout=FINISH_TIMEOUT)
    assert page.evaluate("window.__noReload") is True  # reached live, not by reloading
    total, success = number(column(page, row, "总份数")), number(column(page, row, "成功份数"))
    assert total == success > 0
    return total


def fact(page: Page, term: str) -> Locator:
    """The value (dd) of a term (dt) on a detail page."""
    return page.locator(f"dl.facts dt:text-is('{term}') + dd")


def pool_rows(page: Page) -> Locator:
    return page.locator("#pool-table tbody tr")


def open_first_normal_blue_invoice(page: Page) -> str:
    """销项发票池 → 蓝票, 正常 → the first invoice's detail; returns its number."""
    with page.expect_navigation(wait_until="load"):  # htmx listens before the filter changes
        page.get_by_role("link", name="销项发票池").click()
    rows = pool_rows(page)
    page.get_by_label("蓝/红").select_option(label="蓝票")
    expect(page).to_have_url(re.compile(r"color=blue"))  # pushed once the filtered table is in
    page.get_by_label("发票状态").select_option(label="正常")
    expect(page).to_have_url(re.compile(r"status="))
    expect(rows.filter(has_text="红票")).to_have_count(0)
    expect(rows.filter(has_not_text="正常")).to_have_count(0)
    link = rows.first.locator("td").first.get_by_role("link")
    key = link.inner_text().strip()
    link.click()
    expect(page.get_by_role("heading", name=re.compile(key))).to_be_visible()
    return key


# 1, 2 ─ 税局下载 from the dialog ------------------------------------------------------------------------

def test_leqi_download_from_the_dialog_splits_by_month_and_finishes(page, live_server):
    """乐企, 按月 2024-03..04, two kinds: the quota note shows, one batch with two month subtasks finishes live."""
    login(page)
    dialog = fill_download(page, channel="乐企")
    note = dialog.get_by_role("note")
    expect(note).to_contain_text(DEMO_NAME)
    expect(note).to_contain_text("所选 2 个月份的乐企下载今日均有额度")
    expect(note).to_contain_text("每天 1 次")

    row = submit(page, dialog)
    expect(page.locator("tr[id^=batch-]")).to_have_count(1)
    expect(column(page, row, "销方名称")).to_have_text(DEMO_NAME)
    expect(column(page, row, "导入方式")).to_have_text("税局下载")
    expect(column(page, row, "下载通道")).to_have_text("乐企")
    for kind in KINDS:
        expect(column(page, row, "发票种类")).to_contain_text(kind)
    total = expect_finished_with_invoices(page, row)

    column(page, row, "导入批次号").get_by_role("link").click()
    expect(page.get_by_role("heading", name=re.compile("^导入批次 "))).to_be_visible()
    expect(fact(page, "导入方式")).to_have_text("税局下载 · 乐企")
    expect(fact(page, "开票日期")).to_have_text("2024-03 至 2024-04")
    subtasks = page.locator("#subtasks-panel tbody tr")
    expect(subtasks).to_have_count(2)
    for index, month in enumerate(MONTHS):
        expect(subtasks.nth(index)).to_contain_text(month)
        expect(subtasks.nth(index)).to_contain_text("执行成功")
    expect(page.locator("#subtasks-panel")).to_contain_text(f"总份数 {total:,}，成功份数 {total:,}")
    assert live_server.sandbox.sent("PLFPXZSQ") == 4  # one application per month and kind


def test_rpa_download_from_the_dialog_finishes(page, live_server):
    """The same through RPA: no 乐企 quota note, one batch, two month subtasks, all succeed."""
    login(page)
    dialog = fill_download(page, channel="RPA")
    expect(dialog.get_by_label("RPA", exact=True)).to_be_checked()
    expect(dialog.get_by_role("note")).to_have_count(0)
    row = submit(page, dialog)
    expect(page.locator("tr[id^=batch-]")).to_have_count(1)
    expect(column(page, row, "下载通道")).to_have_text("RPA")
    expect_finished_with_invoices(page, row)

    column(page, row, "导入批次号").get_by_role("link").click()
    subtasks = page.locator("#subtasks-panel tbody tr")
    expect(subtasks).to_have_count(2)
    expect(subtasks.filter(has_text="执行成功")).to_have_count(2)
    assert live_server.sandbox.sent("tasks", channel="rpa") == 2  # one robot task per month
    assert live_server.sandbox.sent("PLFPXZSQ") == 0


# 3 ─ the 乐企 quota ---------------------------------------------------------------------------------------

def test_second_leqi_download_the_same_day_waits_for_quota(page, live_server):
    """A second 乐企 download of the same month and kinds today waits (乐企额度 … 自动执行) and sends nothing."""
    login(page)
    wait_until_finished(page, live_server.download(["2024-03"], KIND_CODES, channel="leqi"))
    sent = live_server.sandbox.sent("PLFPXZSQ")
    assert sent == 2

    dialog = fill_download(page, channel="乐企", months=("2024-03",))
    expect(dialog.get_by_role("note")).to_contain_text("乐企额度不足")
    expect(dialog.get_by_role("note")).to_contain_text("2024-03")
    row = submit(page, dialog)
    expect(page.locator("tr[id^=batch-]")).to_have_count(2)
    waiting = re.compile(r"乐企额度.*自动执行")
    queued = f"已排队，等待额度至 {date.today() + timedelta(days=1):%Y-%m-%d}"  # the row says until when
    expect(column(page, row, "执行状态")).to_contain_text(queued, timeout=FINISH_TIMEOUT)
    expect(column(page, row, "执行状态")).to_contain_text("待同步")

    column(page, row, "导入批次号").get_by_role("link").click()
    subtask = page.locator("#subtasks-panel tbody tr")
    expect(subtask).to_have_count(1)
    expect(subtask).to_contain_text("2024-03")
    expect(subtask).to_contain_text("等待额度")
    expect(subtask).to_contain_text(waiting)
    expect(subtask).to_contain_text(f"将于 {date.today() + timedelta(days=1):%Y-%m-%d} 自动执行")  # tomorrow
    assert live_server.sandbox.sent("PLFPXZSQ") == sent  # nothing over quota was sent
    assert live_server.sandbox.stats()["requests"]["by_code"].get("13", 0) == 0


# 4 ─ prerequisites -----------------------------------------------------------------------------------

def test_leqi_needs_the_receipt_channel_set_to_leqi(page, live_server):
    """Admin clears 收票通道; the dialog then says what is missing and where, and refuses to submit."""
    login(page, "admin", "admin123")
    page.get_by_role("link", name="系统管理").click()
    page.get_by_role("row", name=re.compile(DEMO_NAME)).get_by_role("link", name="编辑").click()
    expect(page.get_by_role("heading", name=re.compile("^编辑企业"))).to_be_visible()
    page.get_by_label("收票通道").select_option(label="未配置")
    page.get_by_role("button", name="保存").click()
    expect(page.get_by_text("企业信息已保存")).to_be_visible()
    expect(page.get_by_role("row", name=re.compile(DEMO_NAME))).to_contain_text("未配置")

    page.get_by_role("link", name="历史发票数据同步").click()
    dialog = fill_download(page, channel="乐企", months=("2024-03",), kinds=KINDS[:1])
    note = dialog.get_by_role("note")
    expect(note).to_contain_text("收票通道未配置为乐企平台")
    expect(note).to_contain_text("系统管理 → 企业信息")
    expect(note).not_to_contain_text("剩余申请次数")
    dialog.get_by_role("button", name="确定").click()
    alert = page.get_by_role("dialog").get_by_role("alert")
    expect(alert).to_contain_text("收票通道未配置为乐企平台")
    expect(alert).to_contain_text("系统管理 → 企业信息")
    page.get_by_role("dialog").get_by_role("button", name="取消").click()
    expect(page.locator("#batch-table")).to_contain_text("暂无导入批次")
    assert live_server.sandbox.stats()["requests"]["total"] == 0


# 5 ─ usage status ------------------------------------------------------------------------------------

def test_usage_status_download_fills_the_invoice_and_its_red_flush_check(page, live_server):
    """发票用途状态 via 乐企 after a download: the batch succeeds; a blue invoice shows labels, time, a verdict."""
    login(page)
    wait_until_finished(page, live_server.download(["2024-03"], KIND_CODES, channel="rpa"))

    dialog = fill_download(page, channel="乐企", months=("2024-03",), usage=True)
    expect(dialog.get_by_label("发票用途状态")).to_be_checked()
    expect(dialog.get_by_role("note")).to_have_count(0)  # usage queries spend no application quota
    row = submit(page, dialog)
    expect(page.locator("tr[id^=batch-]")).to_have_count(2)
    expect(column(page, row, "下载通道")).to_have_text("乐企")
    expect_finished_with_invoices(page, row)
    column(page, row, "导入批次号").get_by_role("link").click()
    expect(fact(page, "发票数据类型")).to_have_text("发票用途状态")

    open_first_normal_blue_invoice(page)
    for term in ("增值税用途状态", "消费税用途状态", "入账状态"):
        expect(fact(page, term)).to_have_text(re.compile(r"\S"))
        expect(fact(page, term)).not_to_have_text("未获取")
    expect(fact(page, "用途状态更新时间")).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d（乐企）$"))
    verdict = page.locator("#red-flush")
    expect(verdict.get_by_role("heading", name="红冲预检")).to_be_visible()
    expect(verdict).to_contain_text(re.compile("可以红冲|不能红冲"))
    expect(verdict).not_to_contain_text("需先获取用途状态")
    expect(verdict.get_by_role("button", name=re.compile("用途状态"))).to_have_count(0)


# 6 ─ the pool --------------------------------------------------------------------------------------

def test_pool_search_red_filter_links_and_discount_lines(page, live_server):
    """Search narrows as one types; 红票 lists only red; red ↔ blue links both ways; 折扣行 under its line."""
    from webapp.models import Invoice

    login(page)
    wait_until_finished(page, live_server.import_file())
    identities = live_server.rows(select(Invoice.key, Invoice.number, Invoice.digital_number))
    page.get_by_role("link", name="销项发票池").click()
    rows = pool_rows(page)
    expect(rows).to_have_count(20)

    search = page.get_by_label("发票号码")
    shown = []
    for length in range(1, 6):  # key by key, as a user types: each pause re-searches by prefix
        search.press(RED[length - 1])
        prefix = RED[:length]
        matching = sum(1 for ids in identities if any(i and i.startswith(prefix) for i in ids))
        expect(rows).to_have_count(min(matching, 20))
        expect(rows.locator("td:first-child a", has_text=re.compile(f"^{prefix}"))).to_have_count(min(matching, 20))
        shown.append(min(matching, 20))
    assert shown[0] == 20 and 1 < min(shown[:-1]) < 20 and shown[-1] == 1  # it really narrowed, step by step
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(RED)

    search.fill("")
    expect(rows).to_have_count(20)
    page.get_by_label("蓝/红").select_option(label="红票")
    expect(rows).to_have_count(EXPECTED_2024["red"])
    expect(rows.filter(has_text="红票")).to_have_count(EXPECTED_2024["red"])
    expect(rows.filter(has_text="蓝票")).to_have_count(0)
    expect(page).to_have_url(re.compile(r"color=red"))

    rows.get_by_role("link", name=RED).click()
    expect(page.get_by_role("heading", name=re.compile(RED))).to_contain_text("红字发票")
    expect(fact(page, "被红冲蓝字发票")).to_have_text(BLUE)
    expect(page.locator("#red-flush")).to_have_count(0)  # a red invoice is not checked for red flush
    fact(page, "被红冲蓝字发票").get_by_role("link", name=BLUE).click()
    expect(page.get_by_role("heading", name=re.compile(BLUE))).to_be_visible()
    expect(fact(page, "红冲它的红字发票")).to_contain_text(RED)
    fact(page, "红冲它的红字发票").get_by_role("link", name=RED).click()
    expect(page.get_by_role("heading", name=re.compile(RED))).to_be_visible()

    page.goto(f"/pool/{DISCOUNTED}")
    lines = page.locator("main table tbody tr")
    discount = lines.filter(has_text="（折扣行）")
    expect(discount).to_have_count(1)
    expect(discount.locator("td").nth(0)).to_have_text("2")
    expect(discount.locator("td").nth(1)).to_have_text("↳ *蔬菜*鲜蔬菜 （折扣行）")
    expect(discount).to_contain_text("-14,533.55")
    discounted = discount.locator("xpath=preceding-sibling::tr[1]")
    expect(discounted.locator("td").nth(0)).to_have_text("1")
    expect(discounted.locator("td").nth(1)).to_have_text("*蔬菜*鲜蔬菜")
    expect(discounted).to_contain_text("145,335.54")


# 7 ─ 红冲预检 before usage is known ---------------------------------------------------------------------

def test_red_flush_check_offers_to_fetch_the_months_usage(page, live_server):
    """需先获取用途状态 with a button for the month; the batch it creates completes, then a verdict shows."""
    login(page)
    wait_until_finished(page, live_server.download(["2024-03"], ["82"], channel="rpa"))
    key = open_first_normal_blue_invoice(page)
    invoice_url = page.url
    expect(fact(page, "增值税用途状态")).to_have_text("未获取")
    expect(fact(page, "用途状态更新时间")).to_have_text("尚未获取")
    verdict = page.locator("#red-flush")
    expect(verdict).to_contain_text("需先获取用途状态")
    expect(verdict).to_contain_text("用途状态未获取，请先获取该月用途状态")

    verdict.get_by_role("button", name="获取 2024-03 的用途状态").click()
    expect(verdict).to_contain_text("已创建用途状态获取任务")
    created = verdict.get_by_role("link", name=re.compile(r"^\d{14}[0-9A-F]{6}$"))
    expect(created).to_be_visible()
    batch_no = created.inner_text().strip()
    created.click()
    expect(page.get_by_role("heading", name=f"导入批次 {batch_no}")).to_be_visible()
    expect(fact(page, "发票数据类型")).to_have_text("发票用途状态")
    expect(fact(page, "导入方式")).to_have_text("税局下载 · 乐企")
    panel = page.locator("#subtasks-panel")
    expect(panel).to_contain_text("全部执行成功", timeout=FINISH_TIMEOUT)
    expect(panel.locator("tbody tr")).to_have_count(1)
    expect(panel.locator("tbody tr")).to_contain_text("2024-03")

    page.goto(invoice_url)
    expect(page.get_by_role("heading", name=re.compile(key))).to_be_visible()
    expect(fact(page, "增值税用途状态")).not_to_have_text("未获取")
    expect(verdict).to_contain_text(re.compile("可以红冲|不能红冲"))
    expect(verdict).not_to_contain_text("需先获取用途状态")


# 8 ─ 同步覆盖 -----------------------------------------------------------------------------------------

def _coverage_year(page: Page, year: int) -> None:
    page.get_by_label("年度").select_option(label=f"{year}年")
    page.get_by_role("button", name="查看").click()
    expect(page).to_have_url(re.compile(f"year={year}"))


def test_coverage_shows_counts_and_gaps_that_open_the_dialog_prefilled(page, live_server):
    """2024 after the file import: every month counted; 2023: 缺口 cells open 导入 prefilled for that gap."""
    login(page)
    wait_until_finished(page, live_server.import_file())
    page.get_by_role("link", name="销项发票池").click()
    page.get_by_role("link", name="同步覆盖").click()
    _coverage_year(page, 2024)
    grid = page.locator("table.coverage")
    rows = grid.locator("tbody tr")
    expect(rows).to_have_count(12)
    expect(grid.get_by_text("缺口", exact=True)).to_have_count(0)
    total = 0
    for month in reversed(EXPECTED_2024["months"]):
        row = rows.filter(has=page.locator(f"th:text-is('{month}')"))
        expect(row).to_have_count(1)
        usage = row.locator("td").last
        expect(usage).to_have_text(re.compile(r"^0/[1-9]\d*$"))  # blue invoices this month, none with usage yet
        total += int(usage.inner_text().split("/")[1])
        expect(row).to_contain_text("文件")
    assert total == EXPECTED_2024["invoices"] - EXPECTED_2024["red"]  # red invoices have no usage status

    _coverage_year(page, 2023)
    expect(rows).to_have_count(12)
    headers = [h.strip() for h in grid.locator("thead th").all_inner_texts()]
    column_index = headers.index(KINDS[1])  # the th of the month comes first in each row, as in the header
    row = rows.filter(has=page.locator("th:text-is('2023-05')"))
    gap = row.locator("th, td").nth(column_index)
    expect(gap).to_have_text("缺口")
    expect(row.get_by_text("缺口")).to_have_count(len(headers) - 2)
    gap.get_by_role("link", name="缺口").click()

    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("税局下载")).to_be_checked()
    expect(dialog.get_by_label("发票数据", exact=True)).to_be_checked()
    expect(dialog.get_by_text("下载通道")).to_be_visible()
    expect(dialog.get_by_label(DEMO_NAME)).to_be_checked()
    expect(dialog.get_by_label("按月")).to_be_checked()
    expect(dialog.get_by_label("起", exact=True)).to_have_value("2023-05")
    expect(dialog.get_by_label("止", exact=True)).to_have_value("2023-05")
    expect(dialog.get_by_label(KINDS[1])).to_be_checked()
    expect(dialog.locator("input[name=kinds]:checked")).to_have_count(1)


# 9 ─ export ------------------------------------------------------------------------------------------

def test_export_of_the_red_filter_holds_exactly_the_red_invoices(page, live_server, tmp_path):
    """红票 filtered → 导出 Excel: an xlsx whose 发票基础信息 sheet has the header row and the 12 red invoices."""
    login(page)
    wait_until_finished(page, live_server.import_file())
    with page.expect_navigation(wait_until="load"):  # htmx listens before the filter changes
        page.get_by_role("link", name="销项发票池").click()
    page.get_by_label("蓝/红").select_option(label="红票")
    rows = pool_rows(page)
    expect(rows).to_have_count(EXPECTED_2024["red"])
    expect(rows.filter(has_text="蓝票")).to_have_count(0)

    with page.expect_download() as info:
        page.get_by_role("link", name=re.compile("^导出 Excel")).click()
    download = info.value
    expect(page.get_by_role("status").filter(has_text="正在导出")).to_contain_text(
        f"正在导出 {EXPECTED_2024['red']} 张发票")
    assert download.failure() is None
    assert re.fullmatch(r"销项发票池导出_\d{8}_\d{6}\.xlsx", download.suggested_filename)
    path = tmp_path / download.suggested_filename
    download.save_as(path)

    workbook = openpyxl.load_workbook(path, read_only=True)
    assert "发票基础信息" in workbook.sheetnames
    sheet_rows = list(workbook["发票基础信息"].iter_rows(values_only=True))
    workbook.close()
    header, data = list(sheet_rows[0]), sheet_rows[1:-1]
    assert sheet_rows[-1][0] == "合计行"
    assert header[:len(ETAX_HEADERS)] == ETAX_HEADERS
    assert len(data) == EXPECTED_2024["red"]
    at = {name: header.index(name) for name in ("数电发票号码", "是否正数发票")}
    assert {row[at["是否正数发票"]] for row in data} == {"否"}
    assert sorted(row[at["数电发票号码"]] for row in data) == sorted(EXPECTED_2024["red_links"])


def test_an_export_too_large_for_excel_says_so_and_downloads_nothing(page, live_server, monkeypatch):
    """More rows than one Excel sheet holds (the limit lowered to fit the sample): 导出 shows why and
    how to narrow the filter, and no file arrives."""
    from webapp.pool import export

    monkeypatch.setattr(export, "MAX_DATA_ROWS", EXPECTED_2024["red"] - 1)
    login(page)
    wait_until_finished(page, live_server.import_file())
    with page.expect_navigation(wait_until="load"):
        page.get_by_role("link", name="销项发票池").click()
    page.get_by_label("蓝/红").select_option(label="红票")
    expect(pool_rows(page)).to_have_count(EXPECTED_2024["red"])
    downloads = []
    page.on("download", lambda download: downloads.append(download))
    page.get_by_role("link", name=re.compile("^导出 Excel")).click()
    expect(page.get_by_role("alert")).to_contain_text(f"当前筛选有 {EXPECTED_2024['red']} 张发票")
    expect(page.get_by_role("alert")).to_contain_text("请缩小筛选范围")
    assert downloads == []
