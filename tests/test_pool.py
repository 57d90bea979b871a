"""The invoice pool a finance user works in: search, detail, red-flush readiness, coverage."""
from __future__ import annotations

import json
import re

import pytest

from webapp.extensions import db

from .conftest import DEMO_TAX_ID, SAMPLES, cli_json, login

EXPECTED = json.loads((SAMPLES / "etax-export-2024.expected.json").read_text())
RED, BLUE = next(iter(EXPECTED["red_links"].items()))  # a 数电 red invoice and the blue one it flushes


@pytest.fixture
def imported(runner):
    result = runner.invoke(args=["import-file", "--tax-id", DEMO_TAX_ID, "--file",
                                 str(SAMPLES / "etax-export-2024.xlsx"), "--as", "caiwu", "--wait"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_search_by_number_prefix_buyer_and_colour(client, imported):
    login(client)
    page = client.get(f"/pool?q={RED[:12]}", headers={"HX-Request": "true", "HX-Target": "pool-table"}).text
    assert RED in page and BLUE not in page
    reds = client.get("/pool?color=red").text
    assert reds.count('<span class="badge red">红票</span>') == min(EXPECTED["red"], 20)
    by_buyer = client.get("/pool?buyer=张三").text
    assert "张三" in by_buyer
    assert "没有符合条件的发票" in client.get("/pool?q=99999999999").text


def test_detail_links_red_and_blue_both_ways_and_gives_readiness(client, imported):
    login(client)
    red = client.get(f"/pool/{RED}").text
    assert f'href="/pool/{BLUE}"' in red and "红冲预检" not in red
    blue = client.get(f"/pool/{BLUE}").text
    assert f'href="/pool/{RED}"' in blue and "红冲预检" in blue
    assert "需先获取用途状态" in blue or "不能红冲" in blue


def test_legacy_blue_named_by_code_and_number_is_found(client, imported):
    login(client)
    red, blue = next((r, b) for r, b in EXPECTED["red_links"].items() if "-" in b)
    assert client.get(f"/pool/{blue}").status_code == 200
    assert f'href="/pool/{red}"' in client.get(f"/pool/{blue}").text


def test_cli_pool_show_has_red_flush_and_red_invoices(runner, imported):
    blue = cli_json(runner, "pool", "show", BLUE)
    assert RED in blue["red_invoices"]
    assert set(blue["red_flush"]) >= {"can_flush", "mode", "confirmer", "reasons", "remaining"}
    assert blue["red_flush"]["reasons"]
    assert cli_json(runner, "pool", "show", RED)["red_flush"] is None


def test_coverage_shows_synced_months_and_gaps(runner, client, imported):
    grid = cli_json(runner, "pool", "coverage", "--tax-id", DEMO_TAX_ID, "--year", "2024")
    assert sorted(grid) == EXPECTED["months"]
    march = grid["2024-03"]
    assert sum(cell["invoices"] for cell in march.values()) > 0
    assert all(cell["source"] == "file" and cell["last_synced"] for cell in march.values())
    empty = cli_json(runner, "pool", "coverage", "--tax-id", DEMO_TAX_ID, "--year", "2023")
    assert all(cell["invoices"] == 0 and cell["last_synced"] is None for cells in empty.values()
               for cell in cells.values())
    login(client)
    page = client.get(f"/pool/coverage?tax_id={DEMO_TAX_ID}&year=2023").text
    assert "缺口" in page and "month_from=2023-01" in page


def test_coverage_gap_opens_the_dialog_prefilled(client, imported):
    login(client)
    dialog = client.get(f"/batches/import?method=download&tax_ids={DEMO_TAX_ID}&period_unit=month"
                        "&month_from=2023-02&month_to=2023-02&kinds=81").text
    assert 'value="2023-02"' in dialog and "下载通道" in dialog
    boxes = {re.search(r'value="(\d+)"', tag).group(1): "checked" in tag
             for tag in re.findall(r'<input[^>]*name="kinds"[^>]*>', dialog)}
    assert boxes["81"] and not boxes["82"]


def test_pool_of_other_companies_is_invisible(client, runner, imported):
    cli_json(runner, "enterprise", "add", "--tax-id", "91110000MA00000001", "--name", "别家公司")
    cli_json(runner, "user", "add", "li", "--password", "secret123", "--grant", "91110000MA00000001")
    login(client, "li", "secret123")
    assert RED not in client.get("/pool").text
    assert client.get(f"/pool/{RED}").status_code == 404
    assert client.get(f"/pool/coverage?tax_id={DEMO_TAX_ID}").status_code == 404
    assert client.post(f"/pool/{BLUE}/refresh-usage").status_code == 404


def test_export_gives_the_filtered_list_with_the_export_files_headers(client, imported, tmp_path):
    from openpyxl import load_workbook

    login(client)
    response = client.get("/pool/export?color=red")
    assert response.status_code == 200
    assert "attachment" in response.headers["Content-Disposition"]
    path = tmp_path / "export.xlsx"
    path.write_bytes(response.data)
    sheet = load_workbook(path, read_only=True)["发票基础信息"]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:4] == ("序号", "发票代码", "发票号码", "数电发票号码")
    assert rows.pop()[0] == "合计行"
    assert len(rows) - 1 == EXPECTED["red"]
    assert {row[15] for row in rows[1:]} == {"否"}
    assert RED in {row[3] for row in rows[1:]}


def test_export_is_sent_while_it_is_written_and_reads_back_whole(client, imported, monkeypatch, tmp_path):
    """The download starts before the last invoice is read: the workbook leaves in several parts (one
    per chunk of invoices), and the parts together are the whole workbook, totals row included."""
    from openpyxl import load_workbook

    from webapp.pool import export

    monkeypatch.setattr(export, "CHUNK", 25)
    login(client)
    response = client.get("/pool/export")
    assert response.status_code == 200 and response.is_streamed
    parts = [part for part in response.response if part]
    response.close()
    assert len(parts) >= 3 and parts[0].startswith(b"PK")  # zlib hands on output in blocks, not per chunk
    path = tmp_path / "streamed.xlsx"
    path.write_bytes(b"".join(parts))
    rows = list(load_workbook(path, read_only=True)["发票基础信息"].iter_rows(values_only=True))
    assert rows[-1][0] == "合计行" and len(rows) - 2 == EXPECTED["invoices"]


def test_export_counts_first_and_says_what_it_sends(client, imported):
    """导出 (htmx) answers with the counts and the download link the page follows."""
    stats = cli_json(client.application.test_cli_runner(), "pool", "stats", "--tax-id", DEMO_TAX_ID)
    login(client)
    note = client.get("/pool/export/start?color=red", headers={"HX-Request": "true"}).text
    assert f"正在导出 {EXPECTED['red']:,} 张发票" in note
    assert 'href="/pool/export?color=red"' in note
    whole = client.get("/pool/export/start", headers={"HX-Request": "true"}).text
    assert f"正在导出 {stats['invoices']:,} 张发票" in whole
    line_rows = int(re.search(r"（([0-9,]+) 行明细）", whole).group(1).replace(",", ""))
    assert stats["lines"] <= line_rows <= stats["lines"] + stats["invoices"]  # plus one row per invoice without lines
    assert "当前筛选没有发票" in client.get("/pool/export/start?q=99999999999", headers={"HX-Request": "true"}).text


def test_an_export_excel_cannot_hold_is_refused_before_anything_is_sent(client, imported, monkeypatch):
    from webapp.pool import export

    monkeypatch.setattr(export, "MAX_DATA_ROWS", EXPECTED["red"] - 1)
    login(client)
    refused = client.get("/pool/export/start?color=red", headers={"HX-Request": "true"})
    assert refused.status_code == 400
    assert (f"导出行数超过 Excel 单表上限（{EXPECTED['red'] - 1:,} 行）：当前筛选有 {EXPECTED['red']:,} 张发票"
            in refused.text)
    direct = client.get("/pool/export?color=red")
    assert direct.status_code == 400 and "导出行数超过 Excel 单表上限" in direct.text
    assert "attachment" not in direct.headers.get("Content-Disposition", "")


def test_error_goods_page_shows_lines_filtered_per_batch(client, imported):
    login(client, "admin", "admin123")
    page = client.get("/admin/settings").text
    assert "详见销货清单,原价合计,折扣额合计" in page
    assert imported["batch_no"] in page
    assert f'<td class="num">{EXPECTED["listed_invoices"]}</td>' in page  # one (详见销货清单) line per listed invoice


def test_entry_status_filter_keeps_the_channels_code_sets_apart(app, client, imported):
    """03 is 已入账（企业所得税不扣除） from RPA but 入账撤销 from 乐企: the filter names the channel."""
    from sqlalchemy import update

    from webapp.models import Invoice
    from webapp.transactions import write_transaction

    with app.app_context():
        with write_transaction():
            db.session.execute(update(Invoice).where(Invoice.key == BLUE)
                               .values(entry_status="03", usage_channel="leqi"))
    login(client)
    assert BLUE in client.get("/pool?entry_status=leqi:03").text
    assert BLUE not in client.get("/pool?entry_status=rpa:03").text


def test_usage_filter_keeps_red_and_voided_invoices_apart_as_not_applicable(app, client, runner, imported):
    """用途 = 未获取 finds only invoices whose status could still be fetched; red invoices (never asked)
    and voided ones read 不适用 in the list and on their page, and have a filter value of their own
    (docs/rules.md, 用途状态)."""
    stats = cli_json(runner, "pool", "stats", "--tax-id", DEMO_TAX_ID)
    assert stats["red"] and stats["voided"]
    login(client)

    def count(**args) -> int:
        page = client.get("/pool/summary", query_string={"tax_id": DEMO_TAX_ID, **args}).text
        found = re.search(r'<b class="count">([\d,]+)</b>', page)
        return int(found.group(1).replace(",", "")) if found else 0

    assert count(vat_usage="none") + count(vat_usage="na") == stats["invoices"]
    assert count(vat_usage="none") == stats["blue"] - count(vat_usage="na", color="blue")
    assert count(vat_usage="na", color="red") == stats["red"]
    assert 0 < count(vat_usage="na", color="blue") <= stats["voided"]
    assert count(vat_usage="na", status="正常") == count(vat_usage="na", status="正常", color="red")
    assert count(entry_status="none") == count(vat_usage="none")
    reds = client.get("/pool", query_string={"tax_id": DEMO_TAX_ID, "color": "red"}).text
    assert "不适用" in reds and "未获取" not in reds.split("<tbody")[1]
    from webapp.models import Invoice

    with app.app_context():
        voided = db.session.scalar(db.select(Invoice.key).filter_by(status="已作废", is_red=False).limit(1))
        db.session.remove()
    assert client.get(f"/pool/{voided}").text.count("不适用") == 3  # 增值税, 消费税 and 入账


def test_a_blue_invoice_its_reds_flush_shows_and_filters_as_flushed(app, client, runner, tmp_path):
    """(docs/codes.md, 红字发票如何指向蓝字发票) The file still says 正常, but the pool holds red invoices that flush
    the blue one (through 备注): the list and its page say 正常（已被红冲 100%）/（已被红冲 40%）, and 已红冲-全额 /
    已红冲-部分 find them — also when the reds were imported before their blue invoices."""
    from .workbook_builder import build_workbook, digital_invoice, make_line

    def red_of(blue: str, number: str, amount: str, day: str):
        return digital_invoice(number, [make_line("*信息技术服务*运维服务", amount, "6%")], day, is_red=True,
                               remark=f"被红冲蓝字数电发票号码：{blue} 红字发票信息确认单编号：11111111111111111111")

    full, part, plain = "25330000000000000001", "25330000000000000002", "25330000000000000003"
    blues = [digital_invoice(key, [make_line("*信息技术服务*运维服务", "1000.00", "6%")], "2025-01-10 09:00:00")
             for key in (full, part, plain)]
    reds = [red_of(full, "25330000000000000011", "-1000.00", "2025-02-10 09:00:00"),
            red_of(part, "25330000000000000012", "-400.00", "2025-02-11 09:00:00")]
    build_workbook(tmp_path / "reds.xlsx", reds)
    build_workbook(tmp_path / "blues.xlsx", blues)
    for name in ("reds.xlsx", "blues.xlsx"):  # the reds first: the blue rows learn of them when they arrive
        batch = cli_json(runner, "import-file", "--tax-id", DEMO_TAX_ID, "--file", str(tmp_path / name),
                         "--as", "caiwu", "--wait")
        assert batch["status"] == "succeeded", batch
    login(client)
    listed = client.get("/pool", query_string={"tax_id": DEMO_TAX_ID, "color": "blue"}).text
    assert "正常（已被红冲 100%）" in listed and "正常（已被红冲 40%）" in listed
    assert "正常（已被红冲 100%）" in client.get(f"/pool/{full}").text

    def keys(status: str) -> set[str]:
        page = client.get("/pool", query_string={"tax_id": DEMO_TAX_ID, "status": status, "color": "blue"}).text
        return {key for key in (full, part, plain) if key in page}

    assert keys("已红冲-全额") == {full} and keys("已红冲-部分") == {part} and keys("正常") == {plain}
    assert cli_json(runner, "pool", "show", full)["status_shown"] == "正常（已被红冲 100%）"


def test_each_red_remark_wording_links_its_red_and_blue_in_the_pool(runner, tmp_path):
    """(docs/codes.md, 红字发票如何指向蓝字发票) One red per wording real files use, imported: each blue
    invoice's page lists its red one, and the red names its blue."""
    from .workbook_builder import build_workbook, invoice_key, red_remark_corpus

    corpus = red_remark_corpus(2025)
    build_workbook(tmp_path / "reds.xlsx", corpus)
    batch = cli_json(runner, "import-file", "--tax-id", DEMO_TAX_ID, "--file", str(tmp_path / "reds.xlsx"),
                     "--as", "caiwu", "--wait")
    assert batch["status"] == "succeeded", batch
    for red in (invoice for invoice in corpus if invoice["is_red"]):
        assert invoice_key(red) in cli_json(runner, "pool", "show", red["red_of"])["red_invoices"], red["remark"]
        assert cli_json(runner, "pool", "show", invoice_key(red))["red_of"] == red["red_of"]


def test_coverage_offers_every_year_with_data_and_a_whole_file_leaves_no_gap(client, runner, tmp_path):
    """A 2021 file (older than the five-year window, docs/rules.md, 导入 dialog) makes 2021 selectable, and the
    months inside it that held no invoice read 已同步（无发票）, not 缺口."""
    from .workbook_builder import build_workbook, digital_invoice, make_line

    build_workbook(tmp_path / "2021.xlsx", [
        digital_invoice("21330000000000000001", [make_line("*信息技术服务*运维服务", "100.00", "6%")],
                        "2021-01-05 09:00:00"),
        digital_invoice("21330000000000000002", [make_line("*信息技术服务*运维服务", "200.00", "6%")],
                        "2021-12-20 09:00:00")])
    batch = cli_json(runner, "import-file", "--tax-id", DEMO_TAX_ID, "--file", str(tmp_path / "2021.xlsx"),
                     "--as", "caiwu", "--wait")
    assert batch["status"] == "succeeded"
    login(client)
    five_years = client.get(f"/pool/coverage?tax_id={DEMO_TAX_ID}").text
    assert '<option value="2021"' in five_years
    page = client.get(f"/pool/coverage?tax_id={DEMO_TAX_ID}&year=2021").text
    rows = {m: row for m, row in re.findall(r"<tr><th>(2021-\d\d).*?</th>(.*?)</tr>", page, re.S)}
    assert len(rows) == 12
    for month in ("2021-02", "2021-06", "2021-11"):
        assert "已同步（无发票）" in rows[month] and "缺口" not in rows[month], month
    assert "缺口" not in rows["2021-01"] and "<b>1</b>" in rows["2021-01"]
    months = cli_json(runner, "pool", "coverage", "--tax-id", DEMO_TAX_ID, "--year", "2021")
    assert all(cell["last_synced"] for cell in months["2021-06"].values())
