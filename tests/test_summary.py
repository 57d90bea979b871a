"""销项汇总 and 来源核对, figure-exact: workbooks built here and sandbox downloads go through the real
import (CLI, real worker, real Redis, real database); the expected figures are summed independently
from the built invoices and compared cent for cent with the CLI, the pages and the xlsx exports."""
from __future__ import annotations

import io
from datetime import datetime
from decimal import Decimal

import openpyxl
import pytest
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import Invoice, InvoiceLine, InvoiceSource

from .conftest import DEMO_TAX_ID, SandboxControl, cli_json, login
from .workbook_builder import (
    KINDS,
    build_workbook,
    digital_invoice,
    is_listed_name,
    legacy_invoice,
    make_line,
    money,
    random_invoices,
)

OTHER_TAX_ID = "91110000MA00000001"
SPECIAL_KINDS = {kind for kind, _, special in KINDS if special}
ZERO = Decimal("0.00")


def _import(runner, path, tax_id=DEMO_TAX_ID) -> dict:
    batch = cli_json(runner, "import-file", "--tax-id", tax_id, "--file", str(path), "--as", "caiwu", "--wait")
    assert batch["status"] == "succeeded", batch
    return batch


def expected_summary(invoices: list[dict], year: int) -> dict:
    """The summary summed straight from the invoices written: lines of non-voided invoices by month,
    rate and 专票/其他; red lines are negative; 销货清单 lines of blue invoices are not goods."""
    months = {f"{year}-{m:02d}": {} for m in range(1, 13)}
    for invoice in invoices:
        if invoice["status"] == "已作废":
            continue
        column = "special" if invoice["kind"] in SPECIAL_KINDS else "other"
        for line in invoice["lines"]:
            if not invoice["is_red"] and is_listed_name(line["name"]):
                continue
            cells = months[str(invoice["issued_at"])[:7]].setdefault(
                line["tax_rate"], {c: {"amount": ZERO, "tax": ZERO} for c in ("special", "other")})
            cells[column]["amount"] += money(line["amount"])
            cells[column]["tax"] += money(line["tax"])
    return {month: {rate: {c: {f: f"{v:.2f}" for f, v in cell.items()} for c, cell in cells.items()}
                    for rate, cells in rates.items()} for month, rates in months.items()}


def multi_rate_invoices() -> list[dict]:
    """Hand-made cases: several rates on one invoice, 免税 and 不征税, a voided 专票, a red 专票 line."""
    mixed = digital_invoice("24330000000000000001", [
        make_line("*计算机网络设备*交换机", "1000.00", "13%"),
        make_line("*信息技术服务*运维服务", "200.00", "6%"),
        make_line("*农产品*蔬菜", "55.55", "免税"),
        make_line("*保险服务*代收车船税", "12.34", "不征税"),
    ], "2024-02-10 09:00:00", kind="数电发票（增值税专用发票）")
    voided = legacy_invoice("033001900111", "00000001", [make_line("*建筑服务*工程服务", "9999.99", "9%")],
                            "2024-02-11 09:00:00", kind="增值税专用发票", status="已作废")
    red = digital_invoice("24330000000000000002", [make_line("*计算机网络设备*交换机", "-100.00", "13%")],
                          "2024-02-20 09:00:00", kind="数电发票（增值税专用发票）", is_red=True,
                          remark="被红冲蓝字数电发票号码：24330000000000000001 红字发票信息确认单编号："
                                 "11111111111111111111")
    mixed["status"] = "已红冲-部分"
    return [mixed, voided, red]


def test_summary_of_an_imported_file_is_exact_to_the_cent(runner, client, tmp_path):
    invoices = multi_rate_invoices() + random_invoices(400, seed=12, year=2024)
    build_workbook(tmp_path / "export.xlsx", invoices)
    _import(runner, tmp_path / "export.xlsx")
    expected = expected_summary(invoices, 2024)

    printed = cli_json(runner, "pool", "summary", "--tax-id", DEMO_TAX_ID, "--year", "2024")
    assert printed == expected
    february = printed["2024-02"]
    assert february["13%"]["special"]["amount"] != "0.00" and "免税" in february and "不征税" in february
    assert "9%" not in february or february["9%"]["special"]["amount"] != "9999.99"  # voided left out

    login(client)
    page = client.get(f"/summary?tax_id={DEMO_TAX_ID}&year=2024").text
    year_amount = sum(Decimal(c[col]["amount"]) for rates in expected.values() for c in rates.values()
                      for col in ("special", "other"))
    assert f"{year_amount:,.2f}" in page
    assert "<svg" in page and page.count('class="bar blue"') == 12 and page.count('class="bar red"') == 12

    response = client.get(f"/summary/export?tax_id={DEMO_TAX_ID}&year=2024")
    assert response.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(response.data))["销项汇总"]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:6] == ("开票月份", "税率/征收率", "开具增值税专用发票-金额", "开具增值税专用发票-税额",
                           "开具其他发票-金额", "开具其他发票-税额")
    exported = {(r[0], r[1]): r for r in rows[1:]}
    for month, rates in expected.items():
        for rate, cells in rates.items():
            row = exported[(month, rate)]
            assert [f"{Decimal(str(v)):.2f}" for v in row[2:6]] == [
                cells["special"]["amount"], cells["special"]["tax"], cells["other"]["amount"], cells["other"]["tax"]]
    total = exported[("2024年", "年度合计")]
    assert f"{Decimal(str(total[2])) + Decimal(str(total[4])):.2f}" == f"{year_amount:.2f}"
    for cell in sheet[sheet.max_row][2:]:  # numbers a user can sum, read with separators
        assert isinstance(cell.value, (int, float)) and cell.number_format == "#,##0.00", cell


def test_a_formula_like_kind_comes_out_of_the_summary_workbook_as_text(runner, client, tmp_path):
    """A file whose 发票票种 cell is `=cmd|'/C calc'!A0` is imported as an unknown kind; 销项汇总's Excel
    names it as a text cell equal to the file's, never a formula, counted as a number."""
    hostile = "=cmd|'/Ccalc'!A0"  # (the importer drops spaces inside a 票种)
    invoice = digital_invoice("24330000000000000077", [make_line("*信息技术服务*运维服务", "1234.56", "6%")],
                              "2024-04-02 10:00:00", kind="数电发票（普通发票）")
    build_workbook(tmp_path / "export.xlsx", [invoice])
    book = openpyxl.load_workbook(tmp_path / "export.xlsx")
    for sheet in book.worksheets:  # the 发票票种 cells as the text the user's file holds, not a formula
        for cell in (c for row in sheet.iter_rows() for c in row if c.value == "数电发票（普通发票）"):
            cell.value, cell.data_type = hostile, "s"
    book.save(tmp_path / "export.xlsx")
    _import(runner, tmp_path / "export.xlsx")
    login(client)
    book = openpyxl.load_workbook(io.BytesIO(client.get(f"/summary/export?tax_id={DEMO_TAX_ID}&year=2024").data))
    kinds = {row[0].value: row for row in book["发票票种"].iter_rows(min_row=2)}
    assert kinds[hostile][0].data_type == "s" and kinds[hostile][1].value == 1
    assert kinds[hostile][1].number_format == "#,##0"


def test_a_digital_toll_invoice_keeps_its_kind_through_pool_filter_summary_and_export(runner, client, tmp_path):
    """发票票种 数电发票（通行费发票） (code 59, docs/codes.md 票种) and a kind no table knows: imported,
    each is shown, counted and exported under its own name; the 票种 filter picks the toll kind."""
    toll = "数电发票（通行费发票）"
    line = make_line("*经营租赁*通行费", "97.09", "3%", tax_code="3040502020100000000", special_type="通行费")
    blue = digital_invoice("26370000000000000301", [line], "2026-01-05 08:00:00", kind=toll, status="已红冲-全额")
    red = digital_invoice("26370000000000000302", [make_line("*经营租赁*通行费", "-97.09", "3%", tax=-line["tax"])],
                          "2026-01-06 08:00:00", kind=toll, is_red=True, red_of=blue["digital_number"],
                          remark="被红冲蓝字数电发票号码：26370000000000000301 红字发票信息确认单编号："
                                 "26370000000000000001")
    stranger = digital_invoice("26370000000000000303", [make_line("*信息技术服务*运维服务", "50.00", "6%")],
                               "2026-01-07 08:00:00", kind="数电发票（某种新票种）")
    build_workbook(tmp_path / "export.xlsx", [blue, red, stranger])
    batch = _import(runner, tmp_path / "export.xlsx")
    assert toll in batch["kinds"] and "数电发票（某种新票种）" in batch["kinds"]

    login(client)
    assert f'<option value="59" >{toll}</option>' in client.get("/pool").text
    listed = client.get("/pool?type_code=59").text
    assert "26370000000000000301" in listed and "26370000000000000302" in listed
    assert "26370000000000000303" not in listed and listed.count(f"<td>{toll}</td>") == 2
    assert "<td>数电发票（某种新票种）</td>" in client.get("/pool?q=26370000000000000303").text

    page = client.get(f"/summary?tax_id={DEMO_TAX_ID}&year=2026").text
    assert f"<tr><td>{toll}</td><td class=\"num\">1</td><td class=\"num\">1</td>" in page
    assert "<tr><td>数电发票（某种新票种）</td>" in page
    summary = cli_json(runner, "pool", "summary", "--tax-id", DEMO_TAX_ID, "--year", "2026")["2026-01"]
    assert summary["3%"]["other"] == {"amount": "0.00", "tax": "0.00"}  # the red cancels its blue, 普票 column
    book = openpyxl.load_workbook(io.BytesIO(client.get(f"/summary/export?tax_id={DEMO_TAX_ID}&year=2026").data))
    counted = {row[0]: row[1:] for row in book["发票票种"].iter_rows(min_row=2, values_only=True)}
    assert counted[toll] == (1, 1, 0) and counted["数电发票（某种新票种）"] == (1, 0, 0)

    exported = openpyxl.load_workbook(io.BytesIO(client.get("/pool/export?type_code=59").data))["发票基础信息"]
    rows = list(exported.iter_rows(min_row=2, values_only=True))[:-1]  # the 合计行 last
    assert sorted((row[3], row[13]) for row in rows) == [("26370000000000000301", toll), ("26370000000000000302", toll)]


def test_kept_summary_follows_a_reimport_that_changes_the_month(app, runner, tmp_path):
    """The same clock for both imports: the month's figures change because the pool write says so."""
    app.config["CLOCK_NOW"] = datetime(2024, 8, 1, 9, 0)
    first = [digital_invoice("24330000000000000041", [make_line("*信息技术服务*运维服务", "10.00", "6%")],
                             "2024-07-01 10:00:00"),
             legacy_invoice("033001900333", "00000003", [make_line("*建筑服务*工程服务", "50.00", "9%")],
                            "2024-07-02 10:00:00", kind="增值税专用发票")]
    build_workbook(tmp_path / "first.xlsx", first)
    _import(runner, tmp_path / "first.xlsx")
    summary = cli_json(runner, "pool", "summary", "--tax-id", DEMO_TAX_ID, "--year", "2024")
    assert summary == expected_summary(first, 2024)

    first[1]["status"] = "已作废"
    later = first + [digital_invoice("24330000000000000042", [make_line("*农产品*蔬菜", "3.33", "免税")],
                                     "2024-07-03 10:00:00")]
    build_workbook(tmp_path / "later.xlsx", later)
    _import(runner, tmp_path / "later.xlsx")
    printed = cli_json(runner, "pool", "summary", "--tax-id", DEMO_TAX_ID, "--year", "2024")
    assert printed == expected_summary(later, 2024)
    assert "9%" not in printed["2024-07"] and printed["2024-07"]["免税"]["other"]["amount"] == "3.33"


def test_summary_counts_by_kind_and_chart_totals_follow_the_headers(runner, app, tmp_path):
    invoices = random_invoices(120, seed=5, year=2023)
    build_workbook(tmp_path / "export.xlsx", invoices)
    _import(runner, tmp_path / "export.xlsx")
    from webapp.summary import year_summary

    with app.app_context():
        summary = year_summary([DEMO_TAX_ID], 2023)
    for month, bars in summary["chart"].items():
        inside = [i for i in invoices if str(i["issued_at"])[:7] == month and i["status"] != "已作废"]
        assert bars["blue"] == sum((money(i["total"]) for i in inside if not i["is_red"]), ZERO)
        assert bars["red"] == sum((-money(i["total"]) for i in inside if i["is_red"]), ZERO)
    counted = {name: n["blue"] + n["red"] + n["voided"] for name, n in summary["types"].items()}
    assert sum(counted.values()) == len(invoices)
    assert sum(n["voided"] for n in summary["types"].values()) == sum(i["status"] == "已作废" for i in invoices)


def test_all_companies_add_up_and_other_companies_stay_hidden(runner, client, tmp_path):
    cli_json(runner, "enterprise", "add", "--tax-id", OTHER_TAX_ID, "--name", "北京别家贸易有限公司")
    cli_json(runner, "user", "add", "caiwu", "--password", "caiwu123", "--grant", DEMO_TAX_ID, "--grant", OTHER_TAX_ID)
    cli_json(runner, "user", "add", "lisi", "--password", "lisi1234", "--grant", OTHER_TAX_ID)
    ours = [digital_invoice("24330000000000000011", [make_line("*信息技术服务*运维服务", "100.00", "6%")],
                            "2024-05-01 10:00:00")]
    theirs = [digital_invoice("24110000000000000012", [make_line("*信息技术服务*运维服务", "23.45", "6%")],
                              "2024-05-02 10:00:00", seller_tax_id=OTHER_TAX_ID, seller_name="北京别家贸易有限公司")]
    build_workbook(tmp_path / "ours.xlsx", ours)
    build_workbook(tmp_path / "theirs.xlsx", theirs, tax_id=OTHER_TAX_ID, seller_name="北京别家贸易有限公司")
    _import(runner, tmp_path / "ours.xlsx")
    _import(runner, tmp_path / "theirs.xlsx", OTHER_TAX_ID)

    login(client)
    both = client.get("/summary?tax_id=all&year=2024").text
    assert "123.45" in both and "全部已授权企业" in both
    login(client, "lisi", "lisi1234")
    assert client.get(f"/summary?tax_id={DEMO_TAX_ID}&year=2024").status_code == 404
    assert client.get(f"/summary/export?tax_id={DEMO_TAX_ID}&year=2024").status_code == 404
    assert client.get(f"/reconcile?tax_id={DEMO_TAX_ID}&month=2024-05").status_code == 404
    assert client.get(f"/reconcile/export?tax_id={DEMO_TAX_ID}&month=2024-05").status_code == 404
    theirs_only = client.get("/summary?tax_id=all&year=2024").text
    assert "23.45" in theirs_only and "123.45" not in theirs_only and "100.00" not in theirs_only


# 来源核对 ---------------------------------------------------------------------------------------------

MONTH = "2024-05"
TODAY = datetime(2024, 6, 10, 9, 30)


def pool_as_workbook_invoices(app, month: str = MONTH) -> list[dict]:
    """The month's pool, written back as e-tax export invoices: the file a user would export later."""
    with app.app_context():
        invoices = db.session.scalars(select(Invoice).where(Invoice.month == month).order_by(Invoice.key)).all()
        lines = {}
        for line in db.session.scalars(select(InvoiceLine).order_by(InvoiceLine.line_no)):
            lines.setdefault(line.invoice_key, []).append(make_line(
                line.name, line.amount, line.tax_rate, tax=line.tax, total=line.total, tax_code=line.tax_code,
                quantity=line.quantity, unit_price=line.unit_price, unit=line.unit, spec=line.spec))
        built = [digital_invoice(
            i.key, lines[i.key], i.issued_at.strftime("%Y-%m-%d %H:%M:%S"), kind=i.type_name, status=i.status,
            is_red=i.is_red, remark=i.remark or "", buyer_tax_id=i.buyer_tax_id, buyer_name=i.buyer_name,
            issuer=i.issuer, amount=money(i.amount), tax=money(i.tax), total=money(i.total))
            for i in invoices]
        db.session.remove()
    return built


def test_difference_report_between_a_leqi_download_and_a_later_file(app, runner, client, tmp_path, work):
    """乐企 downloads 数电普票 of May; a later export changes one status and one buyer, lacks one invoice
    and adds a 数电普票 and a paper invoice: the report lists exactly those, with both values."""
    app.config["CLOCK_NOW"] = TODAY
    SandboxControl(app.config["SANDBOX_DB"]).control(today=TODAY.date().isoformat(), processing_polls=0)
    downloaded = runner.invoke(args=["download", "--tax-id", DEMO_TAX_ID, "--as", "caiwu", "--wait",
                                     "--channel", "leqi", "--from", MONTH, "--to", MONTH, "--type", "82"])
    assert downloaded.exit_code == 0, downloaded.output
    built = pool_as_workbook_invoices(app)
    blues = [i for i in built if not i["is_red"] and i["status"] == "正常"]
    flushed, renamed, missing, repriced = blues[0], blues[1], blues[2], blues[3]
    flushed["status"] = "已红冲-全额"
    renamed["buyer_name"] = "改名后的购买方有限公司"
    leqi_tax = repriced["tax"]
    repriced["tax"] += Decimal("0.01")
    repriced["total"] += Decimal("0.01")
    built.remove(missing)
    extra = digital_invoice("24339000000000000099", [make_line("*信息技术服务*运维服务", "88.00", "6%")],
                            "2024-05-30 10:00:00")
    paper = legacy_invoice("033001900222", "00000002", [make_line("*信息技术服务*运维服务", "66.00", "6%")],
                           "2024-05-30 11:00:00", kind="增值税普通发票")
    build_workbook(tmp_path / "later.xlsx", built + [extra, paper])
    app.config["CLOCK_NOW"] = datetime(2024, 6, 12, 15, 0)
    _import(runner, tmp_path / "later.xlsx")

    report = cli_json(runner, "pool", "diff", "--tax-id", DEMO_TAX_ID, "--month", MONTH)
    assert report["sources"]["leqi"]["invoices"] == len(built) + 1
    assert report["sources"]["file"]["invoices"] == len(built) + 2
    assert report["sources"]["leqi"]["last_synced"] == "2024-06-10 09:30:00"
    assert report["counts"] == {"invoices": len(built) + 3, "only_one": 2, "different": 3}
    different = {e["key"]: e for e in report["different"]}
    assert different[flushed["digital_number"]]["fields"] == ["status"]
    assert {s: v["status"] for s, v in different[flushed["digital_number"]]["values"].items()} == {
        "file": "已红冲-全额", "leqi": "正常"}
    assert different[renamed["digital_number"]]["fields"] == ["buyer_name"]
    assert different[renamed["digital_number"]]["values"]["file"]["buyer_name"] == "改名后的购买方有限公司"
    assert different[repriced["digital_number"]]["fields"] == ["tax", "total"]
    assert {s: v["tax"] for s, v in different[repriced["digital_number"]]["values"].items()} == {
        "file": f"{leqi_tax + Decimal('0.01'):.2f}", "leqi": f"{leqi_tax:.2f}"}
    only = {e["key"]: (e["source"], e["missing"]) for e in report["only_one"]}
    assert only == {missing["digital_number"]: ("leqi", ["file"]), extra["digital_number"]: ("file", ["leqi"])}
    assert different[flushed["digital_number"]]["values"]["leqi"]["amount"] == f"{money(flushed['amount']):.2f}"

    login(client)
    page = client.get(f"/reconcile?tax_id={DEMO_TAX_ID}&month={MONTH}").text
    assert 'data-count="different">3 份' in page and 'data-count="only_one">2 份' in page
    assert "改名后的购买方有限公司" in page and "已红冲-全额" in page
    empty = client.get(f"/reconcile?tax_id={DEMO_TAX_ID}&month=2024-01").text  # one answer
    assert "本月发票池中没有该企业的发票" in empty and "本月只有一个来源同步过" not in empty
    coverage = client.get(f"/pool/coverage?tax_id={DEMO_TAX_ID}&year=2024").text
    assert coverage.count("来源差异") == 1 and f"month={MONTH}" in coverage

    sheets = openpyxl.load_workbook(io.BytesIO(
        client.get(f"/reconcile/export?tax_id={DEMO_TAX_ID}&month={MONTH}").data))
    rows = list(sheets["来源间差异"].iter_rows(values_only=True))
    assert len(rows) == 4
    header = rows[0]
    flushed_row = next(r for r in rows[1:] if r[0] == flushed["digital_number"])
    assert flushed_row[2] == "发票状态"
    assert flushed_row[header.index("导入电子税局文件-发票状态")] == "已红冲-全额"
    assert flushed_row[header.index("乐企-发票状态")] == "正常"
    assert len(list(sheets["仅一个来源有"].iter_rows(values_only=True))) == 3


def test_sources_are_kept_per_invoice_and_a_reimport_only_moves_the_last_seen_time(app, runner, tmp_path):
    invoice = digital_invoice("24330000000000000021", [make_line("*信息技术服务*运维服务", "10.00", "6%")],
                              "2024-07-01 10:00:00")
    build_workbook(tmp_path / "a.xlsx", [invoice])
    app.config["CLOCK_NOW"] = datetime(2024, 8, 1, 9, 0)
    _import(runner, tmp_path / "a.xlsx")
    app.config["CLOCK_NOW"] = datetime(2024, 8, 2, 9, 0)
    _import(runner, tmp_path / "a.xlsx")
    with app.app_context():
        [row] = db.session.scalars(select(InvoiceSource)).all()
        assert (row.source, row.first_seen_at, row.last_seen_at) == (
            "file", datetime(2024, 8, 1, 9), datetime(2024, 8, 2, 9))
        assert (row.status, money(row.amount), row.month, row.tax_id) == (
            "正常", Decimal("10.00"), "2024-07", DEMO_TAX_ID)
    report = cli_json(runner, "pool", "diff", "--tax-id", DEMO_TAX_ID, "--month", "2024-07")
    assert report["counts"] == {"invoices": 1, "only_one": 0, "different": 0}


def _marks_as_reports_say(app, client) -> set[str]:
    """The months 同步覆盖 marks 来源差异, checked against 来源核对's own report of every month of the year."""
    from channels.months import year_months
    from webapp.reconcile import differing_months, source_report

    page = client.get(f"/pool/coverage?tax_id={DEMO_TAX_ID}&year=2024").text
    with app.app_context():
        marked = differing_months(DEMO_TAX_ID, year_months(2024))
        reported = {m for m in year_months(2024) if any(
            source_report(DEMO_TAX_ID, m)["counts"][c] for c in ("only_one", "different"))}
        db.session.remove()
    assert marked == reported and page.count("来源差异") == len(marked)
    assert all(f"month={m}" in page for m in marked)
    return marked


def test_coverage_marks_follow_each_import_as_the_reports_do(app, runner, client, tmp_path, work):
    """(docs/performance.md, 同步覆盖 with two sources) 来源差异 is read from findings kept per month:
    after each import the marked months are those whose 来源核对 lists something, and only those."""
    app.config["CLOCK_NOW"] = TODAY
    SandboxControl(app.config["SANDBOX_DB"]).control(today=TODAY.date().isoformat(), processing_polls=0)
    downloaded = runner.invoke(args=["download", "--tax-id", DEMO_TAX_ID, "--as", "caiwu", "--wait",
                                     "--channel", "leqi", "--from", "2024-04", "--to", MONTH, "--type", "82"])
    assert downloaded.exit_code == 0, downloaded.output
    login(client)
    assert _marks_as_reports_say(app, client) == set()  # one source only
    april, may = pool_as_workbook_invoices(app, "2024-04"), pool_as_workbook_invoices(app)
    assert april and may
    build_workbook(tmp_path / "same.xlsx", april + may)
    _import(runner, tmp_path / "same.xlsx")
    work()
    with app.app_context():  # the batch's end counted the findings of the months it touched: no view waits
        from webapp.models import InvoiceMonthSummary

        kept = db.session.scalars(select(InvoiceMonthSummary).filter_by(tax_id=DEMO_TAX_ID)).all()
        assert {row.month for row in kept} >= {"2024-04", MONTH}
        assert all(row.sources is not None and row.sources_version == row.version for row in kept)
        db.session.remove()
    assert _marks_as_reports_say(app, client) == set()  # two sources, same invoices and values

    may[0]["buyer_name"] = "改名后的购买方有限公司"
    build_workbook(tmp_path / "renamed.xlsx", april + may)
    _import(runner, tmp_path / "renamed.xlsx")
    assert _marks_as_reports_say(app, client) == {MONTH}

    build_workbook(tmp_path / "extra.xlsx", [digital_invoice(
        "24339000000000000098", [make_line("*信息技术服务*运维服务", "88.00", "6%")], "2024-04-30 10:00:00",
        kind="增值税普通发票")])
    _import(runner, tmp_path / "extra.xlsx")  # a kind 乐企 did not download: not missing from it
    assert _marks_as_reports_say(app, client) == {MONTH}
    build_workbook(tmp_path / "extra82.xlsx", [digital_invoice(
        "24339000000000000099", [make_line("*信息技术服务*运维服务", "66.00", "6%")], "2024-04-30 11:00:00")])
    _import(runner, tmp_path / "extra82.xlsx")  # a kind 乐企 downloaded: missing from it
    assert _marks_as_reports_say(app, client) == {"2024-04", MONTH}


def test_the_page_lists_the_first_hundred_invoices_one_source_has_and_the_export_all(app, runner, client, tmp_path,
                                                                                      work):
    """(docs/performance.md, Five million invoices on PostgreSQL) A month where 乐企 delivered none of a
    file's 105 invoices: the page counts them all, lists the first 100 and points to the export."""
    app.config["CLOCK_NOW"] = TODAY
    SandboxControl(app.config["SANDBOX_DB"]).control(today=TODAY.date().isoformat(), processing_polls=0)
    build_workbook(tmp_path / "ours.xlsx", [digital_invoice(
        f"243390000000000{n:05d}", [make_line("*信息技术服务*运维服务", "10.00", "6%")], "2024-05-20 10:00:00")
        for n in range(105)])
    _import(runner, tmp_path / "ours.xlsx")
    downloaded = runner.invoke(args=["download", "--tax-id", DEMO_TAX_ID, "--as", "caiwu", "--wait",
                                     "--channel", "leqi", "--from", MONTH, "--to", MONTH, "--type", "82"])
    assert downloaded.exit_code == 0, downloaded.output
    report = cli_json(runner, "pool", "diff", "--tax-id", DEMO_TAX_ID, "--month", MONTH)
    lone = report["counts"]["only_one"]
    assert lone == len(report["only_one"]) >= 105

    login(client)
    page = client.get(f"/reconcile?tax_id={DEMO_TAX_ID}&month={MONTH}").text
    listed = page.split('id="only-one"')[1]
    assert f'data-count="only_one">{lone:,} 份' in page and listed.count("<tr data-key=") == 100
    assert f"仅显示前 100 份，全部 {lone:,} 份请导出 Excel 查看" in listed
    first = report["only_one"][0]["key"]  # each listed invoice opens its detail page
    assert f'<a href="/pool/{first}">{first}</a>' in listed and first in client.get(f"/pool/{first}").text
    sheets = openpyxl.load_workbook(io.BytesIO(client.get(f"/reconcile/export?tax_id={DEMO_TAX_ID}&month={MONTH}")
                                               .data))
    assert len(list(sheets["仅一个来源有"].iter_rows(values_only=True))) == lone + 1


@pytest.mark.parametrize("args, message", [(["--month", "2024-13"], "之间的 YYYY-MM：2024-13")])
def test_diff_refuses_a_bad_month(runner, args, message):
    result = runner.invoke(args=["pool", "diff", "--tax-id", DEMO_TAX_ID, *args])
    assert result.exit_code == 2 and message in result.stderr  # a usage error, with the reason


def test_the_months_an_import_touched_are_summed_when_its_batch_ends(app, runner, tmp_path, work):
    """(docs/performance.md, 销项汇总 right after an import) The first view after an import reads kept
    figures; nobody has viewed it yet. The worker sums them once the batch has ended (`import-file
    --wait` returns at the end and leaves that to the worker)."""
    from webapp.models import InvoiceMonthSummary
    from webapp.summary import summary_json, year_summary

    invoices = random_invoices(60, seed=21, year=2024)
    build_workbook(tmp_path / "export.xlsx", invoices)
    _import(runner, tmp_path / "export.xlsx")
    work()
    with app.app_context():
        rows = db.session.scalars(select(InvoiceMonthSummary).filter_by(tax_id=DEMO_TAX_ID)).all()
        assert {row.month for row in rows} == {str(i["issued_at"])[:7] for i in invoices}
        assert all(row.summary is not None and row.summary_version == row.version for row in rows)
        kept = {row.month: row.summary for row in rows}
        assert summary_json(year_summary([DEMO_TAX_ID], 2024)) == expected_summary(invoices, 2024)
        db.session.rollback()
        assert {row.month: row.summary for row in db.session.scalars(
            select(InvoiceMonthSummary).filter_by(tax_id=DEMO_TAX_ID))} == kept, "the view found nothing to sum"


def test_months_written_before_a_failed_last_month_are_summed_too(app, runner, work, tmp_path):
    """A batch ending 部分成功 on its failed last month still leaves the written months summed."""
    from jobs.tasks import parse_upload
    from webapp.batches import staging_dir
    from webapp.models import Batch, InvoiceMonthSummary

    invoices = random_invoices(60, seed=22, year=2024)
    build_workbook(tmp_path / "export.xlsx", invoices)
    batch_no = cli_json(runner, "import-file", "--tax-id", DEMO_TAX_ID, "--file", str(tmp_path / "export.xlsx"),
                    "--as", "caiwu")["batch_no"]
    with app.app_context():
        batch = db.session.scalar(select(Batch).filter_by(batch_no=batch_no))
        parse_upload(batch.id)  # in this process, so the last month can be lost before the worker runs
        last = max(staging_dir(batch).glob("*.staged"))
        last.unlink()
    work()
    with app.app_context():
        batch = db.session.scalar(select(Batch).filter_by(batch_no=batch_no))
        assert batch.status == "partial" and batch.subtasks[-1].period == last.stem
        assert batch.subtasks[-1].status == "failed"
        rows = db.session.scalars(select(InvoiceMonthSummary).filter_by(tax_id=DEMO_TAX_ID)).all()
        assert rows and last.stem not in {row.month for row in rows}
        assert all(row.summary is not None and row.summary_version == row.version for row in rows)
