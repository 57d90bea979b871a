"""Security in a real browser: the lockout message, 自动化设置 as a finance user sees it, logout ending
a copied session, and an admin reading and exporting the 审计日志."""
from __future__ import annotations

from openpyxl import load_workbook
from playwright.sync_api import expect

from .browser_support import confirm_in_dialog, login
from .security_support import D, X, add_cast


def _try(tab, username, password):
    tab.goto("/login")
    tab.get_by_label("用户名").fill(username)
    tab.get_by_label("密码").fill(password)
    tab.get_by_role("button", name="登录").click()


def test_five_wrong_passwords_lock_the_login_with_a_chinese_message(page):
    for _ in range(5):
        _try(page, "caiwu", "wrong-password")
        expect(page.get_by_text("用户名或密码错误")).to_be_visible()
    _try(page, "caiwu", "caiwu123")
    expect(page.get_by_text("登录失败次数过多")).to_be_visible()
    expect(page.get_by_role("button", name="退出")).to_have_count(0)


def test_finance_user_sees_only_their_company_and_no_schedule_buttons(live_server, new_page):
    add_cast(live_server.app)
    admin = login(new_page(), "admin", "admin123")
    admin.on("dialog", lambda dialog: dialog.accept())
    admin.goto("/automation")
    admin.get_by_role("button", name="新建自动更新").click()
    admin.get_by_role("dialog").get_by_role("button", name="确定").click()
    admin.get_by_role("button", name="关闭").click()
    admin.goto("/automation")
    admin.locator("tr[id^=schedule-]").get_by_role("button", name="立即执行").click()
    confirm_in_dialog(admin, "下载上月数据？")
    expect(admin.get_by_role("status")).to_contain_text("创建 2 个导入批次")
    expect(admin.locator("tr[id^=schedule-]")).to_contain_text(D["tax_id"])

    finance = login(new_page())
    finance.goto("/automation")
    row = finance.locator("tr[id^=schedule-]")
    expect(row).to_contain_text(X["tax_id"])
    expect(row).not_to_contain_text(D["tax_id"])
    expect(row.locator("a[href^='/batches/']")).to_have_count(1)  # X's batch, not D's
    expect(row.get_by_role("button")).to_have_count(0)
    expect(row).to_contain_text("仅管理员可操作")
    expect(finance.get_by_role("button", name="新建自动更新")).to_have_count(0)
    finance.goto("/batches")
    finance.get_by_role("button", name="自动更新").click()
    expect(finance.get_by_role("dialog")).to_contain_text("仅管理员可以创建")


def test_logout_ends_a_copied_session(new_page):
    first = login(new_page())
    cookies = first.context.cookies()
    second = new_page()
    second.context.add_cookies(cookies)
    second.goto("/pool")
    expect(second.get_by_role("button", name="退出")).to_be_visible()
    first.get_by_role("button", name="退出").click()
    expect(first.get_by_role("button", name="登录")).to_be_visible()
    second.goto("/pool")
    expect(second.get_by_role("button", name="登录")).to_be_visible()


def test_admin_filters_the_audit_log_and_exports_it(new_page, tmp_path):
    _try(new_page(), "caiwu", "wrong-password")
    admin = login(new_page(), "admin", "admin123")
    admin.get_by_role("link", name="系统管理").click()
    admin.get_by_role("link", name="审计日志").click()
    admin.get_by_label("操作").select_option(label="登录失败")
    admin.get_by_role("button", name="查询").click()
    table = admin.locator("#audit-table tbody")
    expect(table.locator("tr")).to_have_count(1)
    expect(table).to_contain_text("caiwu")
    expect(table).to_contain_text("用户名或密码错误")
    with admin.expect_download() as download:
        admin.get_by_role("link", name="导出").click()
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    assert path.name.startswith("审计日志_")
    rows = list(load_workbook(path).active.iter_rows(values_only=True))
    assert [(r[1], r[2]) for r in rows[1:]] == [("caiwu", "登录失败")]
