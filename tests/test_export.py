"""The invoice-pool export (webapp/export.py): written to real .xlsx files, read back with openpyxl and
python-calamine. Rows are plain SimpleNamespace records with the Invoice columns."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import tracemalloc
import zipfile
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest
from openpyxl import load_workbook
from python_calamine import CalamineWorkbook

from tests.conftest import DEMO_TAX_ID, cli_json, login
from tests.workbook_builder import BASIC_HEADERS
from webapp.pool import export
from webapp.pool.export import INVOICE_HEADERS, ExportTooLarge, export_filename, write_invoices

ROOT = Path(__file__).resolve().parent.parent

# docs/etax-export.md, Columns, written out again here so a change on either side is caught
ETAX_BASIC = [
    "序号", "发票代码", "发票号码", "数电发票号码", "销方识别号", "销方名称", "购方识别号", "购买方名称", "开票日期",
    "金额", "税额", "价税合计", "发票来源", "发票票种", "发票状态", "是否正数发票", "发票风险等级", "开票人", "备注",
]
ETAX_DETAIL = [
    "序号", "发票代码", "发票号码", "数电发票号码", "销方识别号", "销方名称", "购方识别号", "购买方名称", "开票日期",
    "税收分类编码", "特定业务类型", "货物或应税劳务名称", "规格型号", "单位", "数量", "单价", "金额", "税率", "税额",
    "价税合计", "发票来源", "发票票种", "发票状态", "是否正数发票", "发票风险等级", "开票人", "备注",
]
OURS = ["增值税用途状态", "消费税用途状态", "入账状态", "用途状态更新时间", "数据来源", "同步时间"]
COL = {name: i for i, name in enumerate(ETAX_BASIC + OURS)}


def digital(**fields) -> SimpleNamespace:
    """A 数电 invoice row as the pool holds it: no 发票代码/发票号码."""
    row = dict(
        key="d1", code=None, number=None, digital_number="24332000000123456789", tax_id="91330100MA2H4K7Q1X",
        seller_name="杭州示例科技有限公司", buyer_tax_id="91110105MA01XYZ12K", buyer_name="北京示例贸易有限公司",
        issued_at=datetime(2024, 3, 5, 9, 7, 3), amount=Decimal("1000.00"), tax=Decimal("130.00"),
        total=Decimal("1130.00"), origin="电子发票服务平台", type_name="数电发票（增值税专用发票）", status="正常",
        is_red=False, risk_level="正常", issuer="赵开票", remark="", vat_usage=None, excise_usage=None,
        entry_status=None, usage_channel=None, usage_updated_at=None, source="file",
        synced_at=datetime(2024, 11, 5, 10, 30, 0),
    )
    row.update(fields)
    return SimpleNamespace(**row)


def legacy(**fields) -> SimpleNamespace:
    """A 税控 invoice row: 12-digit code, 8-digit number with leading zeros, no 数电 number."""
    values = dict(key="l1", code="033001900111", number="00012345", digital_number=None,
                  origin="增值税发票管理系统", type_name="增值税普通发票")
    values.update(fields)
    return digital(**values)


def write_and_read(tmp_path, rows) -> tuple[int, list[list], list[list]]:
    """Write rows; return (count, openpyxl rows as cells, calamine rows as values)."""
    path = tmp_path / "export.xlsx"
    count = write_invoices(rows, path)
    sheet = load_workbook(path)["发票基础信息"]
    cells = [list(row) for row in sheet.iter_rows()]
    values = CalamineWorkbook.from_path(str(path)).get_sheet_by_name("发票基础信息").to_python(skip_empty_area=False)
    assert values[-1][0] == "合计行"
    return count, cells[:-1], values[:-1]  # without the totals row


def test_headers_are_the_etax_names_then_ours(tmp_path):
    assert list(INVOICE_HEADERS) == ETAX_BASIC + OURS
    assert list(INVOICE_HEADERS[:19]) == BASIC_HEADERS  # the e-tax fixture builder agrees
    path = tmp_path / "export.xlsx"
    assert write_invoices([digital()], path) == 1
    workbook = load_workbook(path)
    assert workbook.sheetnames == ["信息汇总表", "发票基础信息"]  # the e-tax export's order
    sheet = workbook["发票基础信息"]
    assert [c.value for c in sheet[1]] == ETAX_BASIC + OURS
    assert sheet.max_row == 3 and sheet.max_column == 25  # header, the invoice, 合计行
    assert sheet.freeze_panes == "A2"
    assert [c.value for c in workbook["信息汇总表"][1]] == ETAX_DETAIL


def test_ids_are_text_cells_with_leading_zeros(tmp_path):
    row = legacy(buyer_tax_id="0123456789ABCDEFGH", tax_id="00330100MA2H4K7Q1X")
    _, cells, values = write_and_read(tmp_path, [row])
    data = cells[1]
    for name, expected in [("序号", "1"), ("发票代码", "033001900111"), ("发票号码", "00012345"),
                           ("销方识别号", "00330100MA2H4K7Q1X"), ("购方识别号", "0123456789ABCDEFGH")]:
        assert data[COL[name]].value == expected, name
        assert data[COL[name]].data_type == "s", name
        assert values[1][COL[name]] == expected, name


def test_amounts_are_numbers_exact_to_the_cent(tmp_path):
    rows = [
        digital(amount=Decimal("1234.50"), tax=Decimal("0.10"), total=Decimal("1234.60")),
        digital(amount=Decimal("-88.88"), tax=Decimal("-11.55"), total=Decimal("-100.43"), is_red=True),
        digital(amount=Decimal("12345678901.23"), tax=Decimal("0.00"), total=None),  # total is nullable
        digital(amount=0.1 + 0.2, tax=Decimal("1.005"), total=7),  # floats/ints/extra digits: to the cent
    ]
    _, cells, values = write_and_read(tmp_path, rows)
    expected = [("1234.50", "0.10", "1234.60"), ("-88.88", "-11.55", "-100.43"),
                ("12345678901.23", "0.00", None), ("0.30", "1.01", "7.00")]
    for data, calamine, want in zip(cells[1:], values[1:], expected, strict=False):
        for name, text in zip(("金额", "税额", "价税合计"), want, strict=False):
            cell = data[COL[name]]
            if text is None:
                assert cell.value is None and calamine[COL[name]] == ""
                continue
            assert cell.data_type == "n", name
            assert Decimal(repr(cell.value)).quantize(Decimal("0.01")) == Decimal(text)
            assert round(cell.value, 2) == float(Decimal(text)) == calamine[COL[name]]


def test_dates_are_etax_style_text(tmp_path):
    row = digital(issued_at=datetime(2024, 3, 5, 9, 7, 3), usage_updated_at=datetime(2024, 11, 1, 8, 0, 59),
                  synced_at=datetime(2024, 11, 5, 10, 30, 0), vat_usage="0", usage_channel="leqi")
    _, cells, values = write_and_read(tmp_path, [row, digital(usage_updated_at=None)])
    data = cells[1]
    assert data[COL["开票日期"]].value == "2024-03-05 09:07:03"
    assert data[COL["开票日期"]].data_type == "s"
    assert data[COL["用途状态更新时间"]].value == "2024-11-01 08:00:59"
    assert data[COL["同步时间"]].value == "2024-11-05 10:30:00"
    assert values[1][COL["开票日期"]] == "2024-03-05 09:07:03"  # a string to calamine too, not a date
    assert cells[2][COL["用途状态更新时间"]].value in (None, "")  # empty: never fetched


def test_digital_and_legacy_number_columns(tmp_path):
    rows = [
        digital(),
        legacy(),
        digital(code="144002400111", number="00004567", type_name="数电纸质发票（普通发票）"),  # 数电纸质: all three
        legacy(digital_number="--"),  # a pool row that kept the export's placeholder
    ]
    _, cells, values = write_and_read(tmp_path, rows)
    triples = [tuple(v[COL[n]] for n in ("发票代码", "发票号码", "数电发票号码")) for v in values[1:]]
    assert triples == [
        ("", "", "24332000000123456789"),
        ("033001900111", "00012345", "--"),
        ("144002400111", "00004567", "24332000000123456789"),
        ("033001900111", "00012345", "--"),
    ]
    # the 数电 invoice's empty codes are (empty) string cells, as in the e-tax export
    xml = zipfile.ZipFile(tmp_path / "export.xlsx").read("xl/worksheets/sheet2.xml").decode()
    first = xml.split("<row>")[2]  # the first invoice's row
    assert first.split("</c>")[1:3] == ['<c t="inlineStr"><is><t></t></is>'] * 2
    assert cells[2][COL["数电发票号码"]].value == "--"  # not neutralised: it is the export's own marker


def test_positive_invoice_flag(tmp_path):
    _, cells, _ = write_and_read(tmp_path, [digital(is_red=False), digital(is_red=True), digital(is_red=0),
                                            digital(is_red=1)])
    assert [row[COL["是否正数发票"]].value for row in cells[1:]] == ["是", "否", "是", "否"]


def test_usage_labels_follow_each_channels_code_set(tmp_path):
    rows = [
        digital(vat_usage="1", excise_usage="01", entry_status="03", usage_channel="leqi"),
        digital(vat_usage="6", excise_usage="00", entry_status="03", usage_channel="rpa"),
        digital(vat_usage="0", excise_usage="00", entry_status="06", usage_channel="rpa"),
        digital(vat_usage="0", excise_usage="00", entry_status="02", usage_channel="leqi"),
        digital(vat_usage="0", excise_usage="00", entry_status="02", usage_channel="rpa"),
        digital(),  # never fetched
        digital(vat_usage="99", excise_usage="00", entry_status="01", usage_channel="leqi"),
    ]
    _, cells, _ = write_and_read(tmp_path, rows)
    got = [tuple(row[COL[n]].value for n in ("增值税用途状态", "消费税用途状态", "入账状态")) for row in cells[1:]]
    assert got == [
        ("已申请抵扣", "已勾选库存", "入账撤销"),
        ("已申请不抵扣", "未勾选库存", "已入账（企业所得税不扣除）"),
        ("未使用", "未勾选库存", "入账撤销"),
        ("未使用", "未勾选库存", "已入账"),
        ("未使用", "未勾选库存", "已入账（企业所得税税前扣除）"),
        ("未获取", "未获取", "未获取"),
        ("未知代码 99", "未勾选库存", "未入账"),
    ]


def test_data_source_labels(tmp_path):
    _, cells, _ = write_and_read(tmp_path, [digital(source="file"), digital(source="leqi"), digital(source="rpa")])
    assert [row[COL["数据来源"]].value for row in cells[1:]] == ["导入电子税局文件", "乐企", "RPA"]


def test_formula_like_text_is_text_shown_exactly_as_it_came(tmp_path):
    """Formula safety without an apostrophe: every such value is a string cell whose
    value equals the source, and the sheet holds no formula at all."""
    rows = [
        digital(buyer_name='=HYPERLINK("http://x","y")', remark="@SUM(A1)"),
        digital(buyer_name="+1+1", remark="-1+cmd|' /C calc'!A0", issuer="-2+3"),
        digital(buyer_name="=cmd|'/C calc'!A0", remark="-12.50", issuer="+86"),
        digital(buyer_name="普通=名称", remark="项目：示例\n第二期"),
    ]
    _, cells, values = write_and_read(tmp_path, rows)
    got = [tuple(row[COL[n]].value for n in ("购买方名称", "备注", "开票人")) for row in cells[1:]]
    assert got == [
        ('=HYPERLINK("http://x","y")', "@SUM(A1)", "赵开票"),
        ("+1+1", "-1+cmd|' /C calc'!A0", "-2+3"),
        ("=cmd|'/C calc'!A0", "-12.50", "+86"),
        ("普通=名称", "项目：示例\n第二期", "赵开票"),
    ]
    assert all(cell.data_type == "s" for row in cells[1:] for cell in row if isinstance(cell.value, str))
    assert values[1][COL["购买方名称"]] == '=HYPERLINK("http://x","y")'
    xml = zipfile.ZipFile(tmp_path / "export.xlsx").read("xl/worksheets/sheet2.xml").decode()
    assert "<f>" not in xml and "<f " not in xml


def test_amounts_are_numbers_with_a_money_format(tmp_path):
    """金额 税额 价税合计 are numbers a user can sum, shown with thousands separators."""
    _, cells, _ = write_and_read(tmp_path, [digital(), digital()])
    for row in cells[1:]:
        for name in ("金额", "税额", "价税合计"):
            assert isinstance(row[COL[name]].value, (int, float)), (name, row[COL[name]].value)
            assert row[COL[name]].number_format == "#,##0.00", name


def test_markup_spaces_and_control_characters_read_back_as_written(tmp_path):
    rows = [digital(buyer_name="A&B <有限> 公司", remark="  两边有空格 ", issuer="赵\x01开票"),
            digital(remark="\t制表")]
    _, cells, values = write_and_read(tmp_path, rows)
    for read in ([c.value for c in cells[1]], values[1]):
        assert read[COL["购买方名称"]] == "A&B <有限> 公司"
        assert read[COL["备注"]] == "  两边有空格 "  # kept: xml:space="preserve" where a text needs it
        assert read[COL["开票人"]] == "赵开票"  # a control character an xlsx cannot hold is dropped
    assert cells[2][COL["备注"]].value == "\t制表"


def test_export_filename():
    assert export_filename(datetime(2024, 11, 5, 10, 30, 0)) == "销项发票池导出_20241105_103000.xlsx"
    assert export_filename(datetime(2025, 1, 2, 3, 4, 5)) == "销项发票池导出_20250102_030405.xlsx"


def test_binary_file_target_and_mapping_rows():
    buffer = io.BytesIO()
    mapping = vars(legacy(buyer_name="映射买方"))  # a RowMapping-like dict
    assert write_invoices(iter([mapping, digital()]), buffer) == 2
    sheet = load_workbook(io.BytesIO(buffer.getvalue()))["发票基础信息"]
    rows = list(sheet.values)
    assert [r[0] for r in rows] == ["序号", "1", "2", "合计行"]
    assert rows[1][COL["购买方名称"]] == "映射买方"


def test_empty_export_has_the_header_only(tmp_path):
    count, cells, _ = write_and_read(tmp_path, iter(()))
    assert count == 0
    assert [c.value for c in cells[0]] == ETAX_BASIC + OURS and len(cells) == 1


def test_a_failing_row_source_leaves_no_file(tmp_path):
    def rows():
        yield digital()
        yield digital()
        raise RuntimeError("database went away")

    path = tmp_path / "export.xlsx"
    with pytest.raises(RuntimeError):
        write_invoices(rows(), path)
    assert not path.exists()


def test_more_rows_than_a_sheet_holds(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "MAX_DATA_ROWS", 3)
    assert write_invoices([digital()] * 3, tmp_path / "ok.xlsx") == 3
    with pytest.raises(ExportTooLarge):
        write_invoices([digital()] * 4, tmp_path / "too_many.xlsx")
    assert not (tmp_path / "too_many.xlsx").exists()


# ---------------------------------------------------------------------------------------------
# Streaming: hundreds of thousands of rows in constant memory
# ---------------------------------------------------------------------------------------------


def streamed_rows(n: int):
    """n distinct rows, made one at a time (never a list)."""
    start = datetime(2024, 1, 1)
    for i in range(n):
        red = i % 10 == 9
        sign = -1 if red else 1
        yield SimpleNamespace(
            key=f"k{i}", code=None if i % 2 else f"0330019{i:05d}", number=None if i % 2 else f"{i:08d}",
            digital_number=f"2433200000{i:010d}" if i % 2 else None, tax_id="91330100MA2H4K7Q1X",
            seller_name="杭州示例科技有限公司", buyer_tax_id="91110105MA01XYZ12K", buyer_name=f"买方{i % 97}有限公司",
            issued_at=start + timedelta(seconds=i * 7), amount=Decimal(sign * (100000 + i)) / 100,
            tax=Decimal(sign * (13000 + i % 100)) / 100, total=None, origin="电子发票服务平台",
            type_name="数电发票（普通发票）", status="正常", is_red=red, risk_level="正常", issuer="赵开票",
            remark=f"合同号:HT-{i}", vat_usage=str(i % 12), excise_usage="00", entry_status="02",
            usage_channel=("leqi", "rpa")[i % 2], usage_updated_at=start, source=("file", "leqi", "rpa")[i % 3],
            synced_at=start,
        )


def three_lines(keys: list[str]) -> dict[str, list]:
    """Three lines for each invoice, as a `lines_of` gives them (objects with the InvoiceLine columns)."""
    return {key: [SimpleNamespace(line_no=n, name=f"*医疗服务*体检费{n}", tax_code="3070202000000000000",
                                  special_type=None, spec=None, unit="次", quantity="1", unit_price="100.00",
                                  amount=Decimal("100.00"), tax_rate="6%", tax=Decimal("6.00"),
                                  total=Decimal("106.00")) for n in (1, 2, 3)] for key in keys}


_CHILD = """
import json, resource, sys, time
from tests.test_export import streamed_rows, three_lines
from webapp.pool.export import write_invoices
rows = streamed_rows(int(sys.argv[1]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
count = write_invoices(rows, sys.argv[2], lines_of=three_lines)
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"count": count, "seconds": seconds, "growth_mb": (after - before) / 1024}))
"""


def test_100k_rows_stream_in_bounded_memory(tmp_path):
    """100,000 invoices and 300,000 lines in a fresh process: its peak RSS barely moves, and
    calamine reads them all back, with the totals row.

    (tracemalloc slows the writer, so here the process's own high-water mark is measured; the
    tracemalloc test below shows the Python heap stays flat as rows grow.)
    """
    n = 100_000
    path = tmp_path / "big.xlsx"
    out = subprocess.run([sys.executable, "-c", _CHILD, str(n), str(path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=600, check=True)
    report = json.loads(out.stdout)
    assert report["count"] == n
    assert report["growth_mb"] < 60, report
    assert report["seconds"] < 180, report  # about 4 s here; openpyxl took 22 s without the lines

    workbook = CalamineWorkbook.from_path(str(path))
    details = workbook.get_sheet_by_name("信息汇总表").to_python(skip_empty_area=False)
    assert len(details) == 3 * n + 1 and details[-1][0] == str(3 * n) and details[-1][11] == "*医疗服务*体检费3"
    rows = workbook.get_sheet_by_name("发票基础信息").to_python(skip_empty_area=False)
    totals = rows.pop()
    assert totals[:2] == ["合计行", ""] and totals[COL["价税合计"]] == ""
    assert round(totals[COL["金额"]], 2) == round(sum(r[COL["金额"]] for r in rows[1:]), 2)
    assert len(rows) == n + 1
    assert rows[0] == ETAX_BASIC + OURS
    first, last = rows[1], rows[-1]
    assert first[:4] == ["1", "033001900000", "00000000", "--"]
    assert last[:4] == [str(n), "", "", f"2433200000{n - 1:010d}"]
    issued = datetime(2024, 1, 1) + timedelta(seconds=(n - 1) * 7)
    assert last[COL["开票日期"]] == issued.strftime("%Y-%m-%d %H:%M:%S")
    assert last[COL["金额"]] == float(Decimal(-(100000 + n - 1)) / 100) and last[COL["是否正数发票"]] == "否"
    assert sum(1 for r in rows[1:] if r[COL["是否正数发票"]] == "否") == n // 10


def _traced_peak_mb(tmp_path, n: int) -> float:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        assert write_invoices(streamed_rows(n), tmp_path / f"traced_{n}.xlsx") == n
        return tracemalloc.get_traced_memory()[1] / 1024 / 1024
    finally:
        tracemalloc.stop()


def test_tracemalloc_peak_stays_flat(tmp_path):
    small = _traced_peak_mb(tmp_path, 1_000)
    started = time.perf_counter()
    large = _traced_peak_mb(tmp_path, 10_000)
    assert time.perf_counter() - started < 120
    assert large < 60, large
    assert large - small < 5, (small, large)  # ten times the rows, (almost) no more memory


# ---------------------------------------------------------------------------------------------
# Round trip: what the pool exports, an empty pool imports back with the same figures
# ---------------------------------------------------------------------------------------------


def _pool_snapshot(app, runner) -> tuple[dict, dict]:
    """`pool stats` and every invoice as `pool show` gives it, its lines in order.

    Line numbers are left out: the export, like the e-tax one, numbers lines per sheet, so an
    invoice whose first line was an error-goods line (dropped at import) comes back numbered from 1.
    """
    from sqlalchemy import select

    from webapp.extensions import db
    from webapp.models import Invoice
    from webapp.pool import invoice_json

    stats = cli_json(runner, "pool", "stats", "--tax-id", DEMO_TAX_ID)
    with app.app_context():
        invoices = {}
        for invoice in db.session.scalars(select(Invoice)):
            shown = invoice_json(invoice)
            for line in shown["lines"]:
                del line["line_no"]
            invoices[invoice.key] = shown
        db.session.remove()
    return stats, invoices


def test_an_exported_pool_imports_back_into_an_empty_pool_with_the_same_figures(app, client, runner, tmp_path):
    """Import an e-tax export, export the pool from the page's 导出 Excel, empty the pool, import
    the exported workbook: the pool's figures and every invoice with its lines are as before."""
    from sqlalchemy import delete

    from tests.workbook_builder import build_workbook
    from webapp.extensions import db
    from webapp.models import Invoice, InvoiceLine, InvoiceMonthSummary

    source = tmp_path / "etax.xlsx"
    build_workbook(source, n_random=160, seed=3)
    first = cli_json(runner, "import-file", "--tax-id", DEMO_TAX_ID, "--file", str(source), "--as", "caiwu", "--wait")
    assert first["status"] == "succeeded"
    before_stats, before = _pool_snapshot(app, runner)
    assert before_stats["red"] > 0 and before_stats["lines"] > before_stats["invoices"]

    login(client)
    response = client.get(f"/pool/export?tax_id={DEMO_TAX_ID}")
    assert response.status_code == 200
    exported = tmp_path / "pool.xlsx"
    exported.write_bytes(response.data)
    basics = CalamineWorkbook.from_path(str(exported)).get_sheet_by_name("发票基础信息").to_python()
    red_rows = [row for row in basics[1:-1] if row[COL["是否正数发票"]] == "否"]
    assert red_rows and {row[COL["增值税用途状态"]] for row in red_rows} == {"不适用"}
    voided = [row for row in basics[1:-1] if row[COL["是否正数发票"]] == "是" and row[COL["发票状态"]] == "已作废"]
    others = [row for row in basics[1:-1] if row[COL["是否正数发票"]] == "是" and row[COL["发票状态"]] != "已作废"]
    assert voided and {row[COL["增值税用途状态"]] for row in voided} == {"不适用"}
    assert {row[COL["增值税用途状态"]] for row in others} == {"未获取"}
    assert basics[-1][0] == "合计行" and f"{basics[-1][COL['金额']]:.2f}" == before_stats["amount"]

    with app.app_context():
        db.session.execute(delete(InvoiceLine))
        db.session.execute(delete(Invoice))
        db.session.execute(delete(InvoiceMonthSummary))  # an empty pool keeps no per-month figures either
        db.session.commit()
        db.session.remove()
    assert cli_json(runner, "pool", "stats", "--tax-id", DEMO_TAX_ID)["invoices"] == 0
    again = cli_json(runner, "import-file", "--tax-id", DEMO_TAX_ID, "--file", str(exported), "--as", "caiwu", "--wait")
    assert again["status"] == "succeeded", again
    after_stats, after = _pool_snapshot(app, runner)
    assert after_stats == before_stats
    for key, invoice in before.items():
        assert after[key] == invoice, key


def test_a_large_streamed_export_leaves_in_small_parts(app, client):
    """The page's export keeps memory flat however large: every part handed to the server is small,
    the 发票基础信息 sheet included (spooled while 信息汇总表 streams, then copied in a MB at a time)."""
    from tests.bench import _load, _synthetic_pool

    with app.app_context():
        _load(_synthetic_pool(8_000, [DEMO_TAX_ID]))
    login(client)
    response = client.get(f"/pool/export?tax_id={DEMO_TAX_ID}")
    parts = [part for part in response.response if part]
    response.close()
    sizes = sorted(map(len, parts))
    assert len(CalamineWorkbook.from_filelike(io.BytesIO(b"".join(parts))).get_sheet_by_name("发票基础信息")
               .to_python()) == 8_000 + 2
    assert sizes[-1] < sum(sizes) / 4, sizes[-5:]  # before the copy went a MB at a time: 700 KB of 1.6 MB
