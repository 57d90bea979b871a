"""The e-tax export parser: what a user would check after importing 全量发票查询 workbooks."""
from __future__ import annotations

import json
import re
import zipfile
import zlib
from collections import Counter
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from python_calamine import CalamineWorkbook

from channels.etax import container, parser
from channels.etax.container import MAX_UPLOAD_BYTES
from channels.etax.halves import SheetHalves
from channels.etax.parser import (
    MAX_LISTED_ERRORS,
    ParsedWorkbook,
    RowsRejected,
    blue_key_from_remark,
    check_upload,
    parse_workbook,
)
from channels.invoice_types import type_code
from channels.records import SourceRejected
from tests.records_support import parsed_invoices
from tests.workbook_builder import (
    BASIC_SHEET,
    DETAIL_SHEET,
    TAX_ID,
    blank_voided_invoice,
    build_sample_exports,
    build_workbook,
    digital_invoice,
    discount_line,
    invoice_key,
    is_listed_name,
    legacy_invoice,
    listed_line,
    make_line,
    red_remark_corpus,
    shape_corpus,
)

SAMPLE_NAMES = ["etax-export-2024", "etax-export-2023-old-header"]
DN1, DN2, DN3 = "24447123400000000197", "24888123400000000161", "24511123400000000026"
FIGURES = ("invoices", "lines", "blue", "red", "voided", "amount", "tax", "red_links", "by_type", "months",
           "listed_invoices", "discount_lines")


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Path:
    """The sample exports, built by the project's own builder (tests/workbook_builder.py) for this module."""
    return build_sample_exports(tmp_path_factory.mktemp("samples"))


def figures(parsed: ParsedWorkbook) -> dict:
    """The figures of the samples' .expected.json, computed from what the parser returned."""
    invoices = list(parsed_invoices(parsed))
    return {
        "invoices": len(invoices),
        "lines": sum(1 for inv in invoices for line in inv.lines if not is_listed_name(line.name)),
        "blue": sum(not inv.is_red for inv in invoices),
        "red": sum(inv.is_red for inv in invoices),
        "voided": sum(inv.status == "已作废" for inv in invoices),
        "amount": str(sum((inv.amount for inv in invoices), Decimal("0.00"))),
        "tax": str(sum((inv.tax for inv in invoices), Decimal("0.00"))),
        "listed_invoices": sum(any(is_listed_name(line.name) for line in inv.lines) for inv in invoices),
        "discount_lines": sum(line.is_discount for inv in invoices for line in inv.lines),
        "red_links": {inv.key: inv.red_of for inv in invoices if inv.is_red and inv.red_of},
        "by_type": dict(Counter(inv.type_name for inv in invoices)),
        "months": sorted(parsed.staged_by_month),
    }


def only_invoice(parsed: ParsedWorkbook):
    """The single invoice of a one-invoice workbook."""
    invoices = list(parsed_invoices(parsed))
    assert len(invoices) == 1
    return invoices[0]


def by_key(parsed: ParsedWorkbook) -> dict:
    """Invoices by their pool key."""
    return {inv.key: inv for inv in parsed_invoices(parsed)}


def one_line_invoice(number: str = DN1, **fields) -> dict:
    """A plain 数电 invoice with one 13% line of 100.00."""
    return digital_invoice(number, [make_line("*计算机网络设备*交换机", "100.00")], **fields)


def rejected(path: Path, *, upload: bool = False) -> str:
    """The Chinese message a user sees for a refused file."""
    with pytest.raises(SourceRejected) as info:
        if upload:
            check_upload(path)
        else:
            parse_workbook(path, TAX_ID)
    return str(info.value)


# --- the samples ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_sample_imports_to_its_expected_figures(samples, name):
    expected = json.loads((samples / f"{name}.expected.json").read_text(encoding="utf-8"))
    check_upload(samples / f"{name}.xlsx")
    parsed = parse_workbook(samples / f"{name}.xlsx", TAX_ID)
    got = figures(parsed)
    for figure in FIGURES:
        assert got[figure] == expected[figure], figure
    assert parsed.invoice_count == expected["invoices"] == (312 if "2024" in name else 124)
    assert parsed.line_count == expected["lines"] + expected["listed_invoices"]  # parser keeps all
    assert parsed.kinds == sorted(expected["by_type"], key=type_code)


def test_sample_values_are_read_as_written(samples):
    invoices = by_key(parse_workbook(samples / "etax-export-2024.xlsx", TAX_ID))
    discounted = invoices["24791123400000000013"]
    assert discounted.issued_at == datetime(2024, 7, 8, 9, 0, 0)
    assert (discounted.amount, discounted.tax, discounted.total) == (
        Decimal("130801.99"), Decimal("11772.18"), Decimal("142574.17"))
    assert discounted.code is None and discounted.number is None
    assert discounted.type_name == "数电发票（普通发票）" and discounted.type_code == "82"
    assert discounted.origin == "电子发票服务平台"
    line = discounted.lines[0]
    assert (line.line_no, line.name, line.quantity, line.unit_price, line.tax_rate) == (
        1, "*蔬菜*鲜蔬菜", Decimal("10000"), Decimal("14.533554"), "9%")
    assert discounted.lines[1].is_discount and discounted.lines[1].amount == Decimal("-14533.55")
    legacy = invoices["044024900111-00100005"]
    assert (legacy.code, legacy.number, legacy.digital_number) == ("044024900111", "00100005", None)
    assert legacy.type_code == "04"
    assert invoices["24706900000000003120"].red_of == "24144123400000000006"


# --- every shape the tax bureau writes ----------------------------------------------------------


def test_blank_voided_paper_invoice_is_a_voided_invoice_without_a_line(tmp_path):
    """The 2021 export once refused with 第 65 行“金额”为空 imports (docs/etax-export.md, Values); the invoice
    has no line."""
    path = tmp_path / "blank.xlsx"
    expected = build_workbook(path, [one_line_invoice(DN1), blank_voided_invoice("032002100104", "01234567")])
    check_upload(path)
    parsed = parse_workbook(path, TAX_ID)
    blank = by_key(parsed)["032002100104-01234567"]
    assert (blank.status, blank.amount, blank.tax, blank.total, blank.lines) == (
        "已作废", Decimal("0.00"), Decimal("0.00"), Decimal("0.00"), [])
    assert blank.seller_name is None and blank.buyer_tax_id == "000000000000000" and blank.buyer_name is None
    assert (expected["invoices"], expected["voided"], expected["lines"]) == (2, 1, 1)
    assert figures(parsed)["voided"] == 1 and parsed.line_count == 1 and parsed.invoice_count == 2


def test_blank_voided_invoice_without_any_detail_row_is_accepted(tmp_path):
    path = tmp_path / "blank-no-row.xlsx"
    blank = blank_voided_invoice("032002100104", "01234567")
    blank["lines"] = []
    build_workbook(path, [one_line_invoice(DN1), blank])
    assert by_key(parse_workbook(path, TAX_ID))["032002100104-01234567"].lines == []


STYLES = [
    dict(),
    dict(header_variant="全电发票号码", totals_row=False, extra_sheets=("建筑服务", "旅客运输服务")),
    dict(money_as_text=True, quantities_as_numbers=True, date_style="serial", trailing_blank_rows=30, seq_step=3),
    dict(header_variant="数电票号码", date_style="datetime", trailing_blank_rows=5, extra_sheets=("铁路电子客票",)),
]


@pytest.mark.parametrize("style", STYLES, ids=["export", "old-header-no-totals", "text-serial-gaps", "datetime"])
def test_every_shape_imports_to_the_cent(tmp_path, style):
    """The shape corpus plus random invoices, in each cell style real files show: the figures are
    the builder's own sums (computed from its Decimals, not by the parser), to the cent."""
    path = tmp_path / "shapes.xlsx"
    expected = build_workbook(path, shape_corpus(2024) + red_remark_corpus(2024), n_random=150, seed=5, **style)
    check_upload(path)
    parsed = parse_workbook(path, TAX_ID)
    got = figures(parsed)
    for figure in FIGURES:
        assert got[figure] == expected[figure], figure
    assert parsed.line_count == expected["line_rows"]
    rates = {line.tax_rate for invoice in parsed_invoices(parsed) for line in invoice.lines}
    assert {"免税", "不征税", "0%", "1%", "1.5%", "3%", "5%", "9%"} <= rates
    statuses = {invoice.status for invoice in parsed_invoices(parsed)}
    assert {"已作废", "已红冲-全额", "已红冲-部分", "正常"} <= statuses
    paper = by_key(parsed)["24900123400000000004"]
    assert (paper.code, paper.number, paper.type_code) == ("144024900222", "00200001", "86")


# --- generated workbooks -------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
def test_random_workbook_imports_to_builder_figures(tmp_path, seed):
    path = tmp_path / "random.xlsx"
    expected = build_workbook(path, n_random=400, seed=seed)
    check_upload(path)
    parsed = parse_workbook(path, TAX_ID)
    got = figures(parsed)
    for figure in ("invoices", "lines", "blue", "red", "voided", "amount", "tax", "red_links",
                   "by_type", "months", "listed_invoices", "discount_lines"):
        assert got[figure] == expected[figure], figure
    assert parsed.line_count == expected["line_rows"]
    assert len(parsed.kinds) == 14  # every kind the builder knows


def test_months_group_invoices_in_date_order(tmp_path):
    path = tmp_path / "months.xlsx"
    build_workbook(path, [one_line_invoice(DN1, issued_at="2024-03-31 23:59:59"),
                          one_line_invoice(DN2, issued_at="2024-01-01 00:00:00"),
                          one_line_invoice(DN3, issued_at="2024-03-01 00:00:00")])
    parsed = parse_workbook(path, TAX_ID)
    assert list(parsed.staged_by_month) == ["2024-01", "2024-03"]
    assert [header[0] for header, _lines in parsed.staged_by_month["2024-03"]] == [DN1, DN3]


@pytest.mark.parametrize("variant", ["数电发票号码", "全电发票号码", "数电票号码"])
def test_every_spelling_of_the_digital_number_column(tmp_path, variant):
    path = tmp_path / "header.xlsx"
    build_workbook(path, [one_line_invoice(DN1)], header_variant=variant)
    invoice = only_invoice(parse_workbook(path, TAX_ID))
    assert invoice.key == invoice.digital_number == DN1
    assert len(invoice.lines) == 1


def test_columns_are_found_by_name_not_position(tmp_path):
    path = tmp_path / "moved.xlsx"
    build_workbook(path, [one_line_invoice(DN1)], drop_columns=("序号", "销方名称", "开票人", "规格型号"))
    invoice = only_invoice(parse_workbook(path, TAX_ID))
    assert invoice.seller_name is None and invoice.issuer is None
    assert invoice.amount == Decimal("100.00") and invoice.lines[0].tax == Decimal("13.00")


def test_extra_special_business_sheets_are_ignored(tmp_path):
    path = tmp_path / "extra.xlsx"
    build_workbook(path, [one_line_invoice(DN1)], extra_sheets=("建筑服务", "铁路电子客票"))
    check_upload(path)
    assert parse_workbook(path, TAX_ID).invoice_count == 1


# --- totals row ----------------------------------------------------------------------------


def test_totals_row_is_not_an_invoice(tmp_path):
    path = tmp_path / "totals.xlsx"
    build_workbook(path, [one_line_invoice(DN1), one_line_invoice(DN2)])
    rows = list(CalamineWorkbook.from_path(str(path)).get_sheet_by_name(BASIC_SHEET).iter_rows())
    assert rows[-1][0] == "合计行" and rows[-1][9] == 200.0  # the file really has one
    parsed = parse_workbook(path, TAX_ID)
    assert parsed.invoice_count == 2
    assert sum(inv.amount for inv in parsed_invoices(parsed)) == Decimal("200.00")


def test_totals_row_without_its_label_is_skipped_by_empty_keys(tmp_path):
    path = tmp_path / "totals.xlsx"
    build_workbook(path, [one_line_invoice(DN1)], totals_row_cells={"序号": "", "发票代码": "--"})
    assert parse_workbook(path, TAX_ID).invoice_count == 1


def test_workbook_without_totals_row(tmp_path):
    path = tmp_path / "no-totals.xlsx"
    build_workbook(path, [one_line_invoice(DN1)], totals_row=False)
    assert parse_workbook(path, TAX_ID).invoice_count == 1


# --- identifiers and numbers ---------------------------------------------------------------


def test_ids_keep_leading_zeros(tmp_path):
    path = tmp_path / "zeros.xlsx"
    lines = [make_line("*塑料制品*塑料包装袋", "10.00", "3%", tax_code="0070101010000000000")]
    build_workbook(path, [legacy_invoice("011001900111", "00001234", lines, buyer_tax_id="0123456789")])
    invoice = only_invoice(parse_workbook(path, TAX_ID))
    assert invoice.key == "011001900111-00001234"
    assert (invoice.code, invoice.number, invoice.buyer_tax_id) == ("011001900111", "00001234", "0123456789")
    assert invoice.lines[0].tax_code == "0070101010000000000"


def test_number_typed_ids_become_text_without_point_zero(tmp_path):
    path = tmp_path / "numeric-ids.xlsx"
    lines = [make_line("*塑料制品*塑料包装袋", "10.00", "3%", tax_code="1070101010000000000",
                       cells={"税收分类编码": 1070101010000000000.0})]
    numeric = {"发票代码": 144031900111.0, "发票号码": 12254276.0, "购方识别号": 330100123456789.0}
    build_workbook(path, [legacy_invoice("144031900111", "12254276", lines,
                                         basic_cells=numeric, line_cells=numeric)])
    invoice = only_invoice(parse_workbook(path, TAX_ID))
    assert invoice.key == "144031900111-12254276"
    assert invoice.buyer_tax_id == "330100123456789"
    assert invoice.lines[0].tax_code == "1070101010000000000"


def test_digital_number_that_excel_turned_into_a_float_is_refused(tmp_path):
    path = tmp_path / "lost-digits.xlsx"
    build_workbook(path, [one_line_invoice(DN1, basic_cells={"数电发票号码": float(DN1)})])
    message = rejected(path)
    assert "第 2 行" in message and "数电发票号码" in message and "数字" in message


def test_amounts_are_exact_decimals(tmp_path):
    path = tmp_path / "exact.xlsx"
    tenths = [make_line("*生活服务*餐饮服务", "0.10", "6%", tax="0.01") for _ in range(10)]
    precise = make_line("*供电*电力", "1234567.89", "13%", quantity="300884.955752212389381",
                        unit_price="1.00000000", tax="160493.83")
    build_workbook(path, [digital_invoice(DN1, tenths), digital_invoice(DN2, [precise])])
    invoices = by_key(parse_workbook(path, TAX_ID))
    assert sum(line.amount for line in invoices[DN1].lines) == Decimal("1.00")
    assert sum(0.1 for _ in range(10)) != 1.0  # what float would have given
    assert all(type(line.amount) is Decimal and line.amount == Decimal("0.10")
               for line in invoices[DN1].lines)
    line = invoices[DN2].lines[0]
    assert line.amount == Decimal("1234567.89") and str(line.amount) == "1234567.89"
    assert line.quantity == Decimal("300884.955752212389381")
    assert str(line.unit_price) == "1.00000000"
    assert invoices[DN2].total == Decimal("1395061.72")


def test_number_cells_for_quantity_and_price_are_read_as_excel_shows_them(tmp_path):
    path = tmp_path / "float-quantity.xlsx"
    noisy = make_line("*供电*电力", "26395.01", "13%", tax="3431.35",
                      cells={"数量": 2199.5841666666665, "单价": 12.0})
    tiny = make_line("*供电*电力", "1.00", "13%", tax="0.13", cells={"数量": 0.1 + 0.2, "单价": 1.5e-05})
    build_workbook(path, [digital_invoice(DN1, [noisy, tiny])])
    lines = only_invoice(parse_workbook(path, TAX_ID)).lines
    assert str(lines[0].quantity) == "2199.58416666667"  # Excel's 15 digits, not the float's 17
    assert str(lines[0].unit_price) == "12"
    assert lines[1].quantity == Decimal("0.3") and lines[1].unit_price == Decimal("0.000015")


def test_money_is_rounded_to_the_cent_from_the_number_as_written(tmp_path):
    path = tmp_path / "noise.xlsx"
    noisy = make_line("*供电*电力", "0.30", "13%", tax="0.04", cells={"金额": 0.1 + 0.2})
    # 1.005 is 1.00499999… in binary: rounding the float gives 1.00, the cell reads 1.005 -> 1.01
    half_cent = make_line("*供电*电力", "1.01", "13%", tax="0.13", cells={"金额": 1.005})
    build_workbook(path, [digital_invoice(DN1, [noisy, half_cent], basic_cells={"金额": 0.1 + 0.2})])
    invoice = only_invoice(parse_workbook(path, TAX_ID))
    assert invoice.amount == invoice.lines[0].amount == Decimal("0.30")
    assert str(invoice.amount) == "0.30"
    assert invoice.lines[1].amount == Decimal("1.01")


def test_rates_are_kept_as_written_and_numbers_become_percent(tmp_path):
    path = tmp_path / "rates.xlsx"
    lines = [make_line("*农产品*蔬菜", "10.00", "免税"), make_line("*保险服务*代收车船税", "5.00", "不征税"),
             make_line("*供电*电力", "100.00", "13%", cells={"税率": 0.13}),
             make_line("*生活服务*餐饮服务", "100.00", "1%", cells={"税率": 0.01})]
    build_workbook(path, [digital_invoice(DN1, lines)])
    invoice = only_invoice(parse_workbook(path, TAX_ID))
    assert [line.tax_rate for line in invoice.lines] == ["免税", "不征税", "13%", "1%"]


def test_empty_and_dash_cells_are_none(tmp_path):
    path = tmp_path / "nulls.xlsx"
    line = make_line("*生活服务*餐饮服务", "10.00", "6%", unit="--", spec="", tax_code="")
    build_workbook(path, [digital_invoice(DN1, [line], buyer_tax_id="", issuer="--", remark="")])
    invoice = only_invoice(parse_workbook(path, TAX_ID))
    assert (invoice.buyer_tax_id, invoice.issuer, invoice.remark, invoice.code) == (None, None, None, None)
    parsed_line = invoice.lines[0]
    assert (parsed_line.unit, parsed_line.spec, parsed_line.tax_code, parsed_line.quantity) == (None,) * 4


@pytest.mark.parametrize("cell, expected", [
    ("2024-05-06 07:08:09", datetime(2024, 5, 6, 7, 8, 9)),
    ("2024-05-06", datetime(2024, 5, 6)),
    ("2024/5/6 07:08:09", datetime(2024, 5, 6, 7, 8, 9)),
    (datetime(2024, 5, 6, 7, 8, 9), datetime(2024, 5, 6, 7, 8, 9)),
    (date(2024, 5, 6), datetime(2024, 5, 6)),
])
def test_issue_date_forms(tmp_path, cell, expected):
    path = tmp_path / "dates.xlsx"
    build_workbook(path, [one_line_invoice(DN1, basic_cells={"开票日期": cell})])
    invoice = only_invoice(parse_workbook(path, TAX_ID))
    assert invoice.issued_at == expected and invoice.month == "2024-05"


# --- kinds ---------------------------------------------------------------------------------


@pytest.mark.parametrize("written, canonical, code", [
    ("数电发票(普通发票)", "数电发票（普通发票）", "82"),
    ("数电票（增值税专用发票）", "数电发票（增值税专用发票）", "81"),
    ("数电票(普通发票)", "数电发票（普通发票）", "82"),
    ("增值税普通发票(卷式)", "增值税普通发票（卷式）", "11"),
    ("数电纸质发票（普通发票）", "数电纸质发票（普通发票）", "86"),
])
def test_kind_spellings_are_normalised(tmp_path, written, canonical, code):
    path = tmp_path / "kind.xlsx"
    build_workbook(path, [one_line_invoice(DN1, kind=written)])
    parsed = parse_workbook(path, TAX_ID)
    invoice = only_invoice(parsed)
    assert (invoice.type_name, invoice.type_code) == (canonical, code)
    assert parsed.kinds == [canonical]


def test_kinds_are_sorted_by_type_code(tmp_path):
    path = tmp_path / "kinds.xlsx"
    build_workbook(path, [one_line_invoice(DN1, kind="数电发票（普通发票）"),
                          one_line_invoice(DN2, kind="某种新票种"),
                          one_line_invoice(DN3, kind="增值税电子普通发票")])
    parsed = parse_workbook(path, TAX_ID)
    assert parsed.kinds == ["增值税电子普通发票", "数电发票（普通发票）", "某种新票种"]
    assert by_key(parsed)[DN2].type_code is None


# --- red invoices --------------------------------------------------------------------------


@pytest.mark.parametrize("remark, blue", [
    ("对应正数发票代码:032371908644号码:10948791", "032371908644-10948791"),
    ("对应正数发票代码：032371908644 号码：10948791 退货", "032371908644-10948791"),
    ("被红冲蓝字数电发票号码：24144123400000000006 红字发票信息确认单编号：96227780995354065050",
     "24144123400000000006"),
    ("被红冲蓝字数电票号码: 24144123400000000006 红字发票信息确认单编号:96227780995354065050 收款人:王五",
     "24144123400000000006"),
    ("被红冲蓝字发票号码：12254276 被红冲蓝字发票代码：051641524025 红字发票信息确认单编号：85981504792527398401",
     "051641524025-12254276"),
    ("销售退回\n被红冲蓝字发票号码:00012345 被红冲蓝字发票代码:051641524025", "051641524025-00012345"),
    ("对应正数发票代码:037002500111 号码:10621901鲁A00001 入口:示例东站", "037002500111-10621901"),
    ("被红冲蓝字数电发票号码：24144123400000000006红字发票信息确认单编号：96227780995354065050",
     "24144123400000000006"),
    ("合同号:HT-2024-001", None),
])
def test_blue_key_from_each_remark_format(remark, blue):
    assert blue_key_from_remark(remark) == blue


def test_each_red_remark_wording_of_real_files_links_its_red_to_its_blue(tmp_path):
    """The corpus's reds, one per wording (legacy code and number with and without a space, 数电票 /
    数电发票, 数电 red for a legacy blue, a toll red whose number runs into a plate number), each
    linked to the blue invoice its 备注 names, never to its own code."""
    corpus = red_remark_corpus(2025)
    build_workbook(tmp_path / "reds.xlsx", corpus)
    invoices = by_key(parse_workbook(tmp_path / "reds.xlsx", TAX_ID))
    reds = [invoice for invoice in corpus if invoice["is_red"]]
    assert len(reds) == 6
    for red in reds:
        assert invoices[invoice_key(red)].red_of == red["red_of"], red["remark"]
        assert invoices[red["red_of"]].status == "已红冲-全额" and not invoices[red["red_of"]].is_red
    toll = invoices["037002500212-00400006"]
    assert toll.remark.startswith("对应正数发票代码:037002500112 号码:10621901鲁A00001")
    assert toll.red_of == "037002500112-10621901" and toll.type_name == "道路通行费电子普通发票"


def test_red_invoice_links_to_its_blue_invoice(tmp_path):
    path = tmp_path / "red.xlsx"
    blue_line = make_line("*计算机网络设备*交换机", "1000.00")
    blue = legacy_invoice("051641524025", "00254276", [blue_line], "2024-02-01 09:00:00",
                          kind="增值税电子专用发票", status="已红冲-全额")
    red = digital_invoice(
        "24657900000000003010", [make_line("*计算机网络设备*交换机", "-1000.00", quantity="-1")],
        "2024-03-05 10:00:00", kind="数电发票（增值税专用发票）", is_red=True,
        remark="被红冲蓝字发票号码：00254276 被红冲蓝字发票代码：051641524025 红字发票信息确认单编号："
               "85981504792527398401")
    build_workbook(path, [blue, red])
    invoices = by_key(parse_workbook(path, TAX_ID))
    red_record = invoices["24657900000000003010"]
    assert red_record.is_red and red_record.red_of == "051641524025-00254276"
    assert red_record.amount == Decimal("-1000.00") and red_record.lines[0].quantity == Decimal("-1")
    assert not red_record.lines[0].is_discount  # negative lines of a red invoice are not discounts
    blue_record = invoices["051641524025-00254276"]
    assert not blue_record.is_red and blue_record.red_of is None and blue_record.status == "已红冲-全额"


def test_blue_invoice_remark_never_makes_a_link(tmp_path):
    path = tmp_path / "blue.xlsx"
    build_workbook(path, [one_line_invoice(DN1, remark="被红冲蓝字数电发票号码：24144123400000000006")])
    assert only_invoice(parse_workbook(path, TAX_ID)).red_of is None


# --- discount and 销货清单 lines -----------------------------------------------------------


def test_discount_line_is_flagged_and_kept(tmp_path):
    path = tmp_path / "discount.xlsx"
    goods = make_line("*计算机网络设备*交换机", "1000.00")
    lines = [goods, discount_line(goods, "50.00"), make_line("*供电*电力", "200.00")]
    build_workbook(path, [digital_invoice(DN1, lines)])
    invoice = only_invoice(parse_workbook(path, TAX_ID))
    assert [line.is_discount for line in invoice.lines] == [False, True, False]
    assert invoice.lines[1].amount == Decimal("-50.00") and invoice.lines[1].tax == Decimal("-6.50")
    assert [line.line_no for line in invoice.lines] == [1, 2, 3]
    assert invoice.amount == Decimal("1150.00") and not invoice.is_red


def test_negative_first_line_of_the_next_invoice_is_not_a_discount(tmp_path):
    path = tmp_path / "first.xlsx"
    build_workbook(path, [one_line_invoice(DN1),
                          digital_invoice(DN2, [make_line("*供电*电力", "-5.00"), make_line("*供电*电力", "9.00")])])
    invoice = by_key(parse_workbook(path, TAX_ID))[DN2]
    assert [line.is_discount for line in invoice.lines] == [False, False]


def test_listed_summary_line_is_kept_for_the_job_layer(tmp_path):
    path = tmp_path / "listed.xlsx"
    real = [make_line("*电子元件*贴片电阻(0603)", "300.00"), make_line("*电子元件*电容（贴片）", "700.00")]
    build_workbook(path, [legacy_invoice("032446101531", "10948804", [listed_line(real), *real],
                                         kind="增值税普通发票")])
    invoice = only_invoice(parse_workbook(path, TAX_ID))
    assert [line.name for line in invoice.lines] == [
        "(详见销货清单)", "*电子元件*贴片电阻(0603)", "*电子元件*电容（贴片）"]
    assert invoice.lines[0].amount == Decimal("1000.00") and invoice.lines[0].quantity is None
    assert invoice.amount == Decimal("1000.00")  # the header holds the single, correct total


def test_lines_are_matched_by_key_not_position(tmp_path):
    shuffled = tmp_path / "shuffled.xlsx"
    # the same two invoices, header rows in the opposite order from the lines
    first = digital_invoice(DN1, [make_line("*供电*电力", "1.00")])
    second = digital_invoice(DN2, [make_line("*供电*电力", "2.00"), make_line("*供电*电力", "3.00")])
    second["basic_cells"] = {"数电发票号码": DN1, "金额": 1.0, "税额": 0.13, "价税合计": 1.13}
    first["basic_cells"] = {"数电发票号码": DN2, "金额": 5.0, "税额": 0.65, "价税合计": 5.65}
    build_workbook(shuffled, [first, second])
    invoices = by_key(parse_workbook(shuffled, TAX_ID))
    assert [line.amount for line in invoices[DN1].lines] == [Decimal("1.00")]
    assert [line.amount for line in invoices[DN2].lines] == [Decimal("2.00"), Decimal("3.00")]
    assert invoices[DN2].amount == Decimal("5.00")


# --- rejections: upload checks -------------------------------------------------------------


def test_good_upload_passes(tmp_path):
    path = tmp_path / "good.xlsx"
    build_workbook(path, n_random=50)
    check_upload(path)  # no exception


def test_oversize_file_is_refused(tmp_path):
    path = tmp_path / "big.xlsx"
    path.write_bytes(b"PK\x03\x04" + b"\0" * MAX_UPLOAD_BYTES)
    assert "超过 10 MB" in rejected(path, upload=True)


@pytest.mark.parametrize("content, hint", [
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 500, ".xls"),
    ("序号,发票代码,发票号码\n1,,\n".encode(), "CSV"),
    (bytes(range(256)) * 4, None),
])
def test_not_an_xlsx_is_refused(tmp_path, content, hint):
    path = tmp_path / "renamed.xlsx"
    path.write_bytes(content)
    message = rejected(path, upload=True)
    assert message.startswith("文件不是有效的 xlsx 工作簿")
    assert hint in message if hint else "（" not in message  # random bytes get no wrong guess
    assert rejected(path) == message  # the parse says the same


def test_truncated_zip_is_refused(tmp_path):
    good = tmp_path / "good.xlsx"
    build_workbook(good, n_random=50)
    path = tmp_path / "truncated.xlsx"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert "文件已损坏" in rejected(path, upload=True)


def test_crc_error_is_refused(tmp_path):
    good = tmp_path / "good.xlsx"
    build_workbook(good, n_random=20)
    path = tmp_path / "crc.xlsx"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as target:
        for entry in source.infolist():
            target.writestr(entry.filename, source.read(entry.filename))
    data = bytearray(path.read_bytes())
    at = data.index(b"<sheetData>") + 200  # inside the first sheet's stored bytes
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    message = rejected(path, upload=True)
    assert "文件已损坏" in message and "校验失败" in message


def _minimal_workbook_zip(path: Path, big_entry_bytes: int) -> None:
    """An xlsx-looking zip naming both sheets, plus one huge, highly compressible sheet."""
    workbook_xml = (
        '<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/'
        'spreadsheetml/2006/main"><sheets><sheet name="信息汇总表" sheetId="1"/>'
        '<sheet name="发票基础信息" sheetId="2"/></sheets></workbook>'
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/workbook.xml", workbook_xml)
        with archive.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
            chunk = b"\0" * (1 << 20)
            for _ in range(big_entry_bytes >> 20):
                sheet.write(chunk)


def test_zip_bomb_is_refused_before_parsing(tmp_path, monkeypatch):
    path = tmp_path / "bomb.xlsx"
    _minimal_workbook_zip(path, 64 << 20)
    assert path.stat().st_size < 200_000

    class NoCalamine:
        @staticmethod
        def from_path(_):
            raise AssertionError("the parser must not open a zip bomb")

    monkeypatch.setattr(parser, "CalamineWorkbook", NoCalamine)
    for message in (rejected(path, upload=True), rejected(path)):
        assert "压缩炸弹" in message


def test_total_uncompressed_size_limit(tmp_path, monkeypatch):
    path = tmp_path / "many.xlsx"
    build_workbook(path, n_random=100)
    with zipfile.ZipFile(path) as archive:
        total = sum(entry.file_size for entry in archive.infolist())
    monkeypatch.setattr(container, "MAX_UNCOMPRESSED_BYTES", total - 1)
    message = rejected(path, upload=True)
    assert "解压后" in message and "压缩炸弹" in message


@pytest.mark.parametrize("sheets, missing", [
    ((DETAIL_SHEET,), BASIC_SHEET),
    ((BASIC_SHEET,), DETAIL_SHEET),
    (("Sheet1",), "“发票基础信息”、“信息汇总表”"),
])
def test_missing_sheet_is_named(tmp_path, sheets, missing):
    path = tmp_path / "sheets.xlsx"
    build_workbook(path, [one_line_invoice(DN1)], sheets=sheets)
    for message in (rejected(path, upload=True), rejected(path)):
        assert message.startswith("文件缺少工作表") and missing in message


# --- rejections: content -------------------------------------------------------------------


@pytest.mark.parametrize("dropped, sheet", [
    (("金额",), BASIC_SHEET),
    (("货物或应税劳务名称",), DETAIL_SHEET),
    (("数电发票号码",), BASIC_SHEET),
])
def test_missing_column_is_named(tmp_path, dropped, sheet):
    path = tmp_path / "columns.xlsx"
    build_workbook(path, [one_line_invoice(DN1)], drop_columns=dropped)
    message = rejected(path)
    assert f"工作表“{sheet}”" in message and f"缺少列 “{dropped[0]}”" in message


def test_every_missing_column_is_named_at_once(tmp_path):
    path = tmp_path / "columns.xlsx"
    build_workbook(path, [one_line_invoice(DN1)], drop_columns=("开票日期", "是否正数发票"))
    assert "“开票日期”、“是否正数发票”" in rejected(path)


def test_other_sellers_file_is_refused(tmp_path):
    path = tmp_path / "foreign.xlsx"
    build_workbook(path, [one_line_invoice(DN1), one_line_invoice(DN2, seller_tax_id="91440300MA5FAKE00X")])
    message = rejected(path)
    assert f"文件中的销方税号 91440300MA5FAKE00X 与所选企业 {TAX_ID} 不一致" in message
    assert f"工作表“{BASIC_SHEET}”第 3 行" in message


SUPPLIERS = ("91440300MA5FAKE00X", "91110105MA01XYZ12K")


def received_invoices(*buyers: str) -> list[dict]:
    """Invoices other companies issued to `buyers`, one each: the rows of an 进项 export."""
    numbers = (DN1, DN2, DN3)[:len(buyers)]
    return [one_line_invoice(number, seller_tax_id=SUPPLIERS[n % 2], seller_name="深圳示例供应商有限公司",
                             buyer_tax_id=buyer) for n, (number, buyer) in enumerate(zip(numbers, buyers, strict=True))]


def test_an_input_export_is_refused_saying_it_is_one(tmp_path):
    """The chosen company is the buyer on every row (in any spelling of its tax ID): the answer says
    this is an 进项 export and that the pool takes output invoices only (the parse, which also answers
    the upload: jobs.staging)."""
    path = tmp_path / "received.xlsx"
    build_workbook(path, received_invoices(TAX_ID, TAX_ID.lower(), f" {TAX_ID}"))
    message = rejected(path)
    assert message.startswith(f"这是进项发票的导出文件：所选企业 {TAX_ID} 在每一行都是购买方")
    assert "发票池只收所选企业开具的销项发票" in message and "不一致" not in message


def test_a_file_of_other_sellers_where_the_company_is_not_always_the_buyer_names_the_first_other_seller(tmp_path):
    path = tmp_path / "mixed.xlsx"
    build_workbook(path, received_invoices(TAX_ID, "91420100MA4KLMNO3J"))
    assert (f"文件中的销方税号 {SUPPLIERS[0]} 与所选企业 {TAX_ID} 不一致"
            f"（工作表“{BASIC_SHEET}”第 2 行）") in rejected(path)


def test_selected_company_differs_from_the_file(tmp_path):
    path = tmp_path / "mine.xlsx"
    build_workbook(path, [one_line_invoice(DN1)])
    with pytest.raises(SourceRejected, match="与所选企业 91110000000000000A 不一致"):
        parse_workbook(path, "91110000000000000A")
    assert parse_workbook(path, TAX_ID.lower() + " ").invoice_count == 1  # case and spaces do not matter


def test_foreign_seller_on_a_line_is_refused(tmp_path):
    path = tmp_path / "foreign-line.xlsx"
    build_workbook(path, [one_line_invoice(DN1, line_cells={"销方识别号": "91440300MA5FAKE00X"})])
    message = rejected(path)
    assert "91440300MA5FAKE00X" in message and f"工作表“{DETAIL_SHEET}”第 2 行" in message


def test_empty_workbook_is_refused(tmp_path):
    path = tmp_path / "empty.xlsx"
    build_workbook(path, [])
    check_upload(path)  # structurally fine
    assert "没有发票" in rejected(path)


@pytest.mark.parametrize("cells, sheet_name, column", [
    ({"basic_cells": {"开票日期": "上周三"}}, BASIC_SHEET, "开票日期"),
    ({"basic_cells": {"金额": "一百元"}}, BASIC_SHEET, "金额"),
    ({"basic_cells": {"税额": ""}}, BASIC_SHEET, "税额"),
    ({"basic_cells": {"是否正数发票": "不知道"}}, BASIC_SHEET, "是否正数发票"),
    ({"line_cells": {"金额": "#VALUE!"}}, DETAIL_SHEET, "金额"),
    ({"line_cells": {"数量": "三个"}}, DETAIL_SHEET, "数量"),
    ({"line_cells": {"单价": "NaN"}}, DETAIL_SHEET, "单价"),
])
def test_unreadable_cell_names_sheet_row_and_column(tmp_path, cells, sheet_name, column):
    path = tmp_path / "cells.xlsx"
    build_workbook(path, [one_line_invoice(DN1), one_line_invoice(DN2, **cells)])
    message = rejected(path)
    assert f"工作表“{sheet_name}”第 3 行“{column}”" in message


def test_invoice_without_lines_is_refused(tmp_path):
    path = tmp_path / "no-lines.xlsx"
    build_workbook(path, [one_line_invoice(DN1), digital_invoice(DN2, [])])
    message = rejected(path)
    assert DN2 in message and "没有明细行" in message and "第 3 行" in message


def test_lines_without_invoice_are_refused(tmp_path):
    path = tmp_path / "orphan.xlsx"
    build_workbook(path, [one_line_invoice(DN1), one_line_invoice(DN2, line_cells={"数电发票号码": DN3})])
    message = rejected(path)
    assert DN3 in message and f"工作表“{DETAIL_SHEET}”第 3 行" in message and "不存在" in message


def test_duplicate_invoice_rows_are_refused(tmp_path):
    path = tmp_path / "dup.xlsx"
    build_workbook(path, [one_line_invoice(DN1), one_line_invoice(DN1)])
    message = rejected(path)
    assert DN1 in message and "重复" in message


# --- every bad row is named ------------------------------------------------------------------


def test_every_unreadable_row_is_listed_with_sheet_row_column_and_value(tmp_path):
    path = tmp_path / "bad-rows.xlsx"
    build_workbook(path, [
        one_line_invoice(DN1, basic_cells={"开票日期": "上周三"}),
        one_line_invoice(DN2, line_cells={"金额": "一百元"}),
        one_line_invoice(DN3, basic_cells={"是否正数发票": "不知道"}, line_cells={"数量": "三个"}),
    ])
    with pytest.raises(RowsRejected) as info:
        parse_workbook(path, TAX_ID)
    places = [(r.sheet, r.row, r.column, r.value) for r in info.value.rows]
    assert places == [  # the lines of an invoice whose own row is bad are not named again
        (BASIC_SHEET, 2, "开票日期", "上周三"),
        (BASIC_SHEET, 4, "是否正数发票", "不知道"),
        (DETAIL_SHEET, 3, "金额", "一百元"),
    ]
    assert info.value.total == len(places)
    assert "处无法读取" in str(info.value) and "错误清单" in str(info.value)


def test_at_most_a_hundred_bad_rows_are_listed_but_all_are_counted(tmp_path):
    path = tmp_path / "many-bad.xlsx"
    invoices = [one_line_invoice(f"2490012340000001{i:04d}", basic_cells={"金额": "坏"}) for i in range(130)]
    build_workbook(path, invoices)
    with pytest.raises(RowsRejected) as info:
        parse_workbook(path, TAX_ID)
    assert len(info.value.rows) == MAX_LISTED_ERRORS and info.value.total == 130
    assert info.value.rows[-1].row == 101 and "130 处" in str(info.value)


@pytest.mark.parametrize("cell, why", [
    (1e20, "超出金额范围"), ("1e400", "超出金额范围"), ("-3e16", "超出金额范围"), ("NaN", "不是数字"),
])
def test_amounts_beyond_what_the_pool_keeps_are_named(tmp_path, cell, why):
    path = tmp_path / "huge-amount.xlsx"
    build_workbook(path, [one_line_invoice(DN1, basic_cells={"金额": cell})])
    with pytest.raises(RowsRejected) as info:
        parse_workbook(path, TAX_ID)
    [row] = info.value.rows
    assert (row.sheet, row.row, row.column) == (BASIC_SHEET, 2, "金额") and why in row.why


def test_values_longer_than_the_pool_keeps_are_named_with_row_and_field(tmp_path):
    path = tmp_path / "long.xlsx"
    long_name = "某" * 32000
    goods = make_line("*供电*电力", "10.00", spec="规" * 300)
    build_workbook(path, [one_line_invoice(DN1), digital_invoice(DN2, [make_line("*供电*电力", "1.00"), goods],
                                                                  buyer_name=long_name)])
    limits = {"invoice": {"buyer_name": 200, "seller_name": 200}, "line": {"spec": 200, "name": 300}}
    assert parse_workbook(path, TAX_ID).invoice_count == 2  # without limits nothing is checked
    with pytest.raises(RowsRejected) as info:
        parse_workbook(path, TAX_ID, limits)
    found = {(r.sheet, r.row, r.column): r.why for r in info.value.rows}
    assert found == {(BASIC_SHEET, 3, "购买方名称"): "过长：32000 个字符，最多 200 个",
                     (DETAIL_SHEET, 4, "规格型号"): "过长：300 个字符，最多 200 个"}


def test_a_blue_invoice_with_a_negative_amount_imports_with_a_warning(tmp_path):
    path = tmp_path / "negative-blue.xlsx"
    build_workbook(path, [one_line_invoice(DN1), digital_invoice(DN2, [make_line("*供电*电力", "-30.00")])])
    parsed = parse_workbook(path, TAX_ID)
    assert parsed.invoice_count == 2 and by_key(parsed)[DN2].amount == Decimal("-30.00")
    assert len(parsed.warnings) == 1 and DN2 in parsed.warnings[0] and "金额为负数" in parsed.warnings[0]


# --- cells far outside the data, and zips that understate their sizes ----------------------------


def _patched_copy(source: Path, target: Path, part: str, change) -> None:
    """A copy of a workbook with one zip part's bytes changed."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for entry in src.infolist():
            data = src.read(entry.filename)
            dst.writestr(entry.filename, change(data) if entry.filename == part else data)


@pytest.mark.parametrize("cell", ["XFD1048576", "AN1048576", "BA2", "A200001"])
def test_a_stray_cell_far_away_is_refused_on_upload(tmp_path, cell):
    good = tmp_path / "good.xlsx"
    build_workbook(good, [one_line_invoice(DN1)])
    path = tmp_path / "far.xlsx"
    row = cell.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    stray = f'<row r="{row}"><c r="{cell}" t="inlineStr"><is><t>x</t></is></c></row></sheetData>'.encode()
    _patched_copy(good, path, "xl/worksheets/sheet1.xml", lambda xml: xml.replace(b"</sheetData>", stray))
    message = rejected(path, upload=True)
    assert f"工作表“{DETAIL_SHEET}”的单元格 {cell} 远在数据区域之外" in message


def test_cells_near_the_data_and_far_blank_rows_are_fine(tmp_path):
    good = tmp_path / "good.xlsx"
    build_workbook(good, [one_line_invoice(DN1)])
    path = tmp_path / "near.xlsx"
    extra = b'<row r="500"><c r="AZ500" t="inlineStr"><is><t>note</t></is></c></row><row r="900000"/></sheetData>'
    _patched_copy(good, path, "xl/worksheets/sheet1.xml", lambda xml: xml.replace(b"</sheetData>", extra))
    check_upload(path)
    assert parse_workbook(path, TAX_ID).invoice_count == 1


def understated_bomb(path: Path, real_bytes: int, *, forge_crc: bool = False) -> None:
    """A workbook whose sheet inflates to `real_bytes` while its headers declare 1 MB; with
    `forge_crc`, its CRC is that of the first 1 MB, so the lie passes zipfile's own check."""
    good = path.with_name("base.xlsx")
    build_workbook(good, [one_line_invoice(DN1)])
    padding = b"<!--" + b" " * real_bytes + b"-->"
    _patched_copy(good, path, "xl/worksheets/sheet1.xml",
                  lambda xml: xml.replace(b"<sheetData>", padding + b"<sheetData>"))
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("xl/worksheets/sheet1.xml")
        crc = zlib.crc32(archive.open(info).read(1 << 20)) if forge_crc else info.CRC
    # (signature, offset of the CRC, offset of the uncompressed size) in the local and central headers
    for signature, crc_at, size_at in ((b"PK\x03\x04", 14, 22), (b"PK\x01\x02", 16, 24)):
        start = 0
        while (at := data.find(signature, start)) >= 0:
            name_at = at + (30 if signature == b"PK\x03\x04" else 46)
            if data[name_at:name_at + len(info.filename)] == info.filename.encode():
                data[at + size_at:at + size_at + 4] = (1 << 20).to_bytes(4, "little")
                data[at + crc_at:at + crc_at + 4] = crc.to_bytes(4, "little")
            start = at + 4
    path.write_bytes(bytes(data))


def test_a_zip_that_understates_its_sizes_is_stopped_while_inflating(tmp_path):
    path = tmp_path / "understated.xlsx"
    understated_bomb(path, 64 << 20)
    assert path.stat().st_size < 1 << 20
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo("xl/worksheets/sheet1.xml").file_size == 1 << 20  # the lie passes the old check
        container.check_zip_limits(archive)
    message = rejected(path, upload=True)
    assert "实际大小超过其声明大小" in message and "压缩炸弹" in message


def test_an_understated_size_is_stopped_even_with_a_crc_forged_to_match(tmp_path):
    """zipfile stops quietly at the declared size and checks the CRC of what it read: a forged CRC
    passes that, and calamine would then inflate the whole entry. The guard counts past the lie."""
    path = tmp_path / "forged.xlsx"
    understated_bomb(path, 64 << 20, forge_crc=True)
    with zipfile.ZipFile(path) as archive:
        assert len(archive.read("xl/worksheets/sheet1.xml")) == 1 << 20  # zipfile alone sees nothing wrong
    message = rejected(path, upload=True)
    assert "实际大小超过其声明大小" in message and "压缩炸弹" in message


def test_a_quantity_longer_than_the_pool_keeps_is_named(tmp_path):
    path = tmp_path / "long-quantity.xlsx"
    build_workbook(path, [one_line_invoice(DN1, line_cells={"数量": "1" + "0" * 45})])
    with pytest.raises(RowsRejected) as info:
        parse_workbook(path, TAX_ID)
    [row] = info.value.rows
    assert (row.sheet, row.row, row.column, row.why) == (DETAIL_SHEET, 2, "数量", "过长：最多 39 个字符")


# --- 信息汇总表 read in two halves (channels.etax.halves) ----------------------------------------------


def _parsed_in_halves(path: Path, folder: Path) -> tuple[list[Path] | None, ParsedWorkbook]:
    """What the parse at receipt does: the guard keeps the big sheet in halves, the parse reads them."""
    halves = SheetHalves(folder, min_bytes=0)
    try:
        check_upload(path, halves)
        ready = list(halves.ready or [])
        return ready or None, parse_workbook(path, TAX_ID, detail_halves=halves.ready)
    finally:
        halves.discard()


def test_the_big_sheet_read_in_two_halves_gives_the_same_invoices_lines_and_row_numbers(tmp_path):
    path = tmp_path / "export.xlsx"
    build_workbook(path, n_random=300, seed=5)
    halves, split = _parsed_in_halves(path, tmp_path)
    assert halves and len(halves) == 2
    assert split == parse_workbook(path, TAX_ID)
    assert not any(h.exists() for h in halves)  # deleted once read


def test_a_half_without_the_first_column_keeps_every_cell_in_its_column(tmp_path):
    """calamine starts a sheet's rows at its leftmost used column: the second half, where no row has a
    序号, must still have its cells where the whole sheet has them."""
    good, path = tmp_path / "good.xlsx", tmp_path / "no-first-column.xlsx"
    build_workbook(good, n_random=200, seed=6)

    def drop_late_first_cells(xml: bytes) -> bytes:
        return re.sub(rb'<c r="A(\d{3,})"[^>]*?(?:/>|>.*?</c>)',
                      lambda m: b"" if int(m.group(1)) > 150 else m.group(0), xml)
    _patched_copy(good, path, "xl/worksheets/sheet1.xml", drop_late_first_cells)
    halves, split = _parsed_in_halves(path, tmp_path)
    assert halves
    assert split == parse_workbook(path, TAX_ID) == parse_workbook(good, TAX_ID)


def test_rows_without_numbers_are_not_split_and_read_whole(tmp_path):
    good, path = tmp_path / "good.xlsx", tmp_path / "unnumbered.xlsx"
    build_workbook(good, n_random=50, seed=7)
    _patched_copy(good, path, "xl/worksheets/sheet1.xml", lambda xml: re.sub(rb'<row r="\d+"', b"<row", xml))
    halves, split = _parsed_in_halves(path, tmp_path)
    assert halves is None
    assert split == parse_workbook(good, TAX_ID)
    assert list(tmp_path.glob(".detail-*")) == []


def test_a_refused_file_leaves_no_halves(tmp_path):
    good, path = tmp_path / "good.xlsx", tmp_path / "far.xlsx"
    build_workbook(good, n_random=50, seed=8)
    stray = b'<row r="300000"><c r="A300000" t="inlineStr"><is><t>x</t></is></c></row></sheetData>'
    _patched_copy(good, path, "xl/worksheets/sheet1.xml", lambda xml: xml.replace(b"</sheetData>", stray))
    halves = SheetHalves(tmp_path, min_bytes=0)
    with pytest.raises(SourceRejected, match="远在数据区域之外"):
        check_upload(path, halves)
    halves.discard()
    assert list(tmp_path.glob(".detail-*")) == []
