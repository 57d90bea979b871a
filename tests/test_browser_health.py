"""The demo notice and 系统状态 in a real browser: the notice is on every page while a channel is the
sandbox; an admin finds 系统状态 under 系统管理, and its checks refresh by themselves."""
from __future__ import annotations

import json
import time

from playwright.sync_api import expect

from .browser_support import login

SANDBOX_NOTICE = "演示环境：下载通道连接内置沙箱税局，数据不是真实税局数据"


def test_the_demo_notice_is_visible_on_every_page(page):
    login(page)
    for url in ("/batches", "/pool", "/summary", "/reconcile", "/automation"):
        page.goto(url)
        expect(page.locator("#sandbox-notice")).to_have_text(SANDBOX_NOTICE)
        expect(page.locator("#sandbox-notice")).to_be_visible()


def test_system_status_shows_the_checks_live(page, live_server):
    """系统管理 → 系统状态: the worker the live server runs is seen; a process the supervisor gave up on
    appears as 故障 within one refresh, without reloading the page; mail is said to be off."""
    login(page, "admin", "admin123")
    page.get_by_role("link", name="系统管理").click()
    page.get_by_role("link", name="系统状态").click()
    checks = page.locator("#health-checks")
    expect(checks.locator("tr[data-check=database]")).to_contain_text("正常")
    expect(checks.locator("tr[data-check=leqi]")).to_contain_text("演示环境")
    expect(page.locator("#mail-state")).to_contain_text("未配置 SMTP，不发送邮件")
    expect(checks.locator("tr[data-check=processes]")).to_contain_text("未由进程守护程序运行")

    status_file = live_server.data_dir / "run" / "processes.json"
    status_file.parent.mkdir(parents=True, exist_ok=True)
    status_file.write_text(json.dumps({"updated": time.time(), "processes": {
        "worker": {"state": "FATAL", "restarts": [], "since": time.time()}}}))
    expect(checks.locator("tr[data-check=processes]")).to_contain_text("故障", timeout=15_000)
    expect(checks.locator("tr[data-check=processes]")).to_contain_text("进程 worker 反复退出")
