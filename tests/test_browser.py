"""Real-browser tests: Chromium drives the app served on a local port, with CSRF on and a real RQ worker.

The fixtures and helpers live in tests/browser_support.py (a plugin of tests/conftest.py)."""
from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from .browser_support import (
    EXPECTED_2024,
    FINISH_TIMEOUT,
    OTHER_NAME,
    OTHER_TAX_ID,
    SAMPLE_2024,
    batch_row,
    column,
    dialog_rerendered,
    login,
    open_import_dialog,
    wait_until_finished,
)

# 1 ─ login ------------------------------------------------------------------------------------------

def test_login_is_required_and_wrong_password_is_refused(page):
    """/batches sends a stranger to the login page; a wrong password is refused, the right one lands on the list."""
    page.goto("/batches")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fbatches"))
    expect(page.get_by_text("请先登录")).to_be_visible()
    page.get_by_label("用户名").fill("caiwu")
    page.get_by_label("密码").fill("wrong-password")
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_text("用户名或密码错误")).to_be_visible()
    page.get_by_label("用户名").fill("caiwu")
    page.get_by_label("密码").fill("caiwu123")
    page.get_by_role("button", name="登录").click()
    expect(page).to_have_url(re.compile(r"/batches$"))
    expect(page.get_by_role("heading", name="历史发票数据同步")).to_be_visible()
    expect(page.get_by_role("button", name="导入", exact=True)).to_be_visible()
    expect(page.get_by_text("请先登录")).to_have_count(0)


# 2 ─ import through the dialog -----------------------------------------------------------------------

def test_import_dialog_creates_a_batch_that_finishes_by_itself(page):
    """导入 → choose the file → 确定: the modal closes, the new row polls itself to 全部执行成功, then stops polling."""
    login(page)
    dialog = open_import_dialog(page)
    expect(dialog.get_by_label("导入电子税局文件")).to_be_checked()
    dialog.get_by_label("杭州示例科技有限公司").check()
    dialog.locator("input[type=file]").set_input_files(SAMPLE_2024)
    dialog.get_by_role("button", name="确定").click()
    expect(page.get_by_role("dialog")).to_have_count(0)

    row = page.locator("tr[id^=batch-]")
    expect(row).to_have_count(1)
    page.evaluate("window.__noReload = true")  # gone if the page reloads
    expect(column(page, row, "执行状态")).to_contain_text("全部执行成功", timeout=FINISH_TIMEOUT)
    assert page.evaluate("window.__noReload") is True
    expect(column(page, row, "总份数")).to_have_text("312")
    expect(column(page, row, "成功份数")).to_have_text("312")
    for kind in EXPECTED_2024["by_type"]:
        expect(column(page, row, "发票种类")).to_contain_text(kind)
    expect(row).not_to_have_attribute("hx-trigger", re.compile(".*"))  # finished rows stop polling

    column(page, row, "导入批次号").get_by_role("link").click()
    expect(page.get_by_role("heading", name=re.compile("^导入批次 "))).to_be_visible()
    subtasks = page.locator("main table tbody tr")
    expect(subtasks).to_have_count(12)
    expect(subtasks.filter(has_text="执行成功")).to_have_count(12)


def test_import_dialog_leaves_the_rest_of_the_page_intact(page):
    """After a successful import the list page keeps its title bar, toolbar and the 已创建 notice."""
    login(page)
    dialog = open_import_dialog(page)
    dialog.get_by_label("杭州示例科技有限公司").check()
    dialog.locator("input[type=file]").set_input_files(SAMPLE_2024)
    dialog.get_by_role("button", name="确定").click()
    expect(page.locator("tr[id^=batch-]")).to_have_count(1)
    expect(page.get_by_role("heading", name="历史发票数据同步")).to_be_visible()
    expect(page.get_by_text("已创建导入批次")).to_be_visible()
    expect(page.get_by_role("button", name="终止")).to_be_visible()
    expect(page.get_by_role("button", name="退出")).to_be_visible()


# 3 ─ dialog validation -------------------------------------------------------------------------------

def test_dialog_without_a_file_says_so_in_chinese(page):
    """确定 with no file chosen keeps the modal open with 请选择从电子税局导出的文件."""
    login(page)
    dialog = open_import_dialog(page)
    dialog.get_by_label("杭州示例科技有限公司").check()
    dialog.get_by_role("button", name="确定").click()
    expect(page.get_by_role("dialog").get_by_role("alert")).to_have_text("请选择从电子税局导出的文件")


def test_dialog_download_method_shows_its_fields(page):
    """税局下载 re-renders the dialog with 下载通道 and 发票种类, and asks for a kind before submitting."""
    login(page)
    dialog = open_import_dialog(page)
    expect(dialog.get_by_text("下载通道")).to_have_count(0)
    dialog.get_by_label("杭州示例科技有限公司").check()
    with dialog_rerendered(page):
        dialog.get_by_label("税局下载").check()
    expect(dialog.get_by_text("下载通道")).to_be_visible()
    expect(dialog.get_by_text("发票种类")).to_be_visible()
    expect(dialog.locator("input[type=file]")).to_have_count(0)
    expect(dialog.get_by_label("杭州示例科技有限公司")).to_be_checked()  # kept across the re-render
    dialog.get_by_role("button", name="确定").click()
    expect(page.get_by_role("dialog").get_by_role("alert")).to_contain_text("请选择发票种类")


def test_dialog_never_offers_usage_status_with_a_file_import(page):
    """发票用途状态 switches the dialog to 税局下载: 导入电子税局文件 is not offered with it."""
    login(page)
    dialog = open_import_dialog(page)
    with dialog_rerendered(page):
        dialog.get_by_label("发票用途状态").check()
    expect(dialog.get_by_label("发票用途状态")).to_be_checked()
    expect(dialog.get_by_label("税局下载")).to_be_checked()
    expect(dialog.get_by_label("导入电子税局文件")).to_have_count(0)
    expect(dialog.get_by_text("发票用途状态只能从税局下载")).to_be_visible()


# 4 ─ a bad file --------------------------------------------------------------------------------------

def test_a_text_file_named_xlsx_is_refused_without_a_batch(page, tmp_path):
    """A .xlsx that is really text: a Chinese error in the modal, and the list stays empty."""
    bad = tmp_path / "发票.xlsx"
    bad.write_text("发票号码,金额\n1,2\n", encoding="utf-8")
    login(page)
    dialog = open_import_dialog(page)
    dialog.get_by_label("杭州示例科技有限公司").check()
    dialog.locator("input[type=file]").set_input_files(bad)
    dialog.get_by_role("button", name="确定").click()
    alert = page.get_by_role("dialog").get_by_role("alert")
    expect(alert).to_contain_text("xlsx")
    expect(alert).to_contain_text(re.compile("[\u4e00-\u9fff]{4}"))
    page.get_by_role("dialog").get_by_role("button", name="取消").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(page.locator("#batch-table")).to_contain_text("暂无导入批次")


# 5 ─ 终止 and 重试 ------------------------------------------------------------------------------------

def _click_confirmed(page: Page, name: str) -> None:
    """Click a toolbar button and confirm in the dialog that lists what will stop or run."""
    page.get_by_role("button", name=name, exact=True).click()
    page.get_by_role("dialog").get_by_role("button", name="确定").click()
    expect(page.get_by_role("dialog")).to_have_count(0)


def test_terminate_and_retry_need_a_selection(page):
    """With nothing ticked, 终止 and 重试 answer 请先勾选… at once, asking nothing first."""
    questions = []
    page.on("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
    login(page)
    page.get_by_role("button", name="终止", exact=True).click()
    expect(page.locator("#batch-table [role=status]")).to_have_text("请先勾选要终止的导入批次")
    page.get_by_role("button", name="重试", exact=True).click()
    expect(page.locator("#batch-table [role=status]")).to_have_text("请先勾选要重试的导入批次")
    expect(page.get_by_role("dialog")).to_have_count(0)
    assert questions == []


def test_terminate_and_retry_a_finished_batch_change_nothing(page, live_server):
    """A finished batch: 终止 says at once nothing needed terminating, 重试 that nothing failed or stopped."""
    login(page)
    batch_no = live_server.import_file()
    wait_until_finished(page, batch_no)
    page.get_by_label(f"选择 {batch_no}").check()
    page.get_by_role("button", name="终止", exact=True).click()
    expect(page.locator("#batch-table [role=status]")).to_have_text("所选批次没有待执行或执行中的任务，无需终止")
    expect(batch_row(page, batch_no)).to_contain_text("全部执行成功")
    page.get_by_label(f"选择 {batch_no}").check()
    page.get_by_role("button", name="重试", exact=True).click()
    expect(page.locator("#batch-table [role=status]")).to_have_text("所选批次没有执行失败或已终止的任务")
    expect(batch_row(page, batch_no)).to_contain_text("全部执行成功")
    expect(page.get_by_role("dialog")).to_have_count(0)


# 6 ─ the pool ----------------------------------------------------------------------------------------

def test_pool_search_narrows_and_red_invoice_links_to_blue(page, live_server):
    """销项发票池 lists the import; typing a 数电 prefix narrows it; a red invoice links to the blue one."""
    login(page)
    wait_until_finished(page, live_server.import_file())
    page.get_by_role("link", name="销项发票池").click()
    rows = page.locator("#pool-table tbody tr")
    expect(rows).to_have_count(20)  # the first page of the 312 (the list does not count the whole pool)
    expect(page.locator("#pool-table").get_by_role("link", name="下一页")).to_be_visible()
    page.wait_for_load_state("load")  # htmx listens for typing once its deferred script has run

    page.get_by_label("发票号码").press_sequentially("242731")
    expect(rows).to_have_count(3)
    expect(rows.filter(has_text="242731")).to_have_count(3)

    red, blue = "24706900000000003120", EXPECTED_2024["red_links"]["24706900000000003120"]
    page.get_by_label("发票号码").fill(red[:8])
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("红票")
    rows.get_by_role("link", name=red).click()
    expect(page.get_by_role("heading", name=re.compile(red))).to_be_visible()
    expect(page.get_by_text("被红冲蓝字发票")).to_be_visible()
    page.get_by_role("link", name=blue).click()
    expect(page.get_by_role("heading", name=re.compile(blue))).to_be_visible()


# 7 ─ 系统管理 ------------------------------------------------------------------------------------------

def test_admin_adds_a_company_and_a_user_with_a_grant(page):
    """The admin sees 系统管理, adds a company, then a user granted that company."""
    login(page, "admin", "admin123")
    page.get_by_role("link", name="系统管理").click()
    expect(page.get_by_role("heading", name="新增企业")).to_be_visible()
    page.get_by_label("税号", exact=True).fill(OTHER_TAX_ID)
    page.get_by_label("企业名称", exact=True).fill(OTHER_NAME)
    page.get_by_role("button", name="保存").click()
    expect(page.get_by_text("企业信息已保存")).to_be_visible()
    expect(page.get_by_role("row", name=re.compile(OTHER_TAX_ID))).to_contain_text(OTHER_NAME)

    page.get_by_role("link", name="用户与授权").click()
    expect(page.get_by_role("heading", name="新增用户")).to_be_visible()
    page.get_by_label("用户名", exact=True).fill("zhangsan")
    page.get_by_label("密码（留空则不修改）").fill("zhang123")
    page.get_by_label("角色").select_option(label="财务")
    page.get_by_label(OTHER_NAME).check()
    page.get_by_role("button", name="保存").click()
    expect(page.get_by_text("用户已保存")).to_be_visible()
    row = page.get_by_role("row", name=re.compile("zhangsan"))
    expect(row).to_contain_text("财务")
    expect(row).to_contain_text(OTHER_NAME)


def test_finance_user_has_no_admin_pages(page):
    """caiwu sees no 系统管理 link and gets 403 at /admin/companies."""
    login(page)
    expect(page.get_by_role("link", name="系统管理")).to_have_count(0)
    response = page.goto("/admin/companies")
    assert response.status == 403


def test_error_goods_setting_needs_english_commas(page):
    """errorGoodsNames: a Chinese comma is refused with 请用英文逗号分隔; a valid value becomes 当前值."""
    login(page, "admin", "admin123")
    page.goto("/admin/settings")
    page.get_by_label("配置项值").fill("详见销货清单，原价合计")
    page.get_by_role("button", name="保存").click()
    expect(page.get_by_role("alert")).to_contain_text("请用英文逗号分隔")
    page.get_by_label("配置项值").fill("详见销货清单,原价合计,运费")
    page.get_by_role("button", name="保存").click()
    expect(page.get_by_text("errorGoodsNames 已保存")).to_be_visible()
    expect(page.get_by_text("当前值：详见销货清单,原价合计,运费")).to_be_visible()


# 8 ─ permissions -------------------------------------------------------------------------------------

def test_user_of_another_company_sees_none_of_the_demo_company(new_page, live_server):
    """A user granted only another company sees no demo batches or invoices and can import only for theirs."""
    batch_no = live_server.import_file()
    wait_until_finished(login(new_page()), batch_no)
    live_server.add_user_of_other_company("lisi", "lisi1234")

    page = login(new_page(), "lisi", "lisi1234")
    expect(page.locator("#batch-table")).to_contain_text("暂无导入批次")
    dialog = open_import_dialog(page)
    expect(dialog.locator("input[name=tax_ids]")).to_have_count(1)
    expect(dialog.get_by_label(OTHER_NAME)).to_be_visible()
    expect(dialog.get_by_text("杭州示例科技有限公司")).to_have_count(0)

    page.goto("/pool")
    expect(page.locator("#pool-table")).to_contain_text("发票池中还没有发票")
    assert page.goto(f"/batches/{batch_no}").status == 404
    assert page.goto("/pool/24706900000000003120").status == 404


# 9 ─ nothing from elsewhere --------------------------------------------------------------------------

def test_pages_load_nothing_from_another_origin(page, live_server):
    """Every request of a walk through the pages goes to the live server itself."""
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    login(page, "admin", "admin123")
    batch_no = live_server.import_file(username="admin")
    wait_until_finished(page, batch_no)
    open_import_dialog(page).get_by_label("税局下载").check()
    expect(page.get_by_role("dialog").get_by_text("下载通道")).to_be_visible()
    page.goto(f"/batches/{batch_no}")
    expect(page.locator("main table tbody tr")).to_have_count(12)
    page.goto("/pool?q=2470690")
    page.get_by_role("link", name="24706900000000003120").click()
    expect(page.get_by_text("被红冲蓝字发票")).to_be_visible()
    for path in ("/admin/companies", "/admin/users", "/admin/settings"):
        page.goto(path)
        expect(page.get_by_role("heading", name="系统管理")).to_be_visible()
    assert len(urls) > 10
    foreign = [url for url in urls if not url.startswith(live_server.url + "/")]
    assert foreign == []
