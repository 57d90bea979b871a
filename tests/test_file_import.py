"""E-tax file import end to end: CLI and dialog, real worker, real Redis, real database."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select

from tests.queue_support import job_state
from tests.workbook_builder import (
    BASIC_SHEET,
    DETAIL_SHEET,
    blank_voided_invoice,
    build_workbook,
    digital_invoice,
    make_line,
    shape_corpus,
)
from webapp.extensions import db
from webapp.models import Batch, Invoice, InvoiceLine

from .conftest import DEMO_TAX_ID, SAMPLES, cli_json, login

SAMPLE_FILES = ["etax-export-2024.xlsx", "etax-export-2023-old-header.xlsx"]
FIGURES = ("invoices", "lines", "blue", "red", "voided", "amount", "tax")


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_sample_import_matches_expected_and_reimport_changes_nothing(runner, name):
    expected = json.loads((SAMPLES / name.replace(".xlsx", ".expected.json")).read_text())
    batch = cli_json(runner, "import-file", "--tax-id", DEMO_TAX_ID, "--file", str(SAMPLES / name), "--as", "caiwu",
                     "--wait")
    assert batch["status"] == "succeeded"
    assert batch["total"] == batch["success"] == expected["invoices"]
    assert [s["period"] for s in batch["subtasks"]] == expected["months"]
    assert set(batch["kinds"]) == set(expected["by_type"])
    stats = cli_json(runner, "pool", "stats", "--tax-id", DEMO_TAX_ID)
    assert {k: stats[k] for k in FIGURES} == {k: expected[k] for k in FIGURES}
    assert stats["by_type"] == expected["by_type"]
    assert stats["months"] == expected["months"]
    for red, blue in expected["red_links"].items():
        assert cli_json(runner, "pool", "show", red)["red_of"] == blue

    again = cli_json(runner, "import-file", "--tax-id", DEMO_TAX_ID, "--file", str(SAMPLES / name), "--as", "caiwu",
                     "--wait")
    assert again["status"] == "succeeded" and again["batch_no"] != batch["batch_no"]
    assert cli_json(runner, "pool", "stats", "--tax-id", DEMO_TAX_ID) == stats


def test_batch_show_prints_the_same_batch(runner):
    batch = cli_json(runner, "import-file", "--tax-id", DEMO_TAX_ID, "--file", str(SAMPLES / SAMPLE_FILES[0]), "--as",
                     "caiwu", "--wait")
    shown = cli_json(runner, "batch", "show", batch["batch_no"])
    assert shown["status"] == "succeeded" and shown["subtasks"] == batch["subtasks"]


def test_import_refuses_a_tax_id_the_user_is_not_granted(runner, app):
    cli_json(runner, "enterprise", "add", "--tax-id", "91110000MA00000001", "--name", "别家公司")
    result = runner.invoke(args=["import-file", "--tax-id", "91110000MA00000001", "--file",
                                 str(SAMPLES / SAMPLE_FILES[0]), "--as", "caiwu"])
    assert result.exit_code != 0
    assert "无权访问税号 91110000MA00000001" in result.stderr
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Batch)) == 0


def test_foreign_seller_is_refused_before_any_batch(runner, app):
    """Another company's export is refused as it is received (README, Command line): no failed batch,
    nothing written."""
    cli_json(runner, "enterprise", "add", "--tax-id", "91110000MA00000001", "--name", "别家公司")
    cli_json(runner, "user", "add", "zhang", "--password", "secret123", "--grant", "91110000MA00000001")
    result = runner.invoke(args=["import-file", "--tax-id", "91110000MA00000001", "--file",
                                 str(SAMPLES / SAMPLE_FILES[0]), "--as", "zhang", "--wait"])
    assert result.exit_code != 0
    assert "文件中的销方税号 91330100MA2H4K7Q1X 与所选企业 91110000MA00000001 不一致" in result.stderr
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Batch)) == 0
        assert db.session.scalar(select(func.count()).select_from(Invoice)) == 0


def test_not_an_xlsx_is_refused_before_any_batch(runner, app, tmp_path):
    bad = tmp_path / "invoices.xlsx"
    bad.write_text("发票号码,金额\n1,2\n", encoding="utf-8")
    result = runner.invoke(args=["import-file", "--tax-id", DEMO_TAX_ID, "--file", str(bad), "--as", "caiwu"])
    assert result.exit_code != 0 and "xlsx" in result.stderr
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Batch)) == 0


def test_error_goods_setting_decides_which_lines_are_dropped(runner, app):
    """With the filter emptied of 详见销货清单, the summary lines stay and the count rises."""
    from webapp.accounts.settings import ERROR_GOODS_KEY, set_setting
    from webapp.transactions import write_transaction

    with app.app_context():
        with write_transaction():
            set_setting(ERROR_GOODS_KEY, "原价合计,折扣额合计")
    expected = json.loads((SAMPLES / "etax-export-2024.expected.json").read_text())
    batch = cli_json(runner, "import-file", "--tax-id", DEMO_TAX_ID, "--file", str(SAMPLES / SAMPLE_FILES[0]), "--as",
                     "caiwu", "--wait")
    stats = cli_json(runner, "pool", "stats", "--tax-id", DEMO_TAX_ID)
    assert batch["filtered_lines"] == 0
    assert stats["lines"] == expected["lines"] + expected["listed_invoices"]


def test_failed_month_rolls_back_whole_and_retry_completes(runner, app, work):
    """A month whose staged data vanished fails alone with a reason; 重试 after restoring it succeeds."""
    from webapp.batches import retry, staging_dir

    batch_json = cli_json(runner, "import-file", "--tax-id", DEMO_TAX_ID, "--file", str(SAMPLES / SAMPLE_FILES[0]),
                          "--as", "caiwu")
    with app.app_context():
        from jobs.tasks import parse_upload

        batch = db.session.scalar(select(Batch).filter_by(batch_no=batch_json["batch_no"]))
        parse_upload(batch.id)  # parse in this process, so we can damage one month before the worker runs
        folder = staging_dir(batch)
        keep = folder.parent / "keep.staged"
        shutil.move(folder / "2024-03.staged", keep)
    work()
    shown = cli_json(runner, "batch", "show", batch_json["batch_no"])
    march = next(s for s in shown["subtasks"] if s["period"] == "2024-03")
    assert shown["status"] == "partial"
    assert march["status"] == "failed" and "重新导入" in march["error"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Invoice).where(Invoice.month == "2024-03")) == 0
        shutil.move(keep, folder / "2024-03.staged")
        batch = db.session.scalar(select(Batch).filter_by(batch_no=batch_json["batch_no"]))
        assert retry([batch]) == {"subtasks": 1, "parses": 0}
    work()
    shown = cli_json(runner, "batch", "show", batch_json["batch_no"])
    assert shown["status"] == "succeeded" and shown["success"] == shown["total"] == 312


def test_a_month_staged_by_the_version_before_is_saved_and_an_unreadable_one_fails_alone(runner, app, work):
    """Months staged as marshal by the version before the JSON format are still read (the same Python),
    so an import under way across an upgrade goes on; a month no version can read fails alone and asks
    for the file again (docs/deploy.md)."""
    import marshal

    from jobs.staging import read_month
    from webapp.batches import staging_dir

    batch_json = cli_json(runner, "import-file", "--tax-id", DEMO_TAX_ID, "--file", str(SAMPLES / SAMPLE_FILES[0]),
                          "--as", "caiwu")
    with app.app_context():
        from jobs.tasks import parse_upload

        batch = db.session.scalar(select(Batch).filter_by(batch_no=batch_json["batch_no"]))
        parse_upload(batch.id)
        folder = staging_dir(batch)
        old, damaged = sorted(folder.glob("*.staged"))[:2]
        staged = read_month(old)
        old.write_bytes(marshal.dumps([(tuple(header), [tuple(line) for line in lines]) for header, lines in staged]))
        damaged.write_bytes(damaged.read_bytes()[:100])
    work()
    subtasks = {s["period"]: s for s in cli_json(runner, "batch", "show", batch_json["batch_no"])["subtasks"]}
    assert subtasks[old.stem]["status"] == "succeeded" and subtasks[old.stem]["success"] == len(staged)
    assert subtasks[damaged.stem]["status"] == "failed"
    assert "暂存数据无法读取" in subtasks[damaged.stem]["error"] and "重新导入" in subtasks[damaged.stem]["error"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Invoice)
                                 .where(Invoice.month == old.stem)) == len(staged)
        assert db.session.scalar(select(func.count()).select_from(Invoice).where(Invoice.month == damaged.stem)) == 0


def test_dialog_upload_creates_a_batch_the_list_shows(client, app, work):
    login(client)
    with open(SAMPLES / SAMPLE_FILES[0], "rb") as fh:
        response = client.post("/batches/import", data={
            "data_type": "invoices", "method": "file", "tax_ids": DEMO_TAX_ID, "file": (fh, "导出.xlsx"),
        }, headers={"HX-Request": "true"}, content_type="multipart/form-data")
    assert response.status_code == 204 and "/batches?created=" in response.headers["HX-Location"]
    page = client.get("/batches").text
    assert "数据预处理中" in page and "导入电子税局文件" in page and "杭州示例科技有限公司" in page
    work()
    page = client.get("/batches").text
    assert "全部执行成功" in page and ">312<" in page
    assert 'hx-trigger="every 2s"' not in page  # finished rows do not poll


@pytest.mark.parametrize("fields, message", [
    ({"method": "file", "tax_ids": []}, "请选择企业"),
    ({"method": "file", "data_type": "usage"}, "仅支持发票数据"),
    ({"method": "file"}, "请选择从电子税局导出的文件"),
    ({"method": "download", "channel": "leqi", "period_unit": "year", "year": "2025"}, "请选择发票种类"),
    ({"method": "download", "channel": "leqi", "kinds": ["81"], "period_unit": "month", "month_from": "2010-01",
      "month_to": "2010-03"}, "近五年"),
    ({"method": "download", "channel": "leqi", "kinds": ["81"], "period_unit": "month", "month_from": "2024-03",
      "month_to": "2024-02"}, "起始月份不能晚于截止月份"),
    ({"method": "download", "channel": "leqi", "kinds": ["81"], "period_unit": "month", "month_from": "2024-3",
      "month_to": "2024-04"}, "月份格式应为 YYYY-MM"),
    ({"method": "download", "channel": "leqi", "kinds": ["99"], "period_unit": "year", "year": "2025"},
     "发票种类不正确"),
    ({"method": "download", "channel": "fax", "kinds": ["81"], "period_unit": "year", "year": "2025"},
     "请选择下载通道"),
    ({"method": "post"}, "请选择发票数据类型和导入方式"),
    ({"method": "file", "tax_ids": ["91110000MA00000000"]}, "所选企业不在您的权限范围内"),
    ({"method": "file", "tax_ids": [DEMO_TAX_ID, "91110000MA00000000"]}, "导入电子税局文件时只能选择一个企业"),
])
def test_dialog_validation_errors_are_inline_chinese(client, app, fields, message):
    login(client)
    data = {"data_type": "invoices", "tax_ids": [DEMO_TAX_ID], **fields}
    response = client.post("/batches/import", data=data, headers={"HX-Request": "true"},
                           content_type="multipart/form-data")
    assert response.status_code == 200 and message in response.text
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Batch)) == 0


def test_oversize_upload_is_refused_in_chinese(client, app, tmp_path):
    login(client)
    big = tmp_path / "big.xlsx"
    big.write_bytes(b"PK" + b"0" * (10 * 1024 * 1024 + 10))
    with open(big, "rb") as fh:
        response = client.post("/batches/import",
                               data={"data_type": "invoices", "method": "file", "tax_ids": DEMO_TAX_ID,
                                                        "file": (fh, "big.xlsx")}, content_type="multipart/form-data")
    assert "10MB" in response.text
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Batch)) == 0


def test_another_companys_invoice_number_is_never_taken_over(runner, app, tmp_path):
    """A file of company B carrying an invoice number company A already has: B's month fails, A's invoice stays."""
    from tests.workbook_builder import build_workbook, digital_invoice, make_line

    first = cli_json(runner, "import-file", "--tax-id", DEMO_TAX_ID, "--file", str(SAMPLES / SAMPLE_FILES[0]),
                      "--as", "caiwu", "--wait")
    assert first["status"] == "succeeded"
    other = "91110000MA00000001"
    cli_json(runner, "enterprise", "add", "--tax-id", other, "--name", "别家公司")
    cli_json(runner, "user", "add", "zhang", "--password", "secret123", "--grant", other)
    taken = "24144123400000000006"  # an invoice of the demo company in the 2024 sample
    path = tmp_path / "b.xlsx"
    build_workbook(path, [digital_invoice(taken, [make_line("*信息技术服务*运维服务", "100.00")],
                                          "2024-01-05 10:00:00")],
                   tax_id=other, seller_name="别家公司")
    result = runner.invoke(args=["import-file", "--tax-id", other, "--file", str(path), "--as", "zhang", "--wait"])
    batch = json.loads(result.stdout)
    assert result.exit_code != 0 and batch["status"] == "failed"
    assert taken in batch["subtasks"][0]["error"] and DEMO_TAX_ID in batch["subtasks"][0]["error"]
    shown = cli_json(runner, "pool", "show", taken)
    assert shown["tax_id"] == DEMO_TAX_ID and shown["lines"]


# --- the file import path (docs/etax-export.md) ------------------------------------------------------


def _upload(client, *files, tax_id=DEMO_TAX_ID, htmx=True):
    """Submit the import dialog with files (path or (bytes, name)) in the order given."""
    payload = []
    for item in files:
        content, name = item if isinstance(item, tuple) else (item.read_bytes(), item.name)
        payload.append((io.BytesIO(content), name))
    headers = {"HX-Request": "true"} if htmx else {}
    data = {"data_type": "invoices", "method": "file", "file": payload, **({"tax_ids": tax_id} if tax_id else {})}
    return client.post("/batches/import", data=data, headers=headers, content_type="multipart/form-data")


def _batches(app) -> list[Batch]:
    with app.app_context():
        batches = list(db.session.scalars(select(Batch).order_by(Batch.id)))
        db.session.expunge_all()
        return batches


def _count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def test_an_input_export_is_answered_in_the_dialog_as_one_and_no_batch_is_made(client, app, tmp_path):
    """A 全量发票查询 export of invoices the company received (it is the buyer on every row): the
    dialog says so and that the pool takes output invoices only; nothing is created."""
    received = [digital_invoice(f"2444712340000000019{n}", [make_line("*办公用品*纸张", "100.00")],
                                seller_tax_id="91440300MA5FAKE00X", seller_name="深圳示例供应商有限公司",
                                buyer_tax_id=DEMO_TAX_ID) for n in range(3)]
    build_workbook(tmp_path / "进项.xlsx", received)
    login(client)
    answer = _upload(client, tmp_path / "进项.xlsx").text
    assert f"这是进项发票的导出文件：所选企业 {DEMO_TAX_ID} 在每一行都是购买方" in answer
    assert "发票池只收所选企业开具的销项发票" in answer
    assert _batches(app) == [] and _count(app, Invoice) == 0


def test_blank_voided_invoice_counts_as_voided_without_a_line(runner, app, tmp_path):
    """A blank-voided row never refuses the file (docs/etax-export.md, Values); the pool keeps the invoice."""
    path = tmp_path / "2021.xlsx"
    expected = build_workbook(path, [blank_voided_invoice("032002100104", "01234567", "2021-03-05 09:12:00"),
                                     *shape_corpus(2021)[1:]], year=2021)
    batch = cli_json(runner, "import-file", "--tax-id", DEMO_TAX_ID, "--file", str(path), "--as", "caiwu", "--wait")
    assert batch["status"] == "succeeded" and batch["total"] == batch["success"] == expected["invoices"]
    stats = cli_json(runner, "pool", "stats", "--tax-id", DEMO_TAX_ID)
    assert {k: stats[k] for k in FIGURES} == {k: expected[k] for k in FIGURES}
    shown = cli_json(runner, "pool", "show", "032002100104-01234567")
    assert shown["status"] == "已作废" and shown["lines"] == [] and shown["amount"] == "0.00"


def test_bad_rows_refuse_the_file_in_the_dialog_with_its_error_list_and_no_batch(client, app, tmp_path):
    """(docs/etax-export.md, What refuses a file) A file with unreadable rows is answered where it was
    given, like any refused file: the dialog says 未导入 with the count and offers the 错误清单; no batch is created."""
    path = tmp_path / "bad.xlsx"
    build_workbook(path, [digital_invoice("24900123400000000101", [make_line("*供电*电力", "1.00")],
                                          basic_cells={"开票日期": "2024-02-30"}),
                          digital_invoice("24900123400000000102", [make_line("*供电*电力", "2.00")],
                                          line_cells={"税额": "-十元"})])
    login(client)
    response = _upload(client, path)
    assert response.status_code == 200 and response.headers["HX-Retarget"] == "#import-errors"
    assert "所选文件均未导入" in response.text
    assert "bad.xlsx</strong>：文件中有 2 处无法读取，未导入任何数据" in response.text
    assert "下载错误清单" in response.text
    assert _count(app, Batch) == 0 and _count(app, Invoice) == 0 and _count(app, InvoiceLine) == 0
    link = re.search(r'href="(/batches/refused/[0-9a-f]{32}/errors\.xlsx)"', response.text).group(1)
    download = client.get(link)
    assert download.status_code == 200 and "attachment" in download.headers["Content-Disposition"]
    # 错误清单_bad
    assert download.headers["Content-Disposition"].endswith("%E9%94%99%E8%AF%AF%E6%B8%85%E5%8D%95_bad.xlsx")
    rows = list(load_workbook(io.BytesIO(download.data)).active.iter_rows(values_only=True))
    assert rows == [("工作表", "行号", "列", "单元格内容", "问题"),
                    (BASIC_SHEET, 2, "开票日期", "2024-02-30", "不是日期"),
                    (DETAIL_SHEET, 3, "税额", "-十元", "不是数字")]  # a text cell, shown as it came
    client.get("/logout")
    login(client, "admin", "admin123")
    assert client.get(link).status_code == 404  # the uploader's own list: nobody else's to read


def test_a_refused_files_error_list_is_kept_a_day(client, app, tmp_path):
    """The 错误清单 of a refused file is kept for a day, then answered 404 and removed by the daily clean-up."""
    from webapp.batches.refused import remove_expired

    path = tmp_path / "bad.xlsx"
    build_workbook(path, [digital_invoice("24900123400000000111", [make_line("*供电*电力", "2.00")],
                                          line_cells={"金额": "两元"})])
    login(client)
    link = re.search(r'href="([^"]+errors\.xlsx)"', _upload(client, path).text).group(1)
    assert client.get(link).status_code == 200
    kept = list((Path(app.config["DATA_DIR"]) / "refused").glob("*.json"))
    assert len(kept) == 1
    app.config["CLOCK_NOW"] = datetime.now() + timedelta(days=1, minutes=1)
    assert client.get(link).status_code == 404
    with app.app_context():
        os.utime(kept[0], (0, 0))
        assert remove_expired(datetime.now()) == 1
    assert not kept[0].exists()


def test_several_files_each_answered_a_bad_rows_refusal_beside_accepted_files(client, app, work, tmp_path):
    """导入结果 lists each file: the good ones 已接收 with their batches, the bad-rows one 未导入 with its 错误清单."""
    bad = tmp_path / "bad.xlsx"
    build_workbook(bad, [digital_invoice("24900123400000000121", [make_line("*供电*电力", "1.00")],
                                         basic_cells={"开票日期": "上周三"})])
    login(client)
    response = _upload(client, SAMPLES / "etax-export-2023-old-header.xlsx", bad, SAMPLES / "etax-export-2024.xlsx")
    page = response.text
    assert page.count("已接收") == 2 and "未导入：工作表“发票基础信息”第 2 行“开票日期”不是日期" in page
    assert page.count("下载错误清单") == 1
    assert [b.file_name for b in _batches(app)] == ["etax-export-2023-old-header.xlsx", "etax-export-2024.xlsx"]
    work()
    assert [b.status for b in _batches(app)] == ["succeeded", "succeeded"]


def _refused_by_cli(runner, app, path) -> tuple[dict, str]:
    """`import-file` of a file with unreadable rows: it fails, printing them, and makes no batch."""
    result = runner.invoke(args=["import-file", "--tax-id", DEMO_TAX_ID, "--file", str(path), "--as", "caiwu",
                                 "--wait"])
    assert result.exit_code != 0
    assert _count(app, Batch) == 0 and _count(app, Invoice) == 0
    return json.loads(result.stdout), result.stderr


def test_a_buyer_name_longer_than_the_pool_keeps_is_named_not_a_database_error(runner, app, tmp_path):
    """The same clear refusal on SQLite and PostgreSQL, never 内部错误：DataError."""
    path = tmp_path / "long.xlsx"
    build_workbook(path, [digital_invoice("24900123400000000201", [make_line("*供电*电力", "1.00")],
                                          buyer_name="某" * 32000)])
    refusal, stderr = _refused_by_cli(runner, app, path)
    assert f"工作表“{BASIC_SHEET}”第 2 行“购买方名称”过长：32000 个字符，最多 200 个" in stderr
    assert refusal["error_code"] == "file_refused" and refusal["bad_row_total"] == 1
    assert refusal["bad_rows"][0]["column"] == "购买方名称"
    assert "DataError" not in refusal["error"]


def test_a_blue_invoice_with_a_negative_amount_is_imported_with_a_warning(client, app, work, tmp_path):
    path = tmp_path / "negative.xlsx"
    build_workbook(path, [digital_invoice("24900123400000000301", [make_line("*供电*电力", "-30.00")])])
    login(client)
    _upload(client, path)
    work()
    [batch] = _batches(app)
    assert batch.status == "succeeded" and "金额为负数" in batch.note and "24900123400000000301" in batch.note
    assert "金额为负数" in client.get(f"/batches/{batch.batch_no}").text
    assert client.get(f"/batches/{batch.batch_no}/errors.xlsx").status_code == 404  # nothing to list


def test_a_goods_name_formula_with_no_value_is_unreadable_and_listed(runner, app, tmp_path):
    """A formula in 货物或应税劳务名称 that was never calculated reads as empty; the file is
    refused with that cell in the 错误清单, not imported with an empty goods name."""
    path = tmp_path / "formula.xlsx"
    build_workbook(path, [digital_invoice("24900123400000000501",
                                          [make_line('=CONCATENATE("*供电*","电力")', "30.00")]),
                          digital_invoice("24900123400000000502", [make_line("*供电*电力", "40.00")])])
    refusal, stderr = _refused_by_cli(runner, app, path)
    assert f"工作表“{DETAIL_SHEET}”第 2 行“货物或应税劳务名称”为空" in stderr
    assert refusal["file_name"] == "formula.xlsx"
    assert [(r["sheet"], r["row"], r["column"])
            for r in refusal["bad_rows"]] == [(DETAIL_SHEET, 2, "货物或应税劳务名称")]


def test_a_date_after_today_or_before_vat_existed_is_imported_with_a_warning(client, app, work, tmp_path):
    """(docs/etax-export.md, Values) An invoice dated 2099 (or 1990) imports as written, and the batch says so."""
    path = tmp_path / "dates.xlsx"
    build_workbook(path, [digital_invoice("24900123400000000401", [make_line("*供电*电力", "30.00")],
                                          "2099-03-01 10:00:00"),
                          digital_invoice("24900123400000000402", [make_line("*供电*电力", "40.00")],
                                          "1990-03-01 10:00:00"),
                          digital_invoice("24900123400000000403", [make_line("*供电*电力", "50.00")])])
    login(client)
    _upload(client, path)
    work()
    [batch] = _batches(app)
    assert batch.status == "succeeded" and _count(app, Invoice) == 3
    page = client.get(f"/batches/{batch.batch_no}").text
    assert "开票日期晚于今天" in page and "24900123400000000401" in page
    assert "开票日期早于 1994-01-01" in page and "24900123400000000402" in page
    assert "24900123400000000403" not in batch.note


@pytest.mark.parametrize("name, message", [
    ("发" * 256 + ".xlsx", "文件名过长（261 个字符）"),
    ("bad\x00name.xlsx", "文件名含有无法识别的字符"),
])
def test_file_names_that_cannot_be_kept_get_a_clear_error(client, app, name, message):
    """No HTTP 500 and no reset form; the error area alone is swapped."""
    login(client)
    response = _upload(client, (SAMPLES.joinpath("etax-export-2023-old-header.xlsx").read_bytes(), name))
    assert response.status_code == 200 and message in response.text
    assert response.headers["HX-Retarget"] == "#import-errors"
    assert 'type="file"' not in response.text  # the file input is left as the user chose it
    assert _count(app, Batch) == 0


def test_a_file_name_not_valid_utf8_in_the_raw_request(client, app):
    login(client)
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"data_type\"\r\n\r\ninvoices\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"method\"\r\n\r\nfile\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"tax_ids\"\r\n\r\n{DEMO_TAX_ID}\r\n"
            f"--{boundary}\r\n").encode() \
        + b'Content-Disposition: form-data; name="file"; filename="\xb7\xa2\xc6\xb1.xlsx"\r\n' \
        + b"Content-Type: application/octet-stream\r\n\r\n" + SAMPLES.joinpath("etax-export-2024.xlsx").read_bytes() \
        + f"\r\n--{boundary}--\r\n".encode()
    response = client.post("/batches/import", data=body, headers={"HX-Request": "true"},
                           content_type=f"multipart/form-data; boundary={boundary}")
    assert response.status_code == 200 and "文件名含有无法识别的字符" in response.text
    assert _count(app, Batch) == 0


def test_validation_error_swaps_only_the_error_area(client, app):
    """A validation error keeps the chosen files (docs/rules.md, 导入 dialog): only #import-errors is replaced."""
    login(client)
    response = _upload(client, SAMPLES / "etax-export-2024.xlsx", tax_id=None)
    assert response.status_code == 200 and "请选择企业" in response.text
    assert response.headers["HX-Retarget"] == "#import-errors" and response.headers["HX-Reswap"] == "innerHTML"
    assert "<form" not in response.text


def test_several_files_become_one_batch_each_refused_or_accepted_on_its_own(client, app, work, tmp_path):
    broken = tmp_path / "broken.xlsx"
    broken.write_text("发票号码,金额\n1,2\n", encoding="utf-8")
    login(client)
    response = _upload(client, SAMPLES / "etax-export-2023-old-header.xlsx", broken, SAMPLES / "etax-export-2024.xlsx")
    assert response.status_code == 200
    page = response.text
    assert page.count("已接收") == 2 and "broken.xlsx" in page and "未导入：文件不是有效的 xlsx 工作簿" in page
    batches = _batches(app)
    assert [b.file_name for b in batches] == ["etax-export-2023-old-header.xlsx", "etax-export-2024.xlsx"]
    for batch in batches:
        assert batch.batch_no in page
    work()
    assert [b.status for b in _batches(app)] == ["succeeded", "succeeded"]
    assert _count(app, Invoice) == 312 + 124


def test_all_files_refused_keeps_the_dialog_and_lists_each(client, app, tmp_path):
    first, second = tmp_path / "a.xlsx", tmp_path / "b.xlsx"
    first.write_bytes(b"")
    second.write_text("<html></html>", encoding="utf-8")
    login(client)
    response = _upload(client, first, second)
    assert response.headers["HX-Retarget"] == "#import-errors"
    assert "a.xlsx</strong>：文件为空" in response.text
    assert "b.xlsx</strong>：文件不是有效的 xlsx 工作簿" in response.text
    assert _count(app, Batch) == 0


def test_a_companys_files_run_in_the_order_chosen_so_the_later_file_wins(client, app, work, tmp_path):
    """README, the opening section: two exports holding the same invoice; the pool keeps the later file's data,
    and the second batch starts only once the first has ended."""
    key = "24900123400000000401"
    older, newer = tmp_path / "older.xlsx", tmp_path / "newer.xlsx"
    build_workbook(older,
                   [digital_invoice(key, [make_line("*供电*电力", "100.00")], "2024-06-01 10:00:00",
                                    buyer_name="旧名称"),
                           digital_invoice("24900123400000000402", [make_line("*供电*电力", "5.00")],
                                           "2024-07-01 10:00:00")])
    build_workbook(newer,
                   [digital_invoice(key, [make_line("*供电*电力", "80.00"), make_line("*供电*电力", "20.00", "6%")],
                                           "2024-06-01 10:00:00", buyer_name="新名称", status="已红冲-部分")])
    login(client)
    _upload(client, newer, older)  # chosen in this order: older is the later file
    first, second = _batches(app)
    assert (first.file_name, second.file_name) == ("newer.xlsx", "older.xlsx")
    work()
    first, second = _batches(app)
    assert first.status == second.status == "succeeded"
    with app.app_context():
        invoice = db.session.scalar(select(Invoice).filter_by(key=key))
        assert (invoice.buyer_name, invoice.amount, invoice.status) == ("旧名称", Decimal("100.00"), "正常")
        assert invoice.batch_id == second.id
        assert db.session.scalar(select(func.count()).select_from(InvoiceLine).filter_by(invoice_key=key)) == 1
        first_done = db.session.get(Batch, first.id).finished_at
        second_parsed = min(s.started_at for s in db.session.get(Batch, second.id).subtasks)
        assert second_parsed >= first_done

    # the other order: newer chosen last wins
    _upload(client, older, newer)
    work()
    with app.app_context():
        invoice = db.session.scalar(select(Invoice).filter_by(key=key))
        assert (invoice.buyer_name, invoice.amount, invoice.status) == ("新名称", Decimal("100.00"), "已红冲-部分")
        assert db.session.scalar(select(func.count()).select_from(InvoiceLine).filter_by(invoice_key=key)) == 2


def _unparsed_file_batch(app, path) -> int:
    """A file batch as an older version left it: its upload kept, to be parsed by the batch's parse job."""
    from jobs import queue
    from webapp.batches import new_batch_no, upload_path
    from webapp.clock import now
    from webapp.models import Company, User

    with app.app_context():
        user = db.session.scalar(select(User).filter_by(username="caiwu"))
        company = db.session.scalar(select(Company).filter_by(tax_id=DEMO_TAX_ID))
        batch = Batch(batch_no=new_batch_no(), org_id=user.org_id, company_id=company.id, tax_id=company.tax_id,
                      seller_name=company.name, data_type="invoices", method="file", status="preprocessing",
                      file_name=path.name, created_by_id=user.id, creator_name=user.username, created_at=now())
        db.session.add(batch)
        db.session.commit()
        upload_path(batch).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, upload_path(batch))
        queue.enqueue_parse(batch)
        return batch.id


def test_a_batch_left_unparsed_by_an_older_version_is_parsed_by_its_job(app, work, runner, tmp_path):
    """A file batch created before files were parsed at receipt still runs: its job parses the kept
    upload, stages the months and writes them; one with unreadable rows fails listing them as before."""
    batch_id = _unparsed_file_batch(app, SAMPLES / "etax-export-2024.xlsx")
    bad = tmp_path / "bad.xlsx"
    build_workbook(bad, [digital_invoice("24900123400000000131", [make_line("*供电*电力", "2.00")],
                                         line_cells={"金额": "两元"})])
    bad_id = _unparsed_file_batch(app, bad)
    work()
    with app.app_context():
        batch, refused = db.session.get(Batch, batch_id), db.session.get(Batch, bad_id)
        assert (batch.status, batch.total, batch.success) == ("succeeded", 312, 312)
        assert refused.status == "failed" and "“金额”不是数字" in refused.error and refused.error_rows


def test_a_parse_that_kills_its_process_fails_the_batch_after_bounded_attempts(app, work, tmp_path):
    """A file that slipped past the upload checks (a stray cell at XFD1048576) makes
    the reader allocate past the job's memory limit; the job process dies, the next attempt
    names the cell, and a file that keeps crashing fails after MAX_PARSE_ATTEMPTS — never a loop."""
    from jobs import queue
    from jobs.tasks import MAX_PARSE_ATTEMPTS

    from .test_etax_file import _patched_copy

    good, far = tmp_path / "good.xlsx", tmp_path / "far.xlsx"
    build_workbook(good, [digital_invoice("24900123400000000501", [make_line("*供电*电力", "1.00")])])
    stray = b'<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>x</t></is></c></row></sheetData>'
    _patched_copy(good, far, "xl/worksheets/sheet1.xml", lambda xml: xml.replace(b"</sheetData>", stray))
    batch_id = _unparsed_file_batch(app, far)  # as if the upload check had let it in
    work()  # attempt 1: the work horse dies on the allocation; the worker itself lives on
    with app.app_context():
        batch = db.session.get(Batch, batch_id)
        assert (batch.status, batch.parse_attempts) == ("preprocessing", 1)
        assert job_state(queue.parse_job_id(batch)) == "failed"
        queue.enqueue_parse(batch)  # what the reconciler does for a lost parse
    work()  # attempt 2 runs the upload's thorough checks first, which name the cell
    with app.app_context():
        batch = db.session.get(Batch, batch_id)
        assert batch.status == "failed" and "单元格 XFD1048576 远在数据区域之外" in batch.error
        batch.status, batch.parse_attempts = "preprocessing", MAX_PARSE_ATTEMPTS  # a file that always crashed
        db.session.commit()
        queue.enqueue_parse(batch)
    work()
    with app.app_context():
        batch = db.session.get(Batch, batch_id)
        assert batch.status == "failed" and batch.error_code == "parse_crashed"
        assert batch.error_params == {"times": MAX_PARSE_ATTEMPTS} and "连续 3 次意外中断" in batch.error
        assert batch.parse_attempts == 0  # a 重试 gets its attempts again
    assert _count(app, Invoice) == 0


def test_several_large_files_fit_in_one_request(client, app, tmp_path):
    """Two files of 6 MB each (over 10 MB together) reach the per-file checks, not a request limit."""
    first, second = tmp_path / "2023.xlsx", tmp_path / "2024.xlsx"
    for path in (first, second):
        path.write_bytes(b"PK\x03\x04" + bytes(6 * 1024 * 1024))
    login(client)
    response = _upload(client, first, second)
    assert response.status_code == 200 and "上传内容超过上限" not in response.text
    assert "2023.xlsx</strong>：文件已损坏" in response.text and "2024.xlsx</strong>：文件已损坏" in response.text


def test_a_cli_file_name_that_is_not_utf8_is_refused(runner, app, tmp_path):
    path = tmp_path / "\udcb7\udca2.xlsx"  # bytes that were not UTF-8, as Python names them
    path.write_bytes(SAMPLES.joinpath("etax-export-2023-old-header.xlsx").read_bytes())
    result = runner.invoke(args=["import-file", "--tax-id", DEMO_TAX_ID, "--file", str(path), "--as", "caiwu"])
    assert result.exit_code != 0 and "文件名含有无法识别的字符" in result.stderr
    assert _count(app, Batch) == 0


def _stop_own_job() -> str:
    """A job that asks for itself to be stopped (终止), then gives the command time to arrive."""
    import time

    from rq import get_current_job
    from rq.command import send_stop_job_command

    from jobs.queue import redis_connection

    send_stop_job_command(redis_connection(), get_current_job().id)
    time.sleep(1.5)
    return "ran to its end"


def test_a_stop_request_to_a_job_the_command_runs_itself_leaves_the_command_alive(app):
    """`import-file --wait` runs jobs in its own process: stopping one must not kill that process
    (RQ signals a horse's process group, and there is no horse); the job simply runs to its end."""
    from rq.job import Job

    from jobs.queue import get_queue, redis_connection
    from jobs.worker import make_worker

    with app.app_context():
        job = get_queue().enqueue("tests.test_file_import._stop_own_job")
        make_worker([get_queue()], redis_connection(), quiet=True, fork=False).work(burst=True, logging_level="WARNING")
        job = Job.fetch(job.id, connection=redis_connection())
        assert job.get_status() == "finished" and job.return_value() == "ran to its end"


def _own_pid() -> int:
    """A job answering which process ran it."""
    return os.getpid()


def test_a_command_working_the_queue_itself_runs_its_jobs_in_its_own_process(app):
    """`import-file --wait` with no worker up runs the parse and the month jobs in the command's own
    process, without a fork per job (docs/performance.md, file import): each forked job paid a new
    database connection, and read back from disk the months its parent had just staged in memory."""
    from rq.job import Job

    from jobs.queue import get_queue, redis_connection
    from jobs.worker import make_worker

    with app.app_context():
        job = get_queue().enqueue("tests.test_file_import._own_pid")
        make_worker([get_queue()], redis_connection(), quiet=True, fork=False).work(burst=True, logging_level="WARNING")
        assert Job.fetch(job.id, connection=redis_connection()).return_value() == os.getpid()


def test_a_parse_at_receipt_that_dies_is_a_refusal_and_the_web_process_lives(app, tmp_path):
    """The receipt's parse runs in a child process under the memory cap: a file that slips past the
    upload checks (the guard runs in that child too; here a row of 30,000 cells without references,
    which the reader places one column after another, making a grid of 200,000 × 30,000) ends that
    child only, and the caller gets a refusal in Chinese with nothing staged."""
    from datetime import date

    from channels.records import SourceRejected
    from jobs import staging
    from webapp.batches import staged_manifest

    from .test_etax_file import _patched_copy

    good, far = tmp_path / "good.xlsx", tmp_path / "far.xlsx"
    build_workbook(good, [digital_invoice("24900123400000000601", [make_line("*供电*电力", "1.00")])])
    stray = b'<row r="200000">' + b"<c><v>1</v></c>" * 30_000 + b"</row></sheetData>"
    _patched_copy(good, far, "xl/worksheets/sheet1.xml", lambda xml: xml.replace(b"</sheetData>", stray))
    folder = tmp_path / "staged"
    with pytest.raises(SourceRejected) as refused:
        staging.stage_upload(far, DEMO_TAX_ID, folder, staging.field_limits(), date(2026, 1, 1))
    assert str(refused.value) in (staging.CRASHED_REFUSAL, staging.MEMORY_REFUSAL)
    assert not folder.exists()
    manifest = staging.stage_upload(good, DEMO_TAX_ID, folder, staging.field_limits(), date(2026, 1, 1))
    assert sum(manifest["counts"].values()) == 1 and staged_manifest(folder) == manifest


def test_a_file_batch_terminated_before_its_months_were_made_resumes_on_retry(client, app, work):
    """终止 while a file batch is still 数据预处理中 (here: waiting behind the company's earlier file),
    then 重试: its months staged at receipt are still there, so it runs them, no new upload needed."""
    from webapp.batches import retry, terminate

    login(client)
    _upload(client, SAMPLES / "etax-export-2023-old-header.xlsx", SAMPLES / "etax-export-2024.xlsx")
    with app.app_context():
        first, second = db.session.scalars(select(Batch).order_by(Batch.id)).all()
        assert second.status == "preprocessing"
        assert terminate([second]) == {"batches": 1, "subtasks": 0}
    work()
    with app.app_context():
        second = db.session.scalar(select(Batch).order_by(Batch.id.desc()))
        assert second.status == "terminated"
        assert retry([second]) == {"subtasks": 0, "parses": 1}
    work()
    assert [(b.status, b.success) for b in _batches(app)] == [("succeeded", 124), ("succeeded", 312)]
