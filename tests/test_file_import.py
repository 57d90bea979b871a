"""E-tax file import end to end: CLI and dialog, real worker, real Redis, real database."""
from __future__ import annotations

import json
import shutil

import pytest
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import Batch, Invoice

from .conftest import DEMO_TAX_ID, SAMPLES, login

SAMPLE_FILES = ["etax-export-2024.xlsx", "etax-export-2023-old-header.xlsx"]
FIGURES = ("invoices", "lines", "blue", "red", "voided", "amount", "tax")


def _cli_json(runner, *args):
    result = runner.invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_sample_import_matches_expected_and_reimport_changes_nothing(runner, name):
    expected = json.loads((SAMPLES / name.replace(".xlsx", ".expected.json")).read_text())
    batch = _cli_json(runner, "import-file", "--tax-id", DEMO_TAX_ID, "--file", str(SAMPLES / name), "--as", "caiwu", "--wait")
    assert batch["status"] == "succeeded"
    assert batch["total"] == batch["success"] == expected["invoices"]
    assert [s["period"] for s in batch["subtasks"]] == expected["months"]
    assert set(batch["kinds"]) == set(expected["by_type"])
    stats = _cli_json(runner, "pool", "stats", "--tax-id", DEMO_TAX_ID)
    assert {k: stats[k] for k in FIGURES} == {k: expected[k] for k in FIGURES}
    assert stats["by_type"] == expected["by_type"]
    assert stats["months"] == expected["months"]
    for red, blue in expected["red_links"].items():
        assert _cli_json(runner, "pool", "show", red)["red_of"] == blue

    again = _cli_json(runner, "import-file", "--tax-id", DEMO_TAX_ID, "--file", str(SAMPLES / name), "--as", "caiwu", "--wait")
    assert again["status"] == "succeeded" and again["batch_no"] != batch["batch_no"]
    assert _cli_json(runner, "pool", "stats", "--tax-id", DEMO_TAX_ID) == stats


def test_batch_show_prints_the_same_batch(runner):
    batch = _cli_json(runner, "import-file", "--tax-id", DEMO_TAX_ID, "--file", str(SAMPLES / SAMPLE_FILES[0]), "--as", "caiwu", "--wait")
    shown = _cli_json(runner, "batch", "show", batch["batch_no"])
    assert shown["status"] == "succeeded" and shown["subtasks"] == batch["subtasks"]


def test_import_refuses_a_tax_id_the_user_is_not_granted(runner, app):
    _cli_json(runner, "enterprise", "add", "--tax-id", "91110000MA00000001", "--name", "别家公司")
    result = runner.invoke(args=["import-file", "--tax-id", "91110000MA00000001", "--file", str(SAMPLES / SAMPLE_FILES[0]),
                                 "--as", "caiwu"])
    assert result.exit_code != 0
    assert "无权访问税号 91110000MA00000001" in result.stderr
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Batch)) == 0


def test_foreign_seller_fails_the_batch_and_writes_nothing(runner, app):
    _cli_json(runner, "enterprise", "add", "--tax-id", "91110000MA00000001", "--name", "别家公司")
    _cli_json(runner, "user", "add", "zhang", "--password", "secret123", "--grant", "91110000MA00000001")
    result = runner.invoke(args=["import-file", "--tax-id", "91110000MA00000001", "--file", str(SAMPLES / SAMPLE_FILES[0]),
                                 "--as", "zhang", "--wait"])
    assert result.exit_code != 0
    batch = json.loads(result.stdout)
    assert batch["status"] == "failed" and "91330100MA2H4K7Q1X" in batch["error"] and batch["subtasks"] == []
    with app.app_context():
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
    from webapp.settings import ERROR_GOODS_KEY, set_setting
    from webapp.transactions import write_transaction

    with app.app_context():
        with write_transaction():
            set_setting(ERROR_GOODS_KEY, "原价合计,折扣额合计")
    expected = json.loads((SAMPLES / "etax-export-2024.expected.json").read_text())
    batch = _cli_json(runner, "import-file", "--tax-id", DEMO_TAX_ID, "--file", str(SAMPLES / SAMPLE_FILES[0]), "--as", "caiwu", "--wait")
    stats = _cli_json(runner, "pool", "stats", "--tax-id", DEMO_TAX_ID)
    assert batch["filtered_lines"] == 0
    assert stats["lines"] == expected["lines"] + expected["listed_invoices"]


def test_failed_month_rolls_back_whole_and_retry_completes(runner, app, work):
    """A month whose staged data vanished fails alone with a reason; 重试 after restoring it succeeds."""
    from webapp.batches import retry, staging_dir

    batch_json = _cli_json(runner, "import-file", "--tax-id", DEMO_TAX_ID, "--file", str(SAMPLES / SAMPLE_FILES[0]), "--as", "caiwu")
    with app.app_context():
        from jobs.tasks import parse_upload

        batch = db.session.scalar(select(Batch).filter_by(batch_no=batch_json["batch_no"]))
        parse_upload(batch.id)  # parse in this process, so we can damage one month before the worker runs
        folder = staging_dir(batch)
        keep = folder.parent / "keep.staged"
        shutil.move(folder / "2024-03.staged", keep)
    work()
    shown = _cli_json(runner, "batch", "show", batch_json["batch_no"])
    march = next(s for s in shown["subtasks"] if s["period"] == "2024-03")
    assert shown["status"] == "partial"
    assert march["status"] == "failed" and "重新导入" in march["error"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Invoice).where(Invoice.month == "2024-03")) == 0
        shutil.move(keep, folder / "2024-03.staged")
        batch = db.session.scalar(select(Batch).filter_by(batch_no=batch_json["batch_no"]))
        assert retry([batch]) == {"subtasks": 1, "parses": 0}
    work()
    shown = _cli_json(runner, "batch", "show", batch_json["batch_no"])
    assert shown["status"] == "succeeded" and shown["success"] == shown["total"] == 312


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
])
def test_dialog_validation_errors_are_inline_chinese(client, app, fields, message):
    login(client)
    data = {"data_type": "invoices", "tax_ids": [DEMO_TAX_ID], **fields}
    response = client.post("/batches/import", data=data, headers={"HX-Request": "true"}, content_type="multipart/form-data")
    assert response.status_code == 200 and message in response.text
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Batch)) == 0


def test_oversize_upload_is_refused_in_chinese(client, app, tmp_path):
    login(client)
    big = tmp_path / "big.xlsx"
    big.write_bytes(b"PK" + b"0" * (10 * 1024 * 1024 + 10))
    with open(big, "rb") as fh:
        response = client.post("/batches/import", data={"data_type": "invoices", "method": "file", "tax_ids": DEMO_TAX_ID,
                                                        "file": (fh, "big.xlsx")}, content_type="multipart/form-data")
    assert "10MB" in response.text
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Batch)) == 0


def test_another_companys_invoice_number_is_never_taken_over(runner, app, tmp_path):
    """A file of company B carrying an invoice number company A already has: B's month fails, A's invoice stays."""
    from tests.workbook_builder import build_workbook, digital_invoice, make_line

    first = _cli_json(runner, "import-file", "--tax-id", DEMO_TAX_ID, "--file", str(SAMPLES / SAMPLE_FILES[0]),
                      "--as", "caiwu", "--wait")
    assert first["status"] == "succeeded"
    other = "91110000MA00000001"
    _cli_json(runner, "enterprise", "add", "--tax-id", other, "--name", "别家公司")
    _cli_json(runner, "user", "add", "zhang", "--password", "secret123", "--grant", other)
    taken = "24447123400000000197"  # an invoice of the demo company in the 2024 sample
    path = tmp_path / "b.xlsx"
    build_workbook(path, [digital_invoice(taken, [make_line("*信息技术服务*运维服务", "100.00")], "2024-01-05 10:00:00")],
                   tax_id=other, seller_name="别家公司")
    result = runner.invoke(args=["import-file", "--tax-id", other, "--file", str(path), "--as", "zhang", "--wait"])
    batch = json.loads(result.stdout)
    assert result.exit_code != 0 and batch["status"] == "failed"
    assert taken in batch["subtasks"][0]["error"] and DEMO_TAX_ID in batch["subtasks"][0]["error"]
    shown = _cli_json(runner, "pool", "show", taken)
    assert shown["tax_id"] == DEMO_TAX_ID and shown["lines"]
