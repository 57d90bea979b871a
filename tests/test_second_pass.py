"""Page and command tests of the batch screens and dialogs (the browser ones are in
test_browser_second_pass.py): what the screens, dialogs and commands say matches what can happen."""
from __future__ import annotations

import re
from datetime import date
from types import SimpleNamespace

from sqlalchemy import select

from webapp.extensions import db
from webapp.models import Company
from webapp.transactions import write_transaction

from .conftest import DEMO_TAX_ID, cli_json, login
from .test_browser_screens import BUREAU_DOWN, add_batch
from .test_workflow import dialog  # noqa: F401  (the import dialog posted on a fixed day)


def test_batch_show_says_which_months_its_counts_leave_out(app, runner):
    """Item 3: the CLI's JSON of a partly failed batch names the months 总份数/成功份数 do not cover."""
    months = {"2023-01": ("succeeded", None), "2023-02": ("failed", BUREAU_DOWN), "2023-03": ("terminated", None)}
    batch_no = add_batch(SimpleNamespace(app=app), months, status="partial", channel="rpa")
    shown = cli_json(runner, "batch", "show", batch_no)
    assert (shown["total"], shown["success"]) == (100, 100)
    assert shown["months_not_fetched"] == 2
    assert shown["counts_scope"] == "2 个月份未获取"


def _set_demo(app, **values) -> None:
    """Change the demo company's channel settings as an admin would on 企业信息."""
    with app.app_context(), write_transaction():
        company = db.session.scalar(select(Company).filter_by(tax_id=DEMO_TAX_ID))
        for name, value in values.items():
            setattr(company, name, value)
    with app.app_context():
        db.session.remove()


def test_a_refusal_is_said_once_in_red_not_again_as_a_note(app, dialog):
    """Item 5: RPA for a company with no e-tax account says 未配置默认电子税局账号 once (before submitting as a
    note, after it as the refusal); 乐企 months all before the authorisation are said to be refused, in the note
    too, never "提交后这些月份不下载"."""
    _set_demo(app, etax_account=None)
    before = dialog(channel="rpa")
    assert before.count("未配置默认电子税局账号") == 1
    after = dialog(refresh=False, channel="rpa")
    assert after.count("未配置默认电子税局账号") == 1 and 'role="alert"' in after

    _set_demo(app, leqi_since=date(2023, 1, 1))
    before = dialog(period_unit="month", month_from="2022-06", month_to="2022-12")
    assert "所选月份均早于该日期" in before and "提交后这些月份不下载" not in before
    after = dialog(refresh=False, period_unit="month", month_from="2022-06", month_to="2022-12")
    assert after.count("所选月份均早于该日期") == 1 and "提交后这些月份不下载" not in after
    partly = dialog(period_unit="month", month_from="2022-11", month_to="2023-02")
    assert "2022-11 至 2022-12 共 2 个月未申请（提交后这些月份不下载）" in partly


def test_a_gap_opens_the_channel_that_can_fill_it(app, client):
    """Item 6: the demo company authorised 乐企 on 2023-01-01 and has an e-tax account: a 2022 缺口 opens an RPA
    download (乐企 holds nothing of 2022), a 2024 one a 乐企 download."""
    login(client)
    for year, channel in ((2022, "rpa"), (2024, "leqi")):
        page = client.get(f"/pool/coverage?tax_id={DEMO_TAX_ID}&year={year}").text
        links = re.findall(r'hx-get="(/batches/import\?[^"]+)"[^>]*>缺口', page)
        assert links and all(f"channel={channel}" in link and "method=download" in link for link in links)


def test_small_things_a_finance_user_notices(app, client):
    """Item 11: 参数配置 counts carry separators; an empty year's chart has one 0 line and says there are no
    invoices (no "1 / 0 / 0" axis); 自动化设置 names the task code (docs/rules.md, 自动更新)."""
    from webapp.models import Batch

    batch_no = add_batch(SimpleNamespace(app=app), {"2024-01": ("succeeded", None)}, status="succeeded")
    with app.app_context(), write_transaction():
        db.session.scalar(select(Batch).filter_by(batch_no=batch_no)).success = 36815
    with app.app_context():
        db.session.remove()
    login(client, "admin", "admin123")
    assert '<td class="num">36,815</td>' in client.get("/admin/settings").text

    page = client.get(f"/summary?tax_id={DEMO_TAX_ID}&year=2022").text
    chart = re.search(r'<svg id="summary-chart".*?</svg>', page, re.S).group(0)
    assert re.findall(r'text-anchor="end"[^>]*>([^<]*)</text>', chart) == ["0"]
    assert "2022年没有发票" in chart

    assert "sim_his_inv_data_import_task_SKDP_S" in client.get("/automation").text


def test_a_batch_behind_other_work_says_how_many_tasks_go_first(app, client):
    """Item 11: a batch whose months wait behind another batch's 3 queued months says 排队中：前面还有 3 个任务; the
    first batch, next in line, says nothing of a queue."""
    shared = SimpleNamespace(app=app)
    first = add_batch(shared, {m: ("pending", None) for m in ("2024-01", "2024-02", "2024-03")}, status="pending")
    second = add_batch(shared, {"2024-04": ("pending", None)}, status="pending")
    login(client)
    page = client.get("/batches").text
    rows = {no: re.search(rf'<tr id="batch-{no}".*?</tr>', page, re.S).group(0) for no in (first, second)}
    assert "排队中：前面还有 3 个任务" in rows[second]
    assert "排队中" not in rows[first]
    detail = client.get(f"/batches/{second}").text
    assert "排队中：前面还有 3 个任务" in detail

