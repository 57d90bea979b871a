"""The batch screens without a browser (docs/rules.md, 批次状态): plain failure reasons, exact numbers, the batch
list's one poll and fixed number of queries, pool sums to the cent, the coverage ratio, expired sessions."""
from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal

import pytest
from sqlalchemy import event, select

from channels.records import InvoiceRow, StagedInvoice
from webapp.batches import reason_values
from webapp.batches.facts import POLL_SECONDS, POLL_WAITING_SECONDS, page_facts, reason_text
from webapp.clock import now
from webapp.extensions import db
from webapp.numbers import exact_number, money, thousands
from webapp.pool import save_staged
from webapp.statuses import Reason
from webapp.transactions import write_transaction

from .conftest import DEMO_TAX_ID, login

TECHNICAL = re.compile(r"HTTP|[A-Za-z]{3,}Error|Timeout|JSON|(?<!\d)\d{3}(?!\d)|[{}]")


@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_reads_as_a_plain_chinese_sentence_whatever_its_parameters(reason):
    """A reason's sentence (docs/rules.md, 失败与等待原因) is whole with its parameters or without them
    (a row an older version stored may lack some), and never shows a placeholder or technical words."""
    params = {"channel": "乐企", "attempts": 3, "message": "企业未开通乐企", "kinds": "数电发票（普通发票）",
              "day": "2026-01-05", "times": 3, "retries": 2, "since": "2024-03-15", "first": "2024-01",
              "last": "2024-02", "count": 2, "error": "KeyError", "why": "No space left on device"}
    for given in (params, {} if reason.label != "{message}" else {"message": "文件为空"}):
        summary, detail = reason_text(reason, given, "technical text: KeyError HTTP 503")
        assert summary and not TECHNICAL.search(summary) and detail == "technical text: KeyError HTTP 503"


@pytest.mark.parametrize("message", [
    "发票 24330527780320001701 已作为销方 91110000MA00000001 的发票存在于发票池，与本次数据的销方 91330100MA2H4K7Q1X "
    "不一致，本月未导入",
    "文件中有 4 处无法读取，未导入任何数据。第一处：工作表“信息汇总表”第 2 行“金额”不是金额：abc。"
    "请下载“错误清单”查看全部并逐行修正后重新导入",
    "工作表“发票基础信息”第 7 行“开票日期”不是日期：March 5th，文件未导入任何数据，请修正后重新上传",
])
def test_a_refusal_in_plain_chinese_is_shown_as_it_is(message):
    assert reason_text(Reason.REJECTED, {"message": message}, message) == (message, None)


@pytest.mark.parametrize("stored, shown", [
    ("2199.5841666666665", "2199.58416666667"), ("0.30000000000000004", "0.3"), ("12", "12"),
    ("1.50", "1.50"), ("0.000001", "0.000001"), (None, ""), ("123456789012345678", "123456789012346000"),
])
def test_quantities_and_unit_prices_show_as_the_source_wrote_them(stored, shown):
    assert exact_number(stored) == shown


def test_amounts_and_counts_carry_thousands_separators():
    assert money("1234567.8") == "1,234,567.80" and money(Decimal("-26")) == "-26.00"
    assert thousands(2454) == "2,454" and thousands(None) == ""


# the batch list: one poll, fixed queries ------------------------------------------------------------------

def _batches(app, count: int, running: int) -> list[str]:
    """`count` download batches of two months each, the first `running` still running."""
    from webapp.batches import new_batch_no
    from webapp.models import Batch, Company, Subtask, User

    with app.app_context():
        with write_transaction():
            user = db.session.scalar(select(User).filter_by(username="caiwu"))
            company = db.session.scalar(select(Company).filter_by(tax_id=DEMO_TAX_ID))
            numbers = []
            for n in range(count):
                live = n < running
                batch = Batch(batch_no=f"{new_batch_no()}{n:04d}", org_id=user.org_id, company_id=company.id,
                              tax_id=company.tax_id, seller_name=company.name, data_type="invoices", method="download",
                              channel="rpa", kinds=["全部"], status="syncing" if live else "succeeded", total=5,
                              success=5, created_by_id=user.id, creator_name="caiwu",
                              created_at=datetime(2026, 1, 1, 0, 0, n % 60))
                db.session.add(batch)
                db.session.flush()
                db.session.add_all([Subtask(batch_id=batch.id, period="2024-01",
                                            status="running" if live else "succeeded"),
                                    Subtask(batch_id=batch.id, period="2024-02",
                                            status="pending" if live else "succeeded", total=5, success=5)])
                numbers.append(batch.batch_no)
        db.session.remove()
    return numbers


def _count_queries(app, call) -> tuple[object, int]:
    statements = []
    with app.app_context():
        engine = db.engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        return call(), len(statements)
    finally:
        event.remove(engine, "before_cursor_execute", listener)


def test_batch_list_polls_once_per_page_and_its_queries_do_not_grow_with_rows(app, client):
    """Running rows are refreshed by one poller for the page; the list costs the same few queries for 2
    rows as for 20 (no lazy loading per row; only a full page also counts the rows, a shorter one being
    the last); with nothing running there is no poller."""
    login(client)
    _batches(app, 2, running=0)
    page, few = _count_queries(app, lambda: client.get("/batches"))
    assert 'hx-trigger="every' not in page.text  # nothing runs: nothing polls
    _batches(app, 18, running=5)
    page, many = _count_queries(app, lambda: client.get("/batches"))
    assert many == few + 1  # the count of a full page
    assert page.text.count('hx-trigger="every') == 1
    poll = re.search(r'id="batch-poll" hidden hx-get="([^"]+)"', page.text).group(1).replace("&amp;", "&")
    live, queries = _count_queries(app, lambda: client.get(poll, headers={"HX-Request": "true"}))
    assert live.text.count('hx-swap-oob="true"') == 1  # nothing changed: only the notice, no row
    assert live.text.count('hx-trigger="every 2s"') == 1
    assert queries <= 8
    _finish_one_month(app, page.text)
    live = client.get(poll, headers={"HX-Request": "true"})
    assert live.text.count('hx-swap-oob="true"') == 1 + 1  # the row that moved on, and the notice
    assert "1/2 个月份成功" in live.text


def _finish_one_month(app, page: str) -> None:
    """The first running row's running month succeeds, as the worker would leave it."""
    from webapp.batches import refresh_batch
    from webapp.models import Batch, Subtask

    number = re.search(r'nos=([^.&"]+)\.', page).group(1)
    with app.app_context():
        with write_transaction():
            batch = db.session.scalar(select(Batch).filter_by(batch_no=number))
            db.session.execute(Subtask.__table__.update()
                               .where(Subtask.batch_id == batch.id, Subtask.status == "running")
                               .values(status="succeeded", total=5, success=5))
            refresh_batch(batch.id)
        db.session.remove()


def test_poll_stops_when_the_page_has_nothing_left_running(app, client):
    login(client)
    [number] = _batches(app, 1, running=1)
    from webapp.models import Batch

    with app.app_context():
        with write_transaction():
            batch = db.session.scalar(select(Batch).filter_by(batch_no=number))
            for subtask in batch.subtasks:
                subtask.status = "succeeded"
            batch.status = "succeeded"
        db.session.remove()
    live = client.get(f"/batches/live?nos={number}&created={number}", headers={"HX-Request": "true"})
    assert 'id="batch-poll" hidden>' in live.text and "hx-trigger" not in live.text
    assert f"已创建导入批次 {number}：全部执行成功" in live.text


# the batch page: one poll too ------------------------------------------------------------------------------

POLLER = re.compile(r'<div id="batch-poll" hidden hx-get="([^"]+)" hx-trigger="every (\d+)s"')


def _pollers(text: str) -> list[tuple[str, int]]:
    """The page's poller as (address, seconds between polls); a page with nothing running has none."""
    return [(url.replace("&amp;", "&"), int(seconds)) for url, seconds in POLLER.findall(text)]


def _file_batch_being_parsed(app) -> str:
    """A 导入电子税局文件 batch whose upload is still being parsed (数据预处理中): no months yet."""
    from webapp.batches import new_batch_no
    from webapp.models import Batch, Company, User

    with app.app_context():
        with write_transaction():
            user = db.session.scalar(select(User).filter_by(username="caiwu"))
            company = db.session.scalar(select(Company).filter_by(tax_id=DEMO_TAX_ID))
            batch = Batch(batch_no=new_batch_no(), org_id=user.org_id, company_id=company.id, tax_id=company.tax_id,
                          seller_name=company.name, data_type="invoices", method="file", file_name="导出.xlsx",
                          kinds=["全部"], status="preprocessing", created_by_id=user.id, creator_name="caiwu",
                          created_at=now())
            db.session.add(batch)
            number = batch.batch_no
        db.session.remove()
    return number


def _set_batch(app, number: str, months: str | None = None, **values) -> None:
    """The batch as the worker leaves it: each month in status `months` (the batch's status follows), or
    the batch's own columns set."""
    from webapp.batches import refresh_batch
    from webapp.models import Batch, Subtask

    with app.app_context():
        with write_transaction():
            batch = db.session.scalar(select(Batch).filter_by(batch_no=number))
            if months:
                done = months == "succeeded"
                db.session.execute(Subtask.__table__.update().where(Subtask.batch_id == batch.id)
                                   .values(status=months, total=5 if done else 0, success=5 if done else 0))
                refresh_batch(batch.id)
            for name, value in values.items():
                setattr(batch, name, value)
        db.session.remove()


def test_a_batch_page_polls_once_and_stops_at_its_finished_state(app, client):
    """A file being parsed: one poller for the page (its months and its 错误清单 once asked twice, every
    2 s each), at POLL_SECONDS; each answer brings both sections, and the one telling the file was
    refused shows its 错误清单 and stops asking."""
    login(client)
    number = _file_batch_being_parsed(app)
    page = client.get(f"/batches/{number}")
    assert page.text.count("hx-trigger=") == 1
    [(poll, every)] = _pollers(page.text)
    assert every == POLL_SECONDS and poll == f"/batches/{number}/live"

    live = client.get(poll, headers={"HX-Request": "true"})
    assert "正在解析文件" in live.text
    assert live.text.count('hx-swap-oob="true"') == 2  # the months and the 错误清单, in one answer
    assert _pollers(live.text) == [(poll, POLL_SECONDS)]

    rows = [{"sheet": "发票基础信息", "row": 2, "column": "开票日期", "value": "上周三", "why": "不是日期"}]
    _set_batch(app, number, status="failed",
               **reason_values(Reason.FILE_REFUSED, message="文件中有 1 处无法读取，未导入任何数据"),
               finished_at=datetime(2026, 1, 1, 0, 5), error_rows=json.dumps(rows, ensure_ascii=False))
    live = client.get(poll, headers={"HX-Request": "true"})
    assert "全部执行失败" in live.text and "错误清单" in live.text and "上周三" in live.text
    assert "hx-trigger" not in live.text and '<div id="batch-poll" hidden></div>' in live.text


def test_a_batch_page_polls_slowly_while_its_months_only_wait(app, client):
    """Months waiting for quota: the page asks every POLL_WAITING_SECONDS, as the list does; once a month
    runs, every POLL_SECONDS again; when all succeeded the page shows it and no longer asks."""
    login(client)
    [number] = _batches(app, 1, running=1)
    [(poll, every)] = _pollers(client.get(f"/batches/{number}").text)
    assert every == POLL_SECONDS
    _set_batch(app, number, months="waiting")
    assert _pollers(client.get(poll, headers={"HX-Request": "true"}).text) == [(poll, POLL_WAITING_SECONDS)]
    _set_batch(app, number, months="running")
    assert _pollers(client.get(poll, headers={"HX-Request": "true"}).text) == [(poll, POLL_SECONDS)]
    _set_batch(app, number, months="succeeded")
    live = client.get(poll, headers={"HX-Request": "true"})
    assert "全部执行成功" in live.text and "总份数 <b>10</b>，成功份数 <b>10</b>" in live.text
    assert _pollers(live.text) == [] and "hx-trigger" not in live.text


def test_the_invoice_pages_usage_notice_polls_as_a_batch_page_does(app, client):
    """获取用途状态's notice is the invoice page's one poll: seldom while its months wait for quota (which may
    last hours), often while one runs, and a reload of the page once the batch ended."""
    login(client)
    [number] = _batches(app, 1, running=1)
    notice = f"/pool/24330000000000000001/usage-batch/{number}"
    every = re.compile(r'id="usage-batch" hx-get="[^"]+" hx-trigger="every (\d+)s"')
    _set_batch(app, number, months="waiting")
    assert every.findall(client.get(notice, headers={"HX-Request": "true"}).text) == [str(POLL_WAITING_SECONDS)]
    _set_batch(app, number, months="running")
    assert every.findall(client.get(notice, headers={"HX-Request": "true"}).text) == [str(POLL_SECONDS)]
    _set_batch(app, number, months="succeeded")
    assert client.get(notice, headers={"HX-Request": "true"}).headers["HX-Refresh"] == "true"


def test_facts_count_subtasks_per_status_and_explain_the_mismatch(app):
    from webapp.batches.facts import mismatch
    from webapp.models import Batch

    numbers = _batches(app, 1, running=1)
    with app.app_context():
        batch = db.session.scalar(select(Batch).filter_by(batch_no=numbers[0]))
        batch.total, batch.success = 5, 0
        facts = page_facts([batch.id])[batch.id]
        assert facts.counts == {"running": 1, "pending": 1}
        assert facts.hover() == "同步中 1 · 待同步 1（共 2 个月份）"  # as the subtask rows say
        assert mismatch(batch, facts) == ["还有 2 个月份未执行完成"]


# the pool: sums, empty results ------------------------------------------------------------------------------

def _invoice(n: int, amount: str, tax: str, total: str | None, buyer: str = "合计客户"):
    key = f"2405{n:016d}"
    return StagedInvoice(InvoiceRow(
        key, DEMO_TAX_ID, "杭州示例科技有限公司", None, None, key, "91110000000000000X", buyer,
        f"2024-05-{n % 28 + 1:02d} 09:00:00.000000", "2024-05", amount, tax, total, "电子发票服务平台",
        "数电发票（普通发票）", "82", "正常", amount.startswith("-"), "正常", "赵", "", None), [])


def test_pool_summary_counts_and_sums_to_the_cent(app, client):
    """Many cents that binary floats cannot hold add up exactly; 价税合计 falls back to 金额 + 税额."""
    staged = [_invoice(n, "0.10", "0.01", "0.11") for n in range(1, 1001)]
    staged += [_invoice(2000, "1234567.89", "160493.83", None), _invoice(2001, "-200.00", "-26.00", "-226.00")]
    with app.app_context():
        with write_transaction():
            save_staged(staged, source="file", batch_id=None, error_goods=frozenset())
        db.session.remove()
    login(client)
    text = client.get("/pool/summary?buyer=合计客户", headers={"HX-Request": "true"}).text
    assert "共 <b class=\"count\">1,002</b> 张发票，第 1 / 51 页" in text
    assert '<b class="sum-amount">1,234,467.89</b>' in text
    assert '<b class="sum-tax">160,477.83</b>' in text
    assert '<b class="sum-total">1,394,945.72</b>' in text
    nothing = client.get("/pool/summary?buyer=无此客户", headers={"HX-Request": "true"}).text
    assert "没有符合筛选条件的发票" in nothing


def test_a_blank_voided_invoice_page_names_no_seller_none_and_says_it_has_no_line(app, client):
    """A blank-voided invoice (docs/etax-export.md, Values) has no seller or buyer name; the page never prints None."""
    key = "033002100104-00000065"
    row = _invoice(1, "0.00", "0.00", "0.00", buyer=None).header._replace(
        key=key, seller_name=None, code="033002100104", number="00000065", digital_number=None,
        buyer_tax_id="000000000000000", status="已作废")
    with app.app_context():
        with write_transaction():
            save_staged([StagedInvoice(row, [])], source="file", batch_id=None, error_goods=frozenset())
        db.session.remove()
    login(client)
    page = client.get(f"/pool/{key}").text
    assert "None" not in page
    assert f"<dd>{DEMO_TAX_ID}</dd>" in page and "<dd>000000000000000</dd>" in page
    assert "这张发票没有明细行（空白作废：作废时票面未填写内容）" in page


def test_coverage_counts_usage_of_positive_invoices_and_hides_kinds_never_issued(app, client):
    from webapp.models import Invoice

    with app.app_context():
        with write_transaction():
            save_staged([_invoice(1, "100.00", "13.00", "113.00"), _invoice(2, "-100.00", "-13.00", "-113.00")],
                        source="file", batch_id=None, error_goods=frozenset())
            db.session.execute(Invoice.__table__.update().where(Invoice.key == "24050000000000000001")
                               .values(usage_updated_at=datetime(2024, 6, 1), vat_usage="0"))
        db.session.remove()
    login(client)
    page = client.get(f"/pool/coverage?tax_id={DEMO_TAX_ID}&year=2024").text
    row = re.search(r"<tr><th>2024-05</th>.*?</tr>", page, re.S).group(0)
    assert '<td class="usage-ratio">1/1</td>' in row  # the red invoice has no usage status to fetch
    assert "缺口" not in row  # 数电票（普通发票） is the only kind issued: no other column
    assert "未显示" in page
    every = client.get(f"/pool/coverage?tax_id={DEMO_TAX_ID}&year=2024&all_kinds=1").text
    assert "缺口" in re.search(r"<tr><th>2024-05</th>.*?</tr>", every, re.S).group(0)


# sessions and CSRF -------------------------------------------------------------------------------------------

def test_an_htmx_request_without_a_session_sends_the_whole_page_to_the_login(client):
    response = client.get("/batches?status=failed", headers={"HX-Request": "true", "HX-Target": "batch-table",
                                                             "HX-Current-URL": "http://x/batches?status=failed"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/login?next=/batches?status%3Dfailed"
    assert "<form" not in response.text


def test_an_expired_csrf_token_says_to_reload_the_page(app, client):
    app.config["WTF_CSRF_ENABLED"] = True
    login_response = client.get("/login")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', login_response.text).group(1)
    client.post("/login", data={"username": "caiwu", "password": "caiwu123", "csrf_token": token})
    response = client.post("/batches/terminate", data={"batch_no": "x"},
                           headers={"HX-Request": "true", "X-CSRFToken": "expired"})
    assert response.status_code == 400
    assert "页面已过期" in response.text


def test_a_long_file_error_is_shortened_in_the_row_and_whole_under_details(app, client):
    from webapp.models import Batch

    numbers = _batches(app, 1, running=0)
    long_error = "；".join(f"工作表“信息汇总表”第 {n} 行“金额”为空" for n in range(60, 80))
    with app.app_context():
        with write_transaction():
            batch = db.session.scalar(select(Batch).filter_by(batch_no=numbers[0]))
            batch.status, batch.method = "failed", "file"
            batch.error_code, batch.error_params, batch.error = Reason.REJECTED, {"message": long_error}, long_error
            for subtask in batch.subtasks:
                db.session.delete(subtask)
        db.session.remove()
    login(client)
    row = re.search(rf'<tr id="batch-{numbers[0]}".*?</tr>', client.get("/batches").text, re.S).group(0)
    assert "…（详见批次详情）" in row and "<summary>详情</summary>" in row and "第 79 行" in row


def test_an_internal_error_reads_plainly_and_names_the_exception_only_under_details(app, client, monkeypatch):
    import jobs.tasks
    from webapp.models import Batch

    numbers = _batches(app, 1, running=1)

    def broken(subtask):
        raise KeyError("invoice_no")

    monkeypatch.setattr(jobs.tasks, "_prepare", broken)  # a fault of ours, whatever it may be
    with app.app_context():
        batch = db.session.scalar(select(Batch).filter_by(batch_no=numbers[0]))
        month = next(s for s in batch.subtasks if s.status == "pending")
        jobs.tasks.run_subtask(month.id)
        db.session.refresh(month)
        # what the command line and the batch API print as well: the plain sentence first
        assert month.error.startswith("系统处理出错") and "KeyError" in month.error
        db.session.remove()
    login(client)
    for page in (client.get("/batches").text, client.get(f"/batches/{numbers[0]}").text):
        shown = re.sub(r"<details.*?</details>", "", page, flags=re.S)
        assert "系统处理出错，请稍后点击“重试”" in shown
        assert "KeyError" not in shown and "内部错误" not in shown
        assert re.search(r"<details class=\"tech\"><summary>详情</summary>.*?KeyError", page, re.S)


def test_a_quiet_year_still_shows_the_gaps_of_kinds_the_company_issues(app, client):
    with app.app_context():
        with write_transaction():
            save_staged([_invoice(1, "100.00", "13.00", "113.00")], source="file", batch_id=None,
                        error_goods=frozenset())
        db.session.remove()
    login(client)
    page = client.get(f"/pool/coverage?tax_id={DEMO_TAX_ID}&year=2023").text
    row = re.search(r"<tr><th>2023-05</th>.*?</tr>", page, re.S).group(0)
    assert row.count("缺口</a>") == 1  # 数电票（普通发票）, issued in 2024: a real gap in 2023; nothing else shown
