"""自动更新 in a real browser: created from the list page, seen on 自动化设置, run now, disabled, deleted."""
from __future__ import annotations

from playwright.sync_api import expect

from .browser_support import confirm_in_dialog, login


def no_browser_confirms(page) -> list[str]:
    """Every question is the product's own dialog: the browser's confirm box never opens."""
    asked: list[str] = []
    page.on("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    return asked


def test_auto_update_from_the_list_page_to_its_batches(page):
    """【自动更新】 → confirm → the schedule shows its next run; 立即执行 makes last month's batches."""
    login(page, "admin", "admin123")
    asked = no_browser_confirms(page)
    page.goto("/batches")
    page.get_by_role("button", name="自动更新").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("每月 5 号自动更新上月数据")
    dialog.get_by_label("发票用途状态更新").check()
    dialog.get_by_role("button", name="确定").click()
    expect(page.get_by_role("status")).to_contain_text("已创建")
    expect(page.get_by_role("status")).to_contain_text("下次执行")
    page.get_by_role("link", name="查看自动化设置").click()

    row = page.locator("tr[id^=schedule-]")
    expect(row).to_have_count(1)
    expect(row).not_to_contain_text("sim_his_inv_data_import_task_SKDP_S")  # no internal task code for users
    expect(row).to_contain_text("发票明细信息更新、发票用途状态更新")
    expect(row).to_contain_text("05 00:00")
    expect(row).to_contain_text("91330100MA2H4K7Q1X")
    expect(row).to_contain_text("尚未执行")

    expect(page.locator("#task-code")).to_have_text("sim_his_inv_data_import_task_SKDP_S")  # docs/rules.md, 自动更新
    row.get_by_role("button", name="立即执行").click()
    confirm_in_dialog(page, "下载上月数据？")
    expect(page.get_by_role("status")).to_contain_text("创建 2 个导入批次")
    batch_links = page.locator("tr[id^=schedule-] a[href^='/batches/']")
    expect(batch_links).to_have_count(2)
    row.get_by_role("button", name="立即执行").click()
    confirm_in_dialog(page, "下载上月数据？")
    expect(page.get_by_role("status")).to_contain_text("不会重复执行")
    assert asked == []

    batch_no = batch_links.first.inner_text()
    page.goto("/batches")
    expect(page.locator(f"tr#batch-{batch_no}")).to_contain_text("自动更新计划 #")


def test_disable_and_delete_a_schedule(page):
    """停用 shows no next run; 删除 (confirmed) removes it from 自动化设置."""
    login(page, "admin", "admin123")
    asked = no_browser_confirms(page)
    page.goto("/automation")
    page.get_by_role("button", name="新建自动更新").click()
    page.get_by_role("dialog").get_by_role("button", name="确定").click()
    page.get_by_role("button", name="关闭").click()
    page.goto("/automation")
    row = page.locator("tr[id^=schedule-]")
    row.get_by_role("button", name="停用").click()
    expect(page.get_by_role("status")).to_contain_text("已停用")
    expect(row).to_contain_text("已停用")
    row.get_by_role("button", name="删除").click()
    page.get_by_role("dialog").get_by_role("button", name="取消").click()  # 取消 changes nothing
    expect(row).to_have_count(1)
    row.get_by_role("button", name="删除").click()
    confirm_in_dialog(page, "已创建的导入批次不受影响")
    expect(page.get_by_role("status")).to_contain_text("已删除")
    expect(page.locator("tr[id^=schedule-]")).to_have_count(0)
    assert asked == []


def test_a_finance_user_is_not_told_to_create_a_schedule(page):
    """Only admins create schedules: an empty 自动化设置 tells a finance user to ask one, not to click 自动更新."""
    login(page)
    page.goto("/automation")
    empty = page.locator("#schedules td.empty")
    expect(empty).to_contain_text("计划由管理员创建")
    expect(empty).not_to_contain_text("即可创建")
