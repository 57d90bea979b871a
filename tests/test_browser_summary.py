"""Real-browser tests of 销项汇总 and 来源核对: reached from the main navigation, figures a finance user
reads checked against sums of the built invoices, the chart, the exports, the coverage mark, and
tax-ID permissions. Workbooks are built here (tests/workbook_builder.py); 乐企 is the sandbox."""
from __future__ import annotations

import re
from decimal import Decimal

import openpyxl
from playwright.sync_api import Page, expect

from .browser_support import DEMO_NAME, OTHER_NAME, OTHER_TAX_ID, login, wait_until_finished
from .conftest import DEMO_TAX_ID
from .test_summary import expected_summary, multi_rate_invoices, pool_as_workbook_invoices
from .workbook_builder import build_workbook, digital_invoice, make_line, random_invoices

MONTH = "2024-03"


def _show(page: Page, company: str, **fields) -> None:
    """Pick the company (and year or month) in the filter form and press 查看."""
    page.get_by_label("企业").select_option(label=company)
    if "year" in fields:
        page.get_by_label("年度").select_option(label=f"{fields['year']}年")
    if "month" in fields:
        page.get_by_label("开票月份").fill(fields["month"])
    page.get_by_role("button", name="查看").click()


def _cells(page: Page, month: str, rate: str) -> list[str]:
    """The six figures of a month-rate row, as displayed."""
    row = page.locator(f"table.summary tr[data-month='{month}'][data-rate='{rate}']")
    return [text.strip() for text in row.locator("td.num").all_inner_texts()]


def _shown(value: str) -> str:
    return f"{Decimal(value):,.2f}"


def test_summary_page_from_the_navigation_matches_the_imported_file(page, live_server, tmp_path):
    invoices = multi_rate_invoices() + random_invoices(150, seed=21, year=2024)
    build_workbook(tmp_path / "export.xlsx", invoices)
    expected = expected_summary(invoices, 2024)
    login(page)
    wait_until_finished(page, live_server.import_file(tmp_path / "export.xlsx"))

    page.get_by_role("navigation").get_by_role("link", name="销项汇总").click()
    expect(page.get_by_role("heading", name="销项汇总", exact=True)).to_be_visible()
    _show(page, f"{DEMO_NAME}（{DEMO_TAX_ID}）", year=2024)
    expect(page).to_have_url(re.compile("year=2024"))
    for month, rates in expected.items():
        for rate, cells in rates.items():
            assert _cells(page, month, rate)[:4] == [_shown(cells[c][f]) for c in ("special", "other")
                                                     for f in ("amount", "tax")], (month, rate)
    february = page.locator("table.summary tr[data-month='2024-02']")
    expect(february.filter(has_text="免税")).to_have_count(1)
    expect(february.filter(has_text="不征税")).to_have_count(1)
    expect(page.locator("table.summary tr[data-rate='年度合计']")).to_have_count(1)

    chart = page.get_by_role("img", name="2024年每月价税合计柱状图")
    expect(chart.locator("rect.bar.blue")).to_have_count(12)
    expect(chart.locator("rect.bar.red")).to_have_count(12)
    red_feb = chart.locator("rect.bar.red[data-month='2024-02']")
    assert Decimal(red_feb.get_attribute("data-value")) >= Decimal("113.00")  # the hand-made red 专票 line
    kinds = page.locator("table.types tbody tr")
    expect(kinds.filter(has_text="数电发票（增值税专用发票）")).to_have_count(1)

    with page.expect_download() as info:
        page.get_by_role("link", name="导出 Excel").click()
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    assert info.value.suggested_filename == f"销项汇总_{DEMO_TAX_ID}_2024.xlsx"
    sheet = openpyxl.load_workbook(path)["销项汇总"]
    rows = {(r[0], r[1]): r for r in sheet.iter_rows(min_row=2, values_only=True)}
    cells = expected["2024-02"]["13%"]["special"]
    assert f"{Decimal(str(rows[('2024-02', '13%')][2])):.2f}" == cells["amount"]


def test_source_report_after_a_leqi_download_and_a_later_file(page, live_server, tmp_path):
    """乐企 first, then an export where one invoice is 已红冲-全额 and one is missing: both show on the
    page with each source's value, the coverage grid marks the month and links to the report."""
    login(page)
    wait_until_finished(page, live_server.download([MONTH], ["82"], channel="leqi"))
    built = pool_as_workbook_invoices(live_server.app, MONTH)
    blues = [i for i in built if not i["is_red"] and i["status"] == "正常"]
    flushed, missing = blues[0], blues[1]
    flushed["status"] = "已红冲-全额"
    built.remove(missing)
    build_workbook(tmp_path / "later.xlsx", built)
    wait_until_finished(page, live_server.import_file(tmp_path / "later.xlsx"))

    page.get_by_role("navigation").get_by_role("link", name="销项发票池").click()
    page.get_by_role("link", name="同步覆盖").click()
    page.get_by_label("年度").select_option(label="2024年")
    page.get_by_role("button", name="查看").click()
    mark = page.locator("table.coverage").get_by_role("link", name="来源差异")
    expect(mark).to_have_count(1)
    mark.click()

    expect(page.get_by_role("heading", name="来源核对", exact=True)).to_be_visible()
    expect(page.get_by_label("开票月份")).to_have_value(MONTH)
    expect(page.locator("[data-count=different]")).to_have_text("1 份")
    expect(page.locator("[data-count=only_one]")).to_have_text("1 份")
    expect(page.locator("[data-count=source-leqi]")).to_contain_text(f"{len(built) + 1:,} 份")
    expect(page.locator("[data-count=source-file]")).to_contain_text(f"{len(built):,} 份")
    differing = page.locator(f"#different tr[data-key='{flushed['digital_number']}']")
    expect(differing).to_have_count(2)
    expect(differing.filter(has_text="导入电子税局文件")).to_contain_text("已红冲-全额")
    expect(differing.filter(has_text="乐企")).to_contain_text("正常")
    expect(differing.first).to_contain_text("发票状态")
    lone = page.locator(f"#only-one tr[data-key='{missing['digital_number']}']")
    expect(lone).to_have_count(1)
    expect(lone).to_contain_text("导入电子税局文件未提供")

    with page.expect_download() as info:
        page.get_by_role("link", name="导出 Excel").click()
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    workbook = openpyxl.load_workbook(path)
    assert [r[0] for r in workbook["来源间差异"].iter_rows(min_row=2, values_only=True)] == [flushed["digital_number"]]
    only_one = workbook["仅一个来源有"].iter_rows(min_row=2, values_only=True)
    assert [r[0] for r in only_one] == [missing["digital_number"]]

    page.get_by_label("开票月份").fill("2024-04")
    page.get_by_role("button", name="查看").click()
    expect(page.locator("[data-count=different]")).to_have_text("0 份")
    expect(page.get_by_text("本月发票池中没有该企业的发票")).to_be_visible()


def test_both_pages_show_only_granted_companies(new_page, live_server, tmp_path):
    live_server.add_user_of_other_company()
    theirs = [digital_invoice("24110000000000000031", [make_line("*信息技术服务*运维服务", "77.77", "6%")],
                              "2024-05-02 10:00:00")]
    build_workbook(tmp_path / "ours.xlsx", theirs)
    page = login(new_page())
    wait_until_finished(page, live_server.import_file(tmp_path / "ours.xlsx"))

    other = login(new_page(), "lisi", "lisi1234")
    other.get_by_role("navigation").get_by_role("link", name="销项汇总").click()
    options = other.get_by_label("企业").locator("option")
    expect(options).to_have_text(["全部已授权企业", f"{OTHER_NAME}（{OTHER_TAX_ID}）"])
    _show(other, "全部已授权企业", year=2024)
    expect(other.locator("table.summary")).not_to_contain_text("77.77")
    other.goto(f"/summary?tax_id={DEMO_TAX_ID}&year=2024")
    expect(other.get_by_text("页面或数据不存在，或您没有查看它的权限")).to_be_visible()

    other.goto("/batches")
    other.get_by_role("navigation").get_by_role("link", name="来源核对").click()
    expect(other.get_by_label("企业").locator("option")).to_have_text([f"{OTHER_NAME}（{OTHER_TAX_ID}）"])
    other.goto(f"/reconcile?tax_id={DEMO_TAX_ID}&month=2024-05")
    expect(other.get_by_text("页面或数据不存在，或您没有查看它的权限")).to_be_visible()

    page.get_by_role("navigation").get_by_role("link", name="销项汇总").click()
    _show(page, f"{DEMO_NAME}（{DEMO_TAX_ID}）", year=2024)
    expect(page.locator("table.summary tr[data-month='2024-05'][data-rate='6%']")).to_contain_text("77.77")
