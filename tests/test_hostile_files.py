"""Hostile files (docs/etax-export.md, What refuses a file): a corpus of files built to hurt the
importer. Each one gets a clear Chinese error and writes nothing, the parse stays under 400 MB, and
the worker goes on working.
Also property-based tests (hypothesis) of the parser's cell readers."""
from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import zipfile
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import Workbook
from sqlalchemy import func, select

from channels.etax import cells
from channels.etax.cells import BadCell
from channels.etax.container import MAX_UPLOAD_BYTES
from tests.workbook_builder import BASIC_SHEET, DETAIL_SHEET, TAX_ID, build_workbook, digital_invoice, make_line
from webapp.extensions import db
from webapp.models import Batch, Invoice, InvoiceLine

from .conftest import ROOT, SAMPLES, login
from .test_etax_file import _patched_copy, understated_bomb

PEAK_LIMIT_MB = 400
DN = "24900123400000000901"


def _good(path: Path, **cells) -> Path:
    build_workbook(path, [digital_invoice(DN, [make_line("*供电*电力", "10.00")], **cells)])
    return path


def _with_zip_flag(source: Path, target: Path) -> None:
    """The same zip with every entry marked encrypted (general purpose flag bit 0)."""
    data = bytearray(source.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (at := data.find(signature, start)) >= 0:
            data[at + offset] |= 0x01
            start = at + 4
    target.write_bytes(bytes(data))


def _classic_bomb(path: Path) -> None:
    """Both sheet names, and a sheet declaring (truthfully) 64 MB of zeros in a few KB."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/workbook.xml", '<workbook><sheets><sheet name="信息汇总表" sheetId="1"/>'
                                            '<sheet name="发票基础信息" sheetId="2"/></sheets></workbook>')
        with archive.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
            for _ in range(64):
                sheet.write(b"\0" * (1 << 20))


def _formulas(path: Path) -> None:
    """金额 and 税额 as formulas whose values were never calculated (no cached value)."""
    _good(path, basic_cells={"金额": "=SUM(J3:J9)", "税额": "=J2*0.13"})


def _blank_rows(path: Path) -> None:
    """The two headers and 100,000 rows of empty cells, no data."""
    workbook = Workbook(write_only=True)
    for name, header in ((DETAIL_SHEET,
                          ["发票代码", "发票号码", "数电发票号码", "货物或应税劳务名称", "金额", "税率", "税额"]),
                         (BASIC_SHEET,
                          ["发票代码", "发票号码", "数电发票号码", "销方识别号", "开票日期", "金额", "税额",
                                        "发票票种", "发票状态", "是否正数发票"])):
        sheet = workbook.create_sheet(name)
        sheet.append(header)
        for _ in range(100_000):
            sheet.append(["", "", ""])
    workbook.save(path)


def _far_cell(path: Path) -> None:
    base = _good(path.with_name("base-far.xlsx"))
    stray = b'<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>x</t></is></c></row></sheetData>'
    _patched_copy(base, path, "xl/worksheets/sheet2.xml", lambda xml: xml.replace(b"</sheetData>", stray))


def _invalid(path: Path) -> None:
    build_workbook(path, [
        digital_invoice(DN, [make_line("*供电*电力", "10.00")], basic_cells={"开票日期": "2024-13-45 25:61:00"}),
        digital_invoice("24900123400000000902", [make_line("*供电*电力", "10.00")], basic_cells={"金额": "壹拾元"}),
        digital_invoice("24900123400000000903", [make_line("*供电*电力", "10.00")], line_cells={"数量": "1e99999x"}),
    ])


def _duplicates(path: Path) -> None:
    line = [make_line("*供电*电力", "10.00")]
    build_workbook(path, [digital_invoice(DN, line), digital_invoice(DN, line)])


def _huge_strings(path: Path) -> None:
    _good(path, buyer_name="名" * 32_000, remark="备" * 2_000_000)


# name -> (how to build it, what the user is told)
CORPUS = {
    "empty": (lambda p: p.write_bytes(b""), "文件为空"),
    "not-xlsx": (lambda p: p.write_text("序号,发票代码\n1,2\n", encoding="utf-8"), "文件不是有效的 xlsx 工作簿"),
    "truncated": (lambda p: p.write_bytes(SAMPLES.joinpath("etax-export-2024.xlsx").read_bytes()[:40_000]),
                  "文件已损坏"),
    "encrypted-ole": (lambda p: p.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(4096)), "带密码"),
    "encrypted-zip": (lambda p: _with_zip_flag(_good(p.with_name("base-enc.xlsx")), p), "文件已加密"),
    "wrong-layout": (lambda p: build_workbook(p, [], sheets=("Sheet1",)), "文件缺少工作表"),
    "missing-columns": (lambda p: build_workbook(p, [], drop_columns=("金额", "开票日期")),
                        "缺少列 “开票日期”、“金额”"),
    "wrong-seller": (lambda p: _good(p, seller_tax_id="91440300MA5FAKE00X"), "与所选企业 91330100MA2H4K7Q1X 不一致"),
    "over-10mb": (lambda p: p.write_bytes(b"PK\x03\x04" + bytes(MAX_UPLOAD_BYTES + 10)), "上限"),
    "classic-bomb": (_classic_bomb, "压缩炸弹"),
    "understated-bomb": (lambda p: understated_bomb(p, 300 << 20), "实际大小超过其声明大小"),
    "far-corner": (_far_cell, "单元格 XFD1048576 远在数据区域之外"),
    "formulas-no-values": (_formulas, "“金额”为空"),
    "100k-blank-rows": (_blank_rows, "文件中没有发票"),
    "invalid-dates-amounts": (_invalid, "文件中有 3 处无法读取"),
    "duplicates": (_duplicates, f"重复：发票 {DN} 已在第 2 行出现"),
    "huge-strings": (_huge_strings, "“购买方名称”过长：32000 个字符"),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    files = {}
    for name, (build, _) in CORPUS.items():
        files[name] = folder / f"{name}.xlsx"
        build(files[name])
    return files


def _is_clear_chinese(message: str) -> bool:
    """Chinese, and nothing a finance user cannot read (no exception names, no English sentences)."""
    return bool(re.search(r"[\u4e00-\u9fff]{4}", message)) and not re.search(r"Error|Exception|Traceback|errno",
                                                                             message)


PEAK_SCRIPT = """
import sys, json
sys.path.insert(0, {root!r})
from channels.etax.parser import check_upload, parse_workbook
from channels.records import SourceRejected
from jobs.staging import field_limits
message = None
try:
    check_upload(sys.argv[1])  # as the dialog receives it
    parse_workbook(sys.argv[1], {tax_id!r}, limits=field_limits())
except SourceRejected as exc:
    message = str(exc)
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))  # this process's own peak
print(json.dumps({{"message": message, "peak_mb": int(hwm.split()[1]) / 1024}}))
"""


def test_every_hostile_file_gets_a_clear_chinese_error_within_400_mb(corpus):
    """What the upload check and the parse job do with each file, in a process of its own, so
    its peak memory is that of this file alone."""
    script = PEAK_SCRIPT.format(root=str(ROOT), tax_id=TAX_ID)
    peaks = {}
    for name, path in corpus.items():
        done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (name, done.stderr[-2000:])
        result = json.loads(done.stdout.strip().splitlines()[-1])
        peaks[name] = round(result["peak_mb"])
        assert result["message"] and CORPUS[name][1] in result["message"], (name, result["message"])
        assert _is_clear_chinese(result["message"]), (name, result["message"])
    print("peak MB per hostile file:", peaks)
    assert max(peaks.values()) < PEAK_LIMIT_MB, peaks


def test_hostile_uploads_write_nothing_and_the_worker_works_on(client, app, work, corpus):
    """Each file through the import dialog: refused there, or its batch fails with the reason;
    nothing reaches the pool; then the same worker imports a good file."""
    login(client)
    refused = {}
    for name, path in corpus.items():
        response = client.post("/batches/import", data={
            "data_type": "invoices", "method": "file", "tax_ids": TAX_ID,
            "file": (io.BytesIO(path.read_bytes()), path.name),
        }, headers={"HX-Request": "true"}, content_type="multipart/form-data")
        assert response.status_code in (200, 204), name
        if response.status_code == 200:
            refused[name] = response.text
    work()
    with app.app_context():
        batches = {b.file_name.removesuffix(".xlsx"): b for b in db.session.scalars(select(Batch))}
        for name, (_, told) in CORPUS.items():
            shown = refused.get(name) or batches[name].error
            assert told in shown and _is_clear_chinese(shown), (name, shown)
            if name in batches:
                assert batches[name].status == "failed", name
        assert db.session.scalar(select(func.count()).select_from(Invoice)) == 0
        assert db.session.scalar(select(func.count()).select_from(InvoiceLine)) == 0
        db.session.remove()
    assert {"empty", "over-10mb", "classic-bomb", "understated-bomb", "far-corner", "wrong-seller"} <= set(refused)
    response = client.post("/batches/import", data={
        "data_type": "invoices", "method": "file", "tax_ids": TAX_ID,
        "file": (io.BytesIO(SAMPLES.joinpath("etax-export-2023-old-header.xlsx").read_bytes()), "good.xlsx"),
    }, headers={"HX-Request": "true"}, content_type="multipart/form-data")
    assert response.status_code == 204
    work()
    with app.app_context():
        good = db.session.scalar(select(Batch).filter_by(file_name="good.xlsx"))
        assert good.status == "succeeded" and good.success == 124


# --- property-based tests of the cell readers ------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e14, max_value=1e14)
any_cell = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40),
                     st.datetimes(min_value=datetime(1900, 1, 1)))


@settings(max_examples=300, deadline=None)
@given(any_cell)
def test_every_cell_reader_refuses_with_bad_cell_or_reads(cell):
    """Whatever a cell holds, a reader answers a value or a BadCell for the user: never another error."""
    for reader in (lambda v: cells.as_money(v, "金额"), lambda v: cells.as_money_or_none(v, "价税合计"),
                   lambda v: cells.as_decimal(v, "数量"), lambda v: cells.as_id(v, "发票号码"),
                   cells.as_issued_at, cells.as_rate, cells.as_red, cells.as_text, cells.as_kind):
        try:
            reader(cell)
        except BadCell as bad:
            assert bad.why and bad.column
        except (ValueError, TypeError) as exc:  # only these readers' documented inputs may reach here
            pytest.fail(f"{reader} raised {exc!r} for {cell!r}")


@settings(max_examples=500, deadline=None)
@given(finite)
def test_money_is_the_written_number_rounded_half_up_to_the_cent(value):
    got = cells.as_money(value, "金额")
    assert got == Decimal(repr(value)).quantize(Decimal("0.01"), ROUND_HALF_UP)
    assert got.as_tuple().exponent == -2


@settings(max_examples=300, deadline=None)
@given(st.decimals(allow_nan=False, allow_infinity=False, min_value=Decimal("-1e14"), max_value=Decimal("1e14"),
                   places=2))
def test_money_text_and_number_cells_agree(amount):
    as_text = cells.as_money(f"{amount:.2f}", "金额")
    assert as_text == amount
    if abs(amount) < Decimal("1e13"):  # up to 15 significant digits a float holds the amount exactly
        assert cells.as_money(float(amount), "金额") == amount


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789", min_size=1, max_size=20))
def test_ids_keep_every_digit_as_text(digits):
    assert cells.as_id(digits, "发票号码") == digits
    number = int(digits)
    if number < 2**53:
        assert cells.as_id(float(number), "发票号码") == str(number)


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(1901, 1, 1), max_value=datetime(2099, 12, 31)))
def test_issue_dates_read_alike_as_text_and_as_serial_number(moment):
    moment = moment.replace(microsecond=0)
    assert cells.as_issued_at(moment.strftime("%Y-%m-%d %H:%M:%S")) == moment
    serial = (moment - datetime(1899, 12, 30)).total_seconds() / 86400
    assert cells.as_issued_at(serial) == moment


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value=0, max_value=1, places=3))
def test_rates_written_as_fractions_become_percent(fraction):
    rate = cells.as_rate(float(fraction))
    assert rate.endswith("%") and Decimal(rate[:-1]) == (fraction * 100).normalize() or fraction == 1
