"""Real-browser tests that every screen tells the truth about a batch (docs/rules.md, 批次状态).

Chromium drives the live server (CSRF on, a real RQ worker, the sandbox tax bureau). Batches whose
history would take days to produce (a quota wait, a month the bureau refused three times, a batch
terminated part-way) are written as rows, exactly as the worker leaves them; everything else runs.
"""
from __future__ import annotations

import re
import time
from datetime import datetime
from itertools import pairwise
from urllib.parse import urlsplit

from playwright.sync_api import Page, expect
from sqlalchemy import select

from webapp.batches import STOPPED, reason_values
from webapp.statuses import Reason

from .browser_support import (
    DEMO_NAME,
    FINISH_TIMEOUT,
    batch_row,
    column,
    dialog_rerendered,
    login,
    open_import_dialog,
)
from .conftest import DEMO_TAX_ID

# why a month failed or waits, as the worker stores it (docs/rules.md, 失败与等待原因)
BUREAU_DOWN = reason_values(Reason.CHANNEL_UNAVAILABLE,
                            "乐企：服务暂时不可用（HTTP 503）（已尝试 3 次，服务仍不可用，请稍后重试）", channel="乐企",
                            attempts=3)
QUOTA_UNTIL_DECEMBER = reason_values(Reason.QUOTA_WAIT, kinds="", day="2026-12-01")


def add_batch(live_server, subtasks: dict[str, tuple[str, dict | None]], *, status: str, data_type: str = "invoices",
              channel: str = "leqi", not_before: datetime | None = None) -> str:
    """A 税局下载 batch with one subtask per month in the given (status, reason columns), as the worker leaves them."""
    from webapp.batches import new_batch_no, refresh_batch
    from webapp.extensions import db
    from webapp.models import Batch, Company, Subtask, User
    from webapp.statuses import SubtaskStatus
    from webapp.transactions import write_transaction

    with live_server.app.app_context():
        with write_transaction():
            user = db.session.scalar(select(User).filter_by(username="caiwu"))
            company = db.session.scalar(select(Company).filter_by(tax_id=DEMO_TAX_ID))
            months = sorted(subtasks)
            batch = Batch(batch_no=new_batch_no(), org_id=user.org_id, company_id=company.id, tax_id=company.tax_id,
                          seller_name=company.name, data_type=data_type, method="download", channel=channel,
                          kinds=["数电票（普通发票）"], type_codes=["82"], period_from=months[0], period_to=months[-1],
                          status=status, created_by_id=user.id, creator_name=user.username, created_at=datetime.now())
            db.session.add(batch)
            db.session.flush()
            for month, (state, why) in subtasks.items():
                done = state == "succeeded"
                db.session.add(Subtask(batch_id=batch.id, period=month, status=state, **(why or {}),
                                       total=100 if done else 0, success=100 if done else 0,
                                       not_before=not_before if state == "waiting" else None,
                                       finished_at=datetime.now() if state in SubtaskStatus.FINISHED else None))
            db.session.flush()
            refresh_batch(batch.id)
            batch_no = batch.batch_no
        db.session.remove()
    return batch_no


def segments(row) -> dict[str, int]:
    """The progress bar's segments as {status: count}, read from the bar itself."""
    bar = row.locator(".progress .seg")
    return {bar.nth(i).get_attribute("data-status"): int(bar.nth(i).get_attribute("data-count"))
            for i in range(bar.count())}


def watch_console(page: Page) -> list[str]:
    """Every console error, uncaught exception and failed request the page produces from now on."""
    problems: list[str] = []
    page.on("console", lambda message: problems.append(f"console: {message.text}") if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
    # a request the browser itself cancelled as the page moved on (net::ERR_ABORTED, e.g. the favicon of a
    # page left at once) is not a failure; any other failure is
    page.on("requestfailed", lambda request: problems.append(f"failed: {request.url} ({request.failure})")
            if request.failure != "net::ERR_ABORTED" else None)
    return problems


# progress segments, failure reasons, waiting, data type ---------------------------------------------------

def test_progress_bar_has_a_segment_per_status_and_failures_read_plainly(page, live_server):
    """A terminated batch with 2 of 12 months done shows 2 done and 10 terminated; a failed batch never
    shows a full bar and says why in plain Chinese (HTTP 503 only under 详情); a quota wait says until when."""
    months = [f"2024-{m:02d}" for m in range(1, 13)]
    terminated = add_batch(live_server, {m: ("succeeded" if i < 2 else "terminated", None if i < 2 else STOPPED)
                                         for i, m in enumerate(months)}, status="terminated")
    failed = add_batch(live_server, {m: ("failed", BUREAU_DOWN) for m in months[:3]}, status="failed")
    waiting = add_batch(live_server, {m: ("waiting", QUOTA_UNTIL_DECEMBER) for m in months[:2]},
                        status="pending", not_before=datetime(2026, 12, 1))
    usage = add_batch(live_server, {"2024-01": ("succeeded", None)}, status="succeeded", data_type="usage")
    login(page)
    page.goto("/batches")

    row = batch_row(page, terminated)
    assert segments(row) == {"succeeded": 2, "terminated": 10}
    expect(row.locator(".progress")).to_have_attribute("title", re.compile(r"成功 2 · 已终止 10（共 12 个月份）"))
    expect(row.locator(".seg.succeeded")).to_have_attribute("style", re.compile(r"width: 16\.66"))
    expect(column(page, row, "执行状态")).to_contain_text("已终止")
    expect(column(page, row, "执行状态")).to_contain_text("2/12 个月份成功，已终止 10")

    row = batch_row(page, failed)
    assert segments(row) == {"failed": 3}  # red, never a full green bar
    status = column(page, row, "执行状态")
    expect(status).to_contain_text("2024-01、2024-02、2024-03：乐企服务暂时不可用（已自动重试 3 次），请稍后点击“重试”")
    expect(status.get_by_text("HTTP 503")).to_be_hidden()  # technical detail folded away
    status.get_by_text("详情").click()
    expect(status.get_by_text(BUREAU_DOWN["error"])).to_be_visible()
    assert len(re.findall("不可用", status.locator(".reason").first.evaluate("e => e.firstChild.textContent"))) == 1

    row = batch_row(page, waiting)
    assert segments(row) == {"waiting": 2}
    expect(column(page, row, "执行状态")).to_contain_text("已排队，等待额度至 2026-12-01")

    expect(column(page, batch_row(page, usage), "数据类型")).to_have_text("发票用途状态")
    expect(column(page, batch_row(page, failed), "数据类型")).to_have_text("发票数据")

    page.get_by_role("link", name=failed).click()
    expect(page.locator("#subtasks-panel")).to_contain_text("乐企服务暂时不可用")
    expect(page.locator("#subtasks-panel").get_by_text("HTTP 503").first).to_be_hidden()


# 总份数 vs 成功份数 --------------------------------------------------------------------------------------------

def test_usage_batch_lists_the_invoices_the_bureau_did_not_answer(page, live_server):
    """A usage batch that ends 全部执行成功 with fewer answers than queries says why, lists those invoices,
    and each one's page says the bureau returned nothing (not 未获取)."""
    from channels.records import InvoiceRow, StagedInvoice
    from webapp.extensions import db
    from webapp.models import Batch, Invoice
    from webapp.pool import save_staged
    from webapp.transactions import write_transaction

    live_server.download(["2024-03"], ["82"], channel="rpa")
    login(page)
    page.goto("/batches")
    expect(page.locator("tr[id^=batch-]").first).to_contain_text("全部执行成功", timeout=FINISH_TIMEOUT)
    strangers = [f"2403{n:016d}" for n in range(1, 4)]  # invoices the sandbox bureau has never issued
    with live_server.app.app_context():
        with write_transaction():
            save_staged([StagedInvoice(InvoiceRow(
                key, DEMO_TAX_ID, DEMO_NAME, None, None, key, "91110000000000000X", "某客户",
                "2024-03-15 10:00:00.000000", "2024-03", "100.00", "13.00", "113.00", "电子发票服务平台",
                "数电发票（普通发票）", "82", "正常", False, "正常", "赵", "", None), [])
                         for key in strangers], source="file", batch_id=None, error_goods=frozenset())
        queried = db.session.scalar(select(db.func.count()).select_from(Invoice).where(
            Invoice.month == "2024-03", Invoice.type_code == "82", Invoice.is_red.is_(False)))
        db.session.remove()

    batch_no = live_server.download(["2024-03"], ["82"], channel="rpa", data_type="usage")
    page.goto("/batches")
    row = batch_row(page, batch_no)
    expect(column(page, row, "执行状态")).to_contain_text("全部执行成功", timeout=FINISH_TIMEOUT)
    expect(column(page, row, "总份数")).to_have_text(f"{queried:,}")
    expect(column(page, row, "成功份数")).to_have_text(f"{queried - 3:,}")
    expect(column(page, row, "执行状态")).to_contain_text(
        f"总份数与成功份数不同：税局未返回 3 张发票的用途状态（已查询 {queried:,} 张，返回 {queried - 3:,} 张）")

    row.get_by_role("link", name=batch_no).click()
    listing = page.locator("#unanswered")
    expect(listing).to_contain_text("税局未返回用途状态的发票（3 张）")
    for key in strangers:
        expect(listing.get_by_role("link", name=key)).to_be_visible()
    listing.get_by_role("link", name=strangers[0]).click()
    expect(page.locator("#usage-unanswered")).to_contain_text("已向税局查询，税局未返回该发票的用途状态")
    expect(page.locator("dl.facts")).not_to_contain_text("未获取")
    assert live_server.rows(select(Batch.status).where(Batch.batch_no == batch_no)) == [("succeeded",)]


def test_fetching_usage_from_the_invoice_page_updates_it_when_the_batch_ends(page, live_server):
    """获取用途状态 on an invoice: the notice follows the batch, and the page shows the answer by itself."""
    live_server.download(["2024-03"], ["82"], channel="rpa")
    login(page)
    page.goto("/batches")
    expect(page.locator("tr[id^=batch-]").first).to_contain_text("全部执行成功", timeout=FINISH_TIMEOUT)
    page.goto("/pool?color=blue&status=正常")
    page.locator("table.pool tbody tr a").first.click()
    usage = page.locator("dl.facts dt:text-is('增值税用途状态') + dd")
    expect(usage).to_have_text("未获取")
    page.evaluate("window.__before = true")
    live_server.sandbox.control(latency_ms=300)  # 17 slow usage queries: the notice polls several times
    page.get_by_role("button", name="获取 2024-03 的用途状态").click()
    expect(page.locator("#red-flush")).to_contain_text("完成后本页自动更新")
    try:
        expect(usage).not_to_have_text("未获取", timeout=FINISH_TIMEOUT)
    except AssertionError as failure:  # say what the batch did, not only what the page shows
        from webapp.models import Batch, Subtask

        raise AssertionError(live_server.rows(select(Batch.status, Subtask.status, Subtask.error).join(Subtask)
                                              .where(Batch.data_type == "usage"))) from failure
    assert page.evaluate("window.__before === undefined")  # the page reloaded itself
    expect(page.locator("dl.facts dt:text-is('用途状态更新时间') + dd")).not_to_have_text("尚未获取")


# no stale messages ---------------------------------------------------------------------------------------

def test_created_notice_follows_the_batch_it_announced(page, live_server):
    """The notice after 导入 says 正在执行 only while the batch runs: after 终止 it says 已终止."""
    live_server.sandbox.control(processing_polls=50)  # the bureau keeps the download 处理中 for a while
    batch_no = live_server.download(["2024-03"], ["82"], channel="rpa")
    login(page)
    page.goto(f"/batches?created={batch_no}")
    notice = page.locator("#created-notice")
    expect(notice).to_contain_text(re.compile(rf"已创建导入批次 {batch_no}：(正在执行|RPA正在准备下载数据)"))
    page.locator(f"#sel-{batch_no}").check()
    page.get_by_role("button", name="终止").click()
    page.get_by_role("dialog").get_by_role("button", name="确定").click()  # the list of what will stop
    expect(column(page, batch_row(page, batch_no), "执行状态")).to_contain_text("已终止")
    expect(notice).to_contain_text(f"已创建导入批次 {batch_no}：已终止")
    expect(notice).not_to_contain_text("正在执行")


def _finish_months(live_server, batch_no: str) -> None:
    """Every month of the batch succeeds, as the worker would leave it (the batch's status follows)."""
    from webapp.batches import refresh_batch
    from webapp.extensions import db
    from webapp.models import Batch, Subtask
    from webapp.transactions import write_transaction

    with live_server.app.app_context():
        with write_transaction():
            batch = db.session.scalar(select(Batch).filter_by(batch_no=batch_no))
            db.session.execute(Subtask.__table__.update().where(Subtask.batch_id == batch.id)
                               .values(status="succeeded", total=100, success=100))
            refresh_batch(batch.id)
        db.session.remove()


def test_a_batch_page_polls_once_and_stops_when_the_batch_ends(page, live_server):
    """The batch page has one poller: while the batch runs every request it makes goes to one address,
    never two within one POLL_SECONDS; the page shows the batch's end by itself, then asks no more."""
    from webapp.batches.facts import POLL_SECONDS

    batch_no = add_batch(live_server, {"2024-01": ("succeeded", None), "2024-02": ("running", None)}, status="syncing")
    login(page)
    polls: list[tuple[float, str]] = []
    page.on("request", lambda request: polls.append((time.monotonic(), urlsplit(request.url).path))
            if request.resource_type in ("xhr", "fetch") else None)
    page.goto(f"/batches/{batch_no}")
    panel = page.locator("#subtasks-panel")
    expect(panel).to_contain_text("同步中")
    expect(page.locator("[hx-trigger]")).to_have_count(1)
    with page.expect_response(f"**/batches/{batch_no}/live"):  # answered while the month still runs, so
        pass  # the months finish after that poll read them (the next poll, not this one, sees the end)
    with page.expect_request(f"**/batches/{batch_no}/live"):
        _finish_months(live_server, batch_no)
    expect(panel).to_contain_text("全部执行成功")
    expect(panel.locator("tbody tr").filter(has_text="执行成功")).to_have_count(2)
    expect(page.locator("[hx-trigger]")).to_have_count(0)
    asked = len(polls)
    page.wait_for_timeout(2 * POLL_SECONDS * 1000)
    assert len(polls) == asked  # stopped
    assert {path for _, path in polls} == {f"/batches/{batch_no}/live"}
    times = [at for at, _ in polls]
    assert all(later - earlier > POLL_SECONDS * 0.75 for earlier, later in pairwise(times))


# htmx errors are never silent ------------------------------------------------------------------------------

def test_htmx_failures_show_an_alert_and_an_expired_session_goes_to_the_login(page, live_server):
    """403 (not permitted), 409 (conflict), an expired CSRF token: an alert the user can act on; an expired
    session sends the whole page to the login page, not a login form into the table."""
    add_batch(live_server, {"2024-01": ("failed", BUREAU_DOWN)}, status="failed")
    login(page)
    page.goto("/batches")
    alerts = page.locator("#alerts [role=alert]")

    page.evaluate("htmx.ajax('GET', '/admin/companies', {target: '#batch-poll', swap: 'innerHTML'})")  # finance user
    expect(alerts).to_contain_text("您没有权限")
    alerts.get_by_role("button", name="关闭").click()
    expect(alerts).to_have_count(0)

    # a conflict as the server would answer it (no screen of ours provokes one yet)
    page.route("**/batches/retry", lambda route: route.fulfill(
        status=409, content_type="text/html",
        body='<p class="error" role="alert">该批次正在被他人处理，请刷新后再试</p>'))
    page.locator("input[name=batch_no]").first.check()
    page.get_by_role("button", name="重试").click()
    page.get_by_role("dialog").get_by_role("button", name="确定").click()  # the confirmation, then the 409
    expect(alerts).to_contain_text("该批次正在被他人处理，请刷新后再试")
    expect(alerts.get_by_role("button", name="刷新页面")).to_be_visible()
    expect(page.get_by_role("dialog")).to_have_count(0)  # the refused confirmation does not stay in the way
    page.unroute("**/batches/retry")
    alerts.get_by_role("button", name="关闭").click()

    page.evaluate("""document.body.setAttribute('hx-headers', '{"X-CSRFToken": "expired"}')""")
    page.get_by_role("button", name="终止").click()  # its confirmation is asked for with the stale token
    expect(alerts).to_contain_text("页面已过期")
    with page.expect_navigation(wait_until="load"):  # htmx is set up again before the next step
        alerts.get_by_role("button", name="刷新页面").click()
    expect(alerts).to_have_count(0)

    page.context.clear_cookies()
    page.get_by_label("执行状态").select_option("已终止")  # an htmx GET with no session
    expect(page).to_have_url(re.compile(r"/login\?next="))
    expect(page.get_by_text("登录已过期，请重新登录")).to_be_visible()
    expect(page.get_by_role("button", name="登录")).to_have_count(1)


# pool list sums ----------------------------------------------------------------------------------------------

def stage_pool(live_server, amounts: list[tuple[str, str]], buyer: str = "合计测试客户",
               kind: str = "数电发票（普通发票）") -> None:
    """One 数电 invoice per (金额, 税额) straight into the pool, the second without 价税合计."""
    from channels.records import InvoiceRow, StagedInvoice
    from webapp.extensions import db
    from webapp.pool import save_staged
    from webapp.transactions import write_transaction

    with live_server.app.app_context():
        with write_transaction():
            save_staged([StagedInvoice(InvoiceRow(
                f"2405{n:016d}", DEMO_TAX_ID, DEMO_NAME, None, None, f"2405{n:016d}", "91110000000000000X",
                buyer, f"2024-05-{n + 1:02d} 09:00:00.000000", "2024-05", amount, tax,
                None if n == 1 else str(round(float(amount) + float(tax), 2)), "电子发票服务平台",
                kind, "82", "正常", amount.startswith("-"), "正常", "赵", "", None), [])
                         for n, (amount, tax) in enumerate(amounts)], source="file", batch_id=None,
                        error_goods=frozenset())
        db.session.remove()


def test_pool_list_shows_count_sums_and_pages_and_says_when_nothing_matches(page, live_server):
    """The count of matching invoices and the sums of 金额, 税额, 价税合计, with thousands separators and
    right-aligned; a filter that matches nothing says so."""
    stage_pool(live_server, [("1234567.89", "160493.83"), ("0.10", "0.01"), ("-200.00", "-26.00")])
    login(page)
    page.goto("/pool?buyer=合计测试")
    summary = page.locator("#pool-summary")
    expect(summary).to_contain_text("共 3 张发票，第 1 / 1 页")
    expect(summary.locator(".sum-amount")).to_have_text("1,234,367.99")
    expect(summary.locator(".sum-tax")).to_have_text("160,467.84")
    expect(summary.locator(".sum-total")).to_have_text("1,394,835.83")
    table = page.locator("table.pool")
    expect(table).to_contain_text("1,234,567.89")
    header = table.locator("th", has_text="价税合计")
    assert header.evaluate("e => getComputedStyle(e).textAlign") == "right"
    assert table.locator("td.num").first.evaluate("e => getComputedStyle(e).textAlign") == "right"

    page.get_by_label("购买方").fill("没有这个客户")
    expect(summary).to_contain_text("没有符合筛选条件的发票")
    expect(table).to_contain_text("没有符合条件的发票")


def test_pool_list_keeps_company_names_readable_at_1280(new_page, live_server):
    """At 1280 px a seller or buyer name wraps onto two lines at most (it used to stand one
    character a line), and the table fits the page without scrolling sideways."""
    stage_pool(live_server, [("113451944.85", "3143900.65"), ("-31608.39", "0.00")], buyer="成都虚构餐饮管理有限公司",
               kind="数电发票（航空运输电子客票行程单）")
    page = new_page(viewport={"width": 1280, "height": 800})
    login(page)
    page.goto("/pool")
    table = page.locator("table.pool")
    expect(table.locator("tbody tr")).to_have_count(2)
    names = table.locator("tbody td:nth-child(4), tbody td:nth-child(5)")  # 销方, 购买方名称
    expect(table.locator("thead th:nth-child(4)")).to_have_text("销方")
    expect(names).to_have_count(4)
    for cell in names.all():
        lines = cell.evaluate("e => Math.round((e.clientHeight - parseFloat(getComputedStyle(e).paddingTop)"
                              " - parseFloat(getComputedStyle(e).paddingBottom)) / parseFloat(getComputedStyle(e)"
                              ".lineHeight))")
        assert lines <= 2, (cell.inner_text(), lines)
    assert table.evaluate("t => t.scrollWidth <= t.parentElement.clientWidth")


# no console errors, favicon, layout ----------------------------------------------------------------------------

def test_pages_log_no_console_errors_and_keep_their_layout(new_page, live_server):
    """Every page and the import dialog's changes log no console error and fetch nothing that fails;
    at 1280 px key columns do not wrap; at phone width the top menu collapses behind a button."""
    batch_no = add_batch(live_server, {"2024-01": ("failed", BUREAU_DOWN), "2024-02": ("succeeded", None)},
                         status="partial")
    page = new_page(viewport={"width": 1280, "height": 800})
    problems = watch_console(page)
    login(page, "admin", "admin123")
    for path in ("/batches", f"/batches/{batch_no}", "/pool", "/pool/coverage", "/automation", "/admin/companies",
                 "/admin/users", "/admin/settings"):
        page.goto(path)
        expect(page.locator("main h1")).to_be_visible()
    page.goto("/batches")
    assert page.evaluate("fetch('/static/favicon.svg').then(r => r.status)") == 200
    expect(page.locator("link[rel=icon]")).to_have_count(1)
    dialog = open_import_dialog(page)
    with dialog_rerendered(page):
        dialog.get_by_label("税局下载").check()
    with dialog_rerendered(page):
        dialog.get_by_label(DEMO_NAME).check()
    with dialog_rerendered(page):
        dialog.get_by_label("发票用途状态").check()
    page.keyboard.press("Escape")

    row = batch_row(page, batch_no)
    for header in ("导入批次号", "销方税号", "数据类型", "创建时间"):
        cell = column(page, row, header)
        assert cell.evaluate("e => e.scrollWidth <= e.clientWidth"
                             " && getComputedStyle(e).whiteSpace === 'nowrap'"), header
    assert problems == [], problems

    phone = new_page(viewport={"width": 390, "height": 800})
    login(phone)
    nav = phone.locator(".topbar nav")
    expect(nav).to_be_hidden()
    phone.get_by_role("button", name="菜单").click()
    expect(nav.get_by_role("link", name="销项发票池")).to_be_visible()
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
