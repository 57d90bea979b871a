"""Tax IDs in one canonical form (upper case, no spaces) through every way in (README, Access).

A workbook or a bureau answer that writes `91330100ma2h4k7q1x`, a form or a command that types it
so: the invoice is stored under the company's canonical tax ID and shows in the pool list, its
search, `pool stats` and its detail page, with the buyer's tax ID canonical too.
"""
from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import Company, Invoice

from .conftest import DEMO_TAX_ID, SandboxControl, cli_json, login
from .workbook_builder import build_workbook, digital_invoice, make_line

LOWER = DEMO_TAX_ID.lower()  # 91330100ma2h4k7q1x
MIXED = " 91330100Ma2h4K7q1X "
BUYER = "91110105MA01XYZ12K"
KEY = "24332000000000000123"
MONTH = "2024-05"


def _workbook(tmp_path) -> bytes:
    """One invoice whose 销方识别号 and 购方识别号 are written in lower case (with a stray space)."""
    path = tmp_path / "lowercase-ids.xlsx"
    build_workbook(path, [digital_invoice(KEY, [make_line("*信息技术服务*软件维护费", 1000)], "2024-03-05 10:00:00",
                                          buyer_tax_id=f"{BUYER.lower()} ")], tax_id=LOWER)
    return path.read_bytes()


def _stored(app) -> set[tuple[str, str | None]]:
    """(seller, buyer) tax IDs as the pool holds them."""
    with app.app_context():
        try:
            return set(db.session.execute(select(Invoice.tax_id, Invoice.buyer_tax_id)).tuples())
        finally:
            db.session.remove()


def _seen_everywhere(app, client, runner, key: str, invoices: int) -> None:
    """What a user checks: the list, a search by company and buyer tax ID typed in lower case, the
    detail page, and `pool stats --tax-id` typed in lower case."""
    assert all(seller == DEMO_TAX_ID and (buyer or "").upper() == (buyer or "") for seller, buyer in _stored(app))
    assert cli_json(runner, "pool", "stats", "--tax-id", MIXED)["invoices"] == invoices
    login(client)
    assert key in client.get("/pool").text
    assert key in client.get("/pool", query_string={"tax_id": MIXED, "q": key}).text
    detail = client.get(f"/pool/{key}")
    assert detail.status_code == 200 and DEMO_TAX_ID in detail.text


def test_a_file_with_a_lowercase_seller_imported_by_the_cli_shows_everywhere(app, client, runner, tmp_path):
    path = tmp_path / "upload.xlsx"
    path.write_bytes(_workbook(tmp_path))
    batch = cli_json(runner, "import-file", "--tax-id", LOWER, "--file", str(path), "--as", "caiwu", "--wait")
    assert batch["status"] == "succeeded" and batch["total"] == batch["success"] == 1
    assert _stored(app) == {(DEMO_TAX_ID, BUYER)}
    _seen_everywhere(app, client, runner, KEY, 1)
    assert KEY in client.get("/pool", query_string={"buyer": BUYER[:10].lower()}).text
    assert batch["batch_no"] in client.get("/batches", query_string={"tax_id": LOWER}).text


def test_a_file_uploaded_in_the_dialog_for_a_lowercase_tax_id_shows_everywhere(app, client, runner, work, tmp_path):
    login(client)
    response = client.post("/batches/import", data={
        "data_type": "invoices", "method": "file", "tax_ids": LOWER,
        "file": (io.BytesIO(_workbook(tmp_path)), "导出.xlsx"),
    }, headers={"HX-Request": "true"}, content_type="multipart/form-data")
    assert response.status_code == 204, response.text
    work()
    assert "全部执行成功" in client.get("/batches").text
    _seen_everywhere(app, client, runner, KEY, 1)


@pytest.mark.parametrize("channel", ["leqi", "rpa"])
def test_a_bureau_answering_lowercase_tax_ids_fills_the_pool_canonically(app, client, runner, channel):
    from datetime import datetime

    app.config["CLOCK_NOW"] = datetime(2024, 6, 10, 9, 30)
    sandbox = SandboxControl(app.config["SANDBOX_DB"])
    sandbox.control(today="2024-06-10", processing_polls=0, lowercase_ids=True)
    result = runner.invoke(args=["download", "--tax-id", LOWER, "--as", "caiwu", "--wait", "--channel", channel,
                                 "--from", MONTH, "--to", MONTH, "--type", "81"])
    assert result.exit_code == 0, result.output
    [batch] = json.loads(result.stdout)
    assert batch["status"] == "succeeded" and batch["total"] == batch["success"] > 100
    with app.app_context():
        key = db.session.scalar(select(Invoice.key).order_by(Invoice.issued_at.desc()).limit(1))
        db.session.remove()
    _seen_everywhere(app, client, runner, key, batch["total"])


def test_the_sandbox_knob_really_writes_lowercase_ids(app):
    """The test above is only worth something if the bureau did answer in lower case."""
    from channels.sandbox import create_app as create_sandbox

    bureau = create_sandbox({"SANDBOX_DB": app.config["SANDBOX_DB"]}).test_client()
    bureau.post("/sandbox/control", json={"today": "2024-06-10", "processing_polls": 0, "lowercase_ids": True})
    bureau.post("/sandbox/companies", json={"tax_id": DEMO_TAX_ID, "rpa_account": "acct"})
    task = bureau.post("/rpa/v1/tasks", json={"kind": "invoices", "nsrsbh": DEMO_TAX_ID, "dlzh": "acct",
                                           "kprqq": "20240501", "kprqz": "20240531", "fplx": ["81"]}).get_json()
    task_id = task["data"]["task_id"]
    bureau.get(f"/rpa/v1/tasks/{task_id}")
    page = bureau.get(f"/rpa/v1/tasks/{task_id}/pages/1").get_json()["data"]["fpxx"]
    assert {invoice["xfsh"] for invoice in page} == {LOWER}
    assert any(invoice["gfsh"] and invoice["gfsh"] != invoice["gfsh"].upper() for invoice in page)


def test_the_company_form_and_the_cli_store_a_typed_tax_id_canonically(app, client, runner):
    login(client, "admin", "admin123")
    response = client.post("/admin/companies", data={"tax_id": " 91330100ab12cd 34ef ", "name": "小写公司",
                                                     "receipt_channel": ""})
    assert response.status_code in (200, 302), response.text
    with app.app_context():
        names = db.session.scalars(select(Company.tax_id).where(Company.name == "小写公司")).all()
        assert names == ["91330100AB12CD34EF"]
        db.session.remove()
    assert "小写公司" in client.get("/admin/companies", query_string={"tax_id": "91330100ab12cd34ef"}).text
    added = cli_json(runner, "enterprise", "add", "--tax-id", "91330100cd 34ef56gh", "--name", "命令行公司")
    assert added["tax_id"] == "91330100CD34EF56GH"
