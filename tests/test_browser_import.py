"""Real-browser tests of the file import (docs/etax-export.md): several files at once, the dialog saying
what happened to each, the chosen files kept across a validation error, and the 错误清单."""
from __future__ import annotations

import re

from openpyxl import load_workbook
from playwright.sync_api import expect

from tests.workbook_builder import build_workbook, digital_invoice, make_line

from .browser_support import FINISH_TIMEOUT, SAMPLE_2024, batch_row, column, login, open_import_dialog
from .conftest import SAMPLES

SAMPLE_2023 = SAMPLES / "etax-export-2023-old-header.xlsx"
COMPANY = "杭州示例科技有限公司"


def _chosen_files(dialog) -> list[str]:
    """The names the file input holds right now."""
    return dialog.locator("input[type=file]").evaluate("input => Array.from(input.files, f => f.name)")


def test_several_files_each_become_a_batch_and_the_dialog_says_what_happened(page, tmp_path):
    broken, unreadable = tmp_path / "坏文件.xlsx", tmp_path / "有错误.xlsx"
    broken.write_text("发票号码,金额\n1,2\n", encoding="utf-8")
    build_workbook(unreadable, [digital_invoice("24900123400000000711", [make_line("*供电*电力", "1.00")],
                                                basic_cells={"开票日期": "上周三"})])
    login(page)
    dialog = open_import_dialog(page)
    dialog.get_by_label(COMPANY).check()
    dialog.locator("input[type=file]").set_input_files([SAMPLE_2023, broken, unreadable, SAMPLE_2024])
    dialog.get_by_role("button", name="确定").click()

    result = page.get_by_role("dialog")
    expect(result.get_by_role("heading", name="导入结果")).to_be_visible()
    items = result.locator("ul.file-outcomes li")
    expect(items).to_have_count(4)
    expect(items.nth(0)).to_contain_text(re.compile(r"etax-export-2023-old-header\.xlsx：\s*已接收"))
    expect(items.nth(1)).to_contain_text(re.compile(r"坏文件\.xlsx：\s*未导入：文件不是有效的 xlsx 工作簿"))
    expect(items.nth(2)).to_contain_text(re.compile(r"有错误\.xlsx：\s*未导入：工作表“发票基础信息”第 2 "
                                                    r"行“开票日期”不是日期"))
    expect(items.nth(2).get_by_role("link", name="下载错误清单（xlsx）")).to_be_visible()
    expect(items.nth(3)).to_contain_text(re.compile(r"etax-export-2024\.xlsx：\s*已接收"))
    first_no = items.nth(0).get_by_role("link").inner_text()
    second_no = items.nth(3).get_by_role("link").inner_text()

    result.get_by_role("link", name="查看导入批次").click()
    expect(page.locator("tr[id^=batch-]")).to_have_count(2)
    for batch_no, total in ((first_no, "124"), (second_no, "312")):
        row = batch_row(page, batch_no)
        expect(column(page, row, "执行状态")).to_contain_text("全部执行成功", timeout=FINISH_TIMEOUT)
        expect(column(page, row, "总份数")).to_have_text(total)


def test_a_validation_error_keeps_the_chosen_files(page):
    login(page)
    dialog = open_import_dialog(page)
    dialog.locator("input[type=file]").set_input_files([SAMPLE_2023, SAMPLE_2024])
    dialog.get_by_role("button", name="确定").click()  # no company chosen
    expect(dialog.get_by_role("alert").filter(has_text="请选择企业")).to_be_visible()
    assert _chosen_files(dialog) == ["etax-export-2023-old-header.xlsx", "etax-export-2024.xlsx"]

    dialog.get_by_label(COMPANY).check()
    dialog.get_by_role("button", name="确定").click()
    expect(page.get_by_role("dialog").get_by_role("heading", name="导入结果")).to_be_visible()
    expect(page.get_by_role("dialog").locator("ul.file-outcomes li").filter(has_text="已接收")).to_have_count(2)


def test_a_refused_file_keeps_the_dialog_and_its_file(page, tmp_path):
    empty = tmp_path / "空文件.xlsx"
    empty.write_bytes(b"")
    login(page)
    dialog = open_import_dialog(page)
    dialog.get_by_label(COMPANY).check()
    dialog.locator("input[type=file]").set_input_files(empty)
    dialog.get_by_role("button", name="确定").click()
    expect(dialog.get_by_role("alert")).to_contain_text("空文件.xlsx：文件为空")
    assert _chosen_files(dialog) == ["空文件.xlsx"]


def test_a_file_with_bad_rows_is_refused_in_the_dialog_with_its_error_list(page, tmp_path):
    """(docs/etax-export.md, What refuses a file) The dialog answers 未导入 with the count of unreadable
    places and a link to the 错误清单, which lists them; no batch appears."""
    bad = tmp_path / "有错误.xlsx"
    build_workbook(bad, [
        digital_invoice("24900123400000000701", [make_line("*供电*电力", "1.00")], basic_cells={"开票日期": "上周三"}),
        digital_invoice("24900123400000000702", [make_line("*供电*电力", "2.00")], line_cells={"金额": "两元"}),
    ])
    login(page)
    dialog = open_import_dialog(page)
    dialog.get_by_label(COMPANY).check()
    dialog.locator("input[type=file]").set_input_files(bad)
    dialog.get_by_role("button", name="确定").click()

    answer = dialog.get_by_role("alert")
    expect(answer).to_contain_text("所选文件均未导入")
    expect(answer).to_contain_text("有错误.xlsx：文件中有 2 处无法读取，未导入任何数据")
    with page.expect_download() as download:
        answer.get_by_role("link", name="下载错误清单（xlsx）").click()
    path = tmp_path / "errors.xlsx"
    download.value.save_as(path)
    assert download.value.suggested_filename == "错误清单_有错误.xlsx"
    cells = list(load_workbook(path).active.iter_rows(values_only=True))
    assert cells == [("工作表", "行号", "列", "单元格内容", "问题"),
                     ("发票基础信息", 2, "开票日期", "上周三", "不是日期"),
                     ("信息汇总表", 3, "金额", "两元", "不是数字")]
    assert _chosen_files(dialog) == ["有错误.xlsx"]  # the dialog stays, to choose the fixed file

    page.goto(page.url)
    expect(page.get_by_text("暂无导入批次")).to_be_visible()
    expect(page.locator("tr[id^=batch-]")).to_have_count(0)
