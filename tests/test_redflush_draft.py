"""红冲草稿 (docs/rules.md, 红冲草稿): what is left of a blue invoice line by line, and the draft of the
red-flush form, on the shapes real exports hold, imported as a user imports them. Every figure is
worked by hand in the comments beside it.
"""
from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from io import BytesIO

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import AuditLog, Company, Invoice, audit_companies
from webapp.transactions import write_transaction

from .conftest import DEMO_TAX_ID, cli_json, login
from .workbook_builder import build_workbook, digital_invoice, discount_line, legacy_invoice, listed_line, make_line

BUYER = "北京示例贸易有限公司"
SPECIAL = "24900123400000000101"  # 数电专票: three lines, three reds (a return, a line whole, an allowance)
POWER = "24900123400000000201"  # 数电普票: one line flushed in part, later the rest
DISCOUNTED = "24900123400000000301"  # a line and its 折扣行
PAPER_DIGITAL = "24900123400000000401"  # 数电纸质发票 (code and number too)
LISTED = "044002400111-00300001"  # legacy paper 增值税普通发票 with a 销货清单
LEGACY_SPECIAL = "044002400222-00400001"  # legacy 税控 增值税专用发票

RED_REMARK = "被红冲蓝字数电发票号码：{} 红字发票信息确认单编号：{}"


def _red(number: str, blue: str, lines: list[dict], when: str, confirm: str, **fields) -> dict:
    return digital_invoice(number, lines, when, is_red=True, red_of=blue, remark=RED_REMARK.format(blue, confirm),
                           **fields)


def shapes() -> list[dict]:
    """The blue invoices and their reds, as the 全量发票查询 export writes them."""
    switch = make_line("*计算机网络设备*交换机", "5000.00", quantity="10", unit_price="500", unit="台")
    service = make_line("*信息技术服务*运维服务", "3000.00", "6%", tax_code="3040203000000000000")
    resistor = make_line("*电子元件*贴片电阻(0603)", "350.00", quantity="1000", unit_price="0.35",
                         tax_code="1090416010000000000", spec="0603")
    special = digital_invoice(SPECIAL, [switch, service, resistor], "2024-03-01 10:00:00",
                              kind="数电发票（增值税专用发票）", status="已红冲-部分")
    reds = [
        # 销货退回 of 3 switches: 3 × 500 = 1500.00, tax 13% = 195.00
        _red("24900123400000009101", SPECIAL, [make_line("*计算机网络设备*交换机", "-1500.00", quantity="-3",
                                                          unit_price="500", unit="台")],
             "2024-03-10 09:00:00", "1", kind="数电发票（增值税专用发票）"),
        # the resistors returned whole: 1000 at 0.35 = 350.00, tax 45.50
        _red("24900123400000009102", SPECIAL, [make_line("*电子元件*贴片电阻(0603)", "-350.00", quantity="-1000",
                                                          unit_price="0.35", tax_code="1090416010000000000",
                                                          spec="0603")],
             "2024-03-11 09:00:00", "2", kind="数电发票（增值税专用发票）"),
        # 销售折让 of 1000.00 on the service, by amount (no quantity): tax 6% = 60.00
        _red("24900123400000009103", SPECIAL, [make_line("*信息技术服务*运维服务", "-1000.00", "6%",
                                                          tax_code="3040203000000000000")],
             "2024-03-12 09:00:00", "3", kind="数电发票（增值税专用发票）"),
    ]
    power = digital_invoice(POWER, [make_line("*供电*电力", "600.00", quantity="1000", unit_price="0.6",
                                              tax_code="1100301010000000000")], "2024-04-01 10:00:00")
    # 400 of 1000 kWh returned: 400 × 0.6 = 240.00, tax 31.20
    power_red = _red("24900123400000009201", POWER, [make_line("*供电*电力", "-240.00", quantity="-400",
                                                               unit_price="0.6", tax_code="1100301010000000000")],
                     "2024-04-10 09:00:00", "4")
    vegetables = make_line("*蔬菜*鲜蔬菜", "145335.54", "9%", quantity="10000", unit_price="14.533554", unit="千克",
                           tax_code="1010112000000000000")
    discounted = digital_invoice(DISCOUNTED, [vegetables, discount_line(vegetables, "14533.55")],
                                 "2024-05-01 10:00:00", kind="数电发票（增值税专用发票）")
    paper = digital_invoice(PAPER_DIGITAL, [make_line("*供电*电力", "433.63", tax_code="1100301010000000000")],
                            "2024-05-02 10:00:00", kind="数电纸质发票（普通发票）")
    paper["code"], paper["number"] = "144002400222", "00200001"
    list_lines = [make_line("*电子元件*贴片电阻(0603)", "300.00"), make_line("*电子元件*电容（贴片）", "700.00")]
    listed = legacy_invoice("044002400111", "00300001", [listed_line(list_lines), *list_lines], "2024-05-03 10:00:00",
                            kind="增值税普通发票", status="已红冲-部分")
    # its red names the list as a whole: one line 详见对应正数发票及清单 of 200.00, tax 26.00
    listed_red = legacy_invoice("044002400111", "00300009",
                                [make_line("详见对应正数发票及清单", "-200.00", tax_code="")], "2024-05-20 10:00:00",
                                kind="增值税普通发票", is_red=True, red_of=LISTED,
                                remark="对应正数发票代码:044002400111 号码:00300001")
    legacy_special = legacy_invoice("044002400222", "00400001", [
        make_line("*信息技术服务*运维服务", "10000.00", "6%", tax_code="3040203000000000000")],
        "2024-05-04 10:00:00", kind="增值税专用发票")
    # a legacy red of 1000.00 of it, tax 60.00
    legacy_red = legacy_invoice("044002400222", "00400009", [
        make_line("*信息技术服务*运维服务", "-1000.00", "6%", tax_code="3040203000000000000")],
        "2024-05-21 10:00:00", kind="增值税专用发票", is_red=True, red_of=LEGACY_SPECIAL,
        remark="对应正数发票代码:044002400222号码:00400001")
    return [special, *reds, power, power_red, discounted, paper, listed, listed_red, legacy_special, legacy_red]


def import_invoices(runner, tmp_path, invoices: list[dict], name: str = "shapes.xlsx") -> None:
    path = tmp_path / name
    build_workbook(path, invoices)
    result = runner.invoke(args=["import-file", "--tax-id", DEMO_TAX_ID, "--file", str(path), "--as", "caiwu",
                                 "--wait"])
    assert result.exit_code == 0, result.output


def set_usage(app, key: str, vat_usage: str) -> None:
    """The buyer's usage as a download would have brought it, fetched just now through 乐企."""
    with app.app_context():
        with write_transaction():
            db.session.execute(Invoice.__table__.update().where(Invoice.key == key).values(
                vat_usage=vat_usage, entry_status="01", usage_channel="leqi", usage_updated_at=datetime.now(),
                red_lock=False))
        db.session.remove()


@pytest.fixture
def pool(app, runner, tmp_path):
    import_invoices(runner, tmp_path, shapes())
    for key in (SPECIAL, POWER, DISCOUNTED, LISTED, LEGACY_SPECIAL):
        set_usage(app, key, "1")  # 已申请抵扣: partial flushes allowed
    set_usage(app, PAPER_DIGITAL, "0")  # nothing confirmed: a full flush only
    return app


def draft(runner, key: str, reason: str, *lines: str):
    args = ["pool", "redflush-draft", "--key", key, "--reason", reason]
    for line in lines:
        args += ["--line", line]
    return runner.invoke(args=args)


def draft_json(runner, key: str, reason: str, *lines: str) -> dict:
    result = draft(runner, key, reason, *lines)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def figures(data: dict) -> list[tuple]:
    return [(line["line_no"], line["quantity"], line["amount"], line["tax"]) for line in data["lines"]]


# ---- what is left, per line -------------------------------------------------------------------------

def test_three_reds_are_taken_from_the_lines_they_match(pool):
    from webapp.pool import find_invoice, line_balances, red_invoices_of

    with pool.app_context():
        blue = find_invoice(SPECIAL)
        balance = line_balances(blue, red_invoices_of(blue))
        rows = {row.line.line_no: (row.flushed_quantity, row.flushed_amount, row.flushed_tax,
                                   row.left_quantity, row.left_amount, row.left_tax) for row in balance.lines}
    D = Decimal
    # switches: 10 − 3 = 7 left, 5000.00 − 1500.00 = 3500.00, 650.00 − 195.00 = 455.00
    assert rows[1] == (D("3"), D("1500.00"), D("195.00"), D("7"), D("3500.00"), D("455.00"))
    # service: by amount only, 3000.00 − 1000.00 = 2000.00, 180.00 − 60.00 = 120.00, no quantity
    assert rows[2] == (D("0"), D("1000.00"), D("60.00"), None, D("2000.00"), D("120.00"))
    # resistors: flushed whole
    assert rows[3] == (D("1000"), D("350.00"), D("45.50"), D("0"), D("0.00"), D("0.00"))
    # the invoice: 8350.00 − 2850.00 = 5500.00; 875.50 − 300.50 = 575.00
    assert (balance.amount_left, balance.tax_left) == (D("5500.00"), D("575.00"))
    assert len(balance.matched) == 3 and balance.whole == ()


def test_pool_show_gives_what_is_left_per_line(pool, runner):
    shown = cli_json(runner, "pool", "show", SPECIAL)["flushed_lines"]
    first = shown["lines"][0]
    assert (first["flushed_quantity"], first["left_quantity"], first["left_amount"], first["left_tax"]) == (
        "3", "7", "3500.00", "455.00")
    assert (shown["amount_left"], shown["tax_left"], len(shown["matched_reds"])) == ("5500.00", "575.00", 3)
    listed = cli_json(runner, "pool", "show", LISTED)["flushed_lines"]
    assert [red["key"] for red in listed["whole_invoice_reds"]] == ["044002400111-00300009"]


def test_the_invoice_page_shows_flushed_and_left_per_line(pool, client):
    login(client)
    page = client.get(f"/pool/{SPECIAL}").text
    assert "红冲明细与草稿" in page
    row = page.split('data-line="1"')[1].split("</tr>")[0]
    assert ">1,500.00<" in row and ">195.00<" in row and ">7<" in row and ">3,500.00<" in row and ">455.00<" in row
    assert "发票剩余可红冲金额 5,500.00 元、税额 575.00 元" in page
    assert 'name="qty_1"' in page and 'name="amount_2"' in page


def test_a_red_naming_the_list_as_a_whole_counts_against_the_invoice_and_the_page_says_so(pool, client):
    login(client)
    page = client.get(f"/pool/{LISTED}").text
    assert "044002400111-00300009" in page and "无法逐行对应，按整张发票计" in page
    assert "详见对应正数发票及清单" in page
    # the 销货清单 line is not a line: the list's two lines, each still whole (300.00 and 700.00)
    assert "(详见销货清单)" not in page.split('id="redflush"')[1].split("</table>")[0]
    assert "发票剩余可红冲金额 800.00 元、税额 104.00 元" in page  # 1000.00 − 200.00; 130.00 − 26.00


# ---- drafts by reason ------------------------------------------------------------------------------

def test_a_return_by_quantity_takes_its_amount_from_the_unit_price(pool, runner):
    data = draft_json(runner, SPECIAL, "02", "1=2")
    assert figures(data) == [(1, "-2", "-1000.00", "-130.00")]  # 2 × 500 = 1000.00; 13% = 130.00
    assert data["lines"][0]["unit_price"] == "500"
    assert (data["amount"], data["tax"], data["total"]) == ("-1000.00", "-130.00", "-1130.00")
    assert data["document"] == "红字发票信息确认单" and data["reason_label"] == "销货退回"


def test_the_rest_of_a_line_takes_exactly_what_is_left(pool, runner):
    data = draft_json(runner, SPECIAL, "销货退回", "1=7")
    assert figures(data) == [(1, "-7", "-3500.00", "-455.00")] and data["lines"][0]["whole"] is True


def test_an_allowance_gives_an_amount_only_and_rounds_its_tax_half_up(pool, runner):
    data = draft_json(runner, SPECIAL, "04", "1=100.50")
    # 100.50 × 13% = 13.065 → 13.07 (half up, as the bureau rounds; half-even would give 13.06)
    assert figures(data) == [(1, None, "-100.50", "-13.07")] and data["lines"][0]["unit_price"] is None


def test_a_service_stopped_by_amount_on_a_line_without_quantity(pool, runner):
    data = draft_json(runner, SPECIAL, "03", "2=333.33")
    assert figures(data) == [(2, None, "-333.33", "-20.00")]  # 333.33 × 6% = 19.9998 → 20.00


def test_invoicing_error_flushes_every_line_left_whole(pool, runner):
    data = draft_json(runner, SPECIAL, "01")
    # line 3 has nothing left; lines 1 and 2 whole: the invoice's 5500.00 and 575.00 to the cent
    assert figures(data) == [(1, "-7", "-3500.00", "-455.00"), (2, None, "-2000.00", "-120.00")]
    assert (data["amount"], data["tax"]) == ("-5500.00", "-575.00")
    assert data["fields"]["此前已红冲金额"] == "2850.00"
    assert data["confirm"] == f"购买方（{BUYER}）须在 72 小时内确认（自提交时起算，超时未确认自动作废）"
    fields = data["fields"]
    assert fields["销售方纳税人识别号"] == DEMO_TAX_ID and fields["购买方名称"] == BUYER
    assert fields["蓝字发票数电发票号码"] == SPECIAL and fields["蓝字发票开票日期"] == "2024-03-01 10:00:00"
    assert fields["红冲原因"] == "开票有误（01）" and fields["蓝字发票金额"] == "8350.00"


@pytest.mark.parametrize("reason, lines, message", [
    ("02", ("1=8",), "第 1 行红冲数量 8 超过剩余数量 7"),
    ("03", ("2=2000.01",), "第 2 行红冲金额 2000.01 元超过该行剩余金额 2000.00 元"),
    ("02", ("3=1",), "第 3 行已无剩余可红冲金额"),
    ("02", ("2=1",), "第 2 行没有数量或单价，不能按数量红冲"),
    ("04", ("1=qty:1",), "销售折让只填金额，不填数量"),
    ("02", ("1=amount:100.00",), "销货退回按数量红冲"),
    ("01", ("1=1",), "开票有误只能全额红冲"),
    ("02", ("9=1",), "第 9 行不是这张发票的可红冲行（可选：1、2、3）"),
    ("02", ("1=1", "1=2"), "第 1 行填写了两次"),
    ("02", (), "请至少填写一行的红冲数量"),
    ("04", ("1=1.234",), "金额应为大于 0、最多两位小数的数字"),
    ("02", ("1=abc",), "数量应为大于 0"),
    ("02", ("x=1",), "行的写法应为"),
])
def test_what_the_rules_refuse_exits_2_with_the_reason(pool, runner, reason, lines, message):
    result = draft(runner, SPECIAL, reason, *lines)
    assert result.exit_code == 2 and message in result.output


def test_a_part_then_the_rest_then_nothing_is_left(pool, runner, tmp_path):
    first = draft_json(runner, POWER, "02", "1=600")
    # 1000 − 400 = 600 left: 600 × 0.6 = 360.00, and the tax left 78.00 − 31.20 = 46.80 (= 360.00 × 13%)
    assert figures(first) == [(1, "-600", "-360.00", "-46.80")]
    rest = _red("24900123400000009202", POWER, [make_line("*供电*电力", "-360.00", quantity="-600", unit_price="0.6",
                                                          tax_code="1100301010000000000")], "2024-04-20 09:00:00", "5")
    import_invoices(runner, tmp_path, [rest], "rest.xlsx")
    result = draft(runner, POWER, "02", "1=1")
    assert result.exit_code == 1 and "红冲预检未通过" in result.output and "已全额红冲" in result.output


def test_a_discount_line_travels_with_the_line_it_discounts(pool, runner, client):
    data = draft_json(runner, DISCOUNTED, "02", "1=2500")
    # net 145335.54 − 14533.55 = 130801.99 for 10000 kg: 13.080199 a kg; 2500 kg = 32700.4975 → 32700.50;
    # 9% = 2943.045 → 2943.05
    assert figures(data) == [(1, "-2500", "-32700.50", "-2943.05")]
    assert data["lines"][0]["unit_price"] == "13.080199" and data["lines"][0]["discount_lines"] == [2]
    whole = draft_json(runner, DISCOUNTED, "01")
    # the pair as one line: tax 13080.20 − 1308.02 = 11772.18 (130801.99 × 9% = 11772.1791, within 0.06)
    assert figures(whole) == [(1, "-10000", "-130801.99", "-11772.18")]
    login(client)
    assert "含折扣行 2" in client.get(f"/pool/{DISCOUNTED}").text


def test_a_listed_invoice_is_drafted_within_what_the_whole_invoice_has_left(pool, runner):
    refused = draft(runner, LISTED, "01")
    assert refused.exit_code == 2 and "池中有 1 张红字发票无法逐行对应" in refused.output
    # the (详见销货清单) row was line 1 of the export and is not a line: the list's lines are 2 and 3
    over = draft(runner, LISTED, "04", "2=300", "3=700")
    assert over.exit_code == 2 and "本次红冲金额合计 1000.00 元超过发票剩余可红冲金额 800.00 元" in over.output
    data = draft_json(runner, LISTED, "04", "3=700")
    assert figures(data) == [(3, None, "-700.00", "-91.00")]
    # a legacy paper normal invoice needs no form: the seller issues directly, quoting code and number
    assert data["document"] == "红字发票（税控普通发票，直接开具）"
    assert data["confirm"].startswith("无需信息表：销方直接开具红字发票")
    assert data["fields"]["蓝字发票代码"] == "044002400111" and data["fields"]["蓝字发票号码"] == "00300001"
    assert any("044002400111-00300009" in note and "按整张发票计" in note for note in data["notes"])


def test_a_paper_digital_invoice_with_nothing_confirmed_is_drafted_whole(pool, runner):
    refused = draft(runner, PAPER_DIGITAL, "04", "1=100")
    assert refused.exit_code == 2 and "该发票仅可全额红冲" in refused.output
    data = draft_json(runner, PAPER_DIGITAL, "04")
    assert figures(data) == [(1, None, "-433.63", "-56.37")]  # 433.63 × 13% = 56.3719 → 56.37
    assert data["confirm"] == "无需购买方确认：销方提交确认单即开具红字发票（确认即开票），红字纸质发票须手工开具"
    assert data["fields"]["蓝字发票代码"] == "144002400222" and data["fields"]["蓝字发票数电发票号码"] == PAPER_DIGITAL


def test_a_legacy_special_invoice_uses_the_information_table(pool, runner):
    data = draft_json(runner, LEGACY_SPECIAL, "03", "1=2500.00")
    assert figures(data) == [(1, None, "-2500.00", "-150.00")]  # 2500.00 × 6% = 150.00
    assert data["document"] == "红字增值税专用发票信息表"
    assert data["fields"]["对应蓝字专用发票代码"] == "044002400222"
    assert data["fields"]["对应蓝字专用发票号码"] == "00400001"
    assert data["confirm"] == f"购买方（{BUYER}）须确认后方可开具红字发票"
    # the legacy red of 1000.00 matched its line: 9000.00 left
    over = draft(runner, LEGACY_SPECIAL, "03", "1=9000.01")
    assert over.exit_code == 2 and "剩余金额 9000.00 元" in over.output


def test_no_draft_while_usage_is_unknown_says_what_to_do_first(pool, runner):
    with pool.app_context():
        with write_transaction():
            db.session.execute(Invoice.__table__.update().where(Invoice.key == SPECIAL).values(usage_updated_at=None))
        db.session.remove()
    result = draft(runner, SPECIAL, "01")
    assert result.exit_code == 1 and "请先获取该月用途状态" in result.output


def test_a_draft_changes_nothing_in_the_pool_and_is_in_the_audit_log(pool, runner):
    with pool.app_context():
        before = [(i.key, str(i.amount), i.status, str(i.flushed_amount)) for i in db.session.scalars(select(Invoice))]
    draft_json(runner, SPECIAL, "02", "1=2")
    with pool.app_context():
        after = [(i.key, str(i.amount), i.status, str(i.flushed_amount)) for i in db.session.scalars(select(Invoice))]
        entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "redflush.draft"))
        from webapp.accounts.audit import details_text

        text = details_text(entry)
        linked = db.session.scalars(select(Company.tax_id)
                                    .join(audit_companies, audit_companies.c.company_id == Company.id)
                                    .where(audit_companies.c.audit_id == entry.id)).all()
    assert before == after
    assert entry.target == SPECIAL and entry.username == "系统" and linked == [DEMO_TAX_ID]
    assert "红冲原因：销货退回" in text and "生成于：命令行" in text and "红冲金额：-1000.00" in text
    assert f"税号：{DEMO_TAX_ID}" in text


# ---- the page, the print page, the workbook, and who may see them -----------------------------------

def test_the_page_drafts_through_htmx_and_offers_print_and_excel(pool, client):
    login(client)
    answer = client.post(f"/pool/{SPECIAL}/redflush", data={"reason": "02", "qty_1": "2"},
                         headers={"HX-Request": "true", "HX-Target": "redflush-draft"}).text
    assert "红字发票信息确认单（草稿）" in answer and "-1,000.00" in answer and "-130.00" in answer
    assert f"/pool/{SPECIAL}/redflush/print?reason=02&amp;qty_1=2" in answer
    refused = client.post(f"/pool/{SPECIAL}/redflush", data={"reason": "02", "qty_1": "8"}).text
    assert 'id="draft-refused"' in refused and "第 1 行红冲数量 8 超过剩余数量 7" in refused
    printed = client.get(f"/pool/{SPECIAL}/redflush/print?reason=02&qty_1=2")
    assert printed.status_code == 200 and "蓝字发票行号" in printed.text and "打印" in printed.text
    for link in ("redflush/print", "redflush.xlsx"):  # a link edited past what is left: why, not a draft
        over = client.get(f"/pool/{SPECIAL}/{link}?reason=02&qty_1=8")
        assert over.status_code == 400 and "第 1 行红冲数量 8 超过剩余数量 7" in over.text


def test_the_workbook_holds_the_fields_and_numbers_as_numbers(pool, client):
    login(client)
    response = client.get(f"/pool/{SPECIAL}/redflush.xlsx?reason=01")
    assert response.status_code == 200 and "attachment" in response.headers["Content-Disposition"]
    rows = list(load_workbook(BytesIO(response.data), read_only=True).active.iter_rows(values_only=True))
    fields = {row[0]: row[1] for row in rows if row and row[0] and row[1] is not None}
    assert fields["红冲原因"] == "开票有误（01）" and fields["蓝字发票数电发票号码"] == SPECIAL
    assert fields["本次红冲金额合计"] == -5500 and fields["本次红冲税额合计"] == -575
    header = rows.index(("蓝字发票行号", "项目名称", "规格型号", "单位", "数量", "单价", "金额", "税率/征收率", "税额"))
    assert rows[header + 1][:1] == (1,) and rows[header + 1][4:] == (-7, 500, -3500, "13%", -455)
    assert rows[header + 3][6] == -5500 and rows[header + 3][8] == -575


def test_other_companies_invoices_answer_404_everywhere(pool, client, runner):
    cli_json(runner, "enterprise", "add", "--tax-id", "91110000MA00000001", "--name", "别家公司")
    cli_json(runner, "user", "add", "li", "--password", "secret123", "--grant", "91110000MA00000001")
    login(client, "li", "secret123")
    assert client.get(f"/pool/{SPECIAL}/redflush/print?reason=01").status_code == 404
    assert client.get(f"/pool/{SPECIAL}/redflush.xlsx?reason=01").status_code == 404
    assert client.post(f"/pool/{SPECIAL}/redflush", data={"reason": "01"}).status_code == 404
    with pool.app_context():
        assert db.session.scalar(select(AuditLog).where(AuditLog.action == "redflush.draft")) is None


# ---- matching, on lines written by hand (webapp.pool.flushed_lines) ----------------------------------

def _row(line_no, name, amount, tax, quantity=None, price=None, discount=False, rate="13%"):
    from types import SimpleNamespace

    return SimpleNamespace(line_no=line_no, name=name, tax_code="1", spec=None, unit=None, quantity=quantity,
                           unit_price=price, amount=Decimal(amount), tax_rate=rate, tax=Decimal(tax),
                           is_discount=discount)


def _balance(blue_rows, *reds):
    from webapp.pool.flushed_lines import RedFigures, balances, blue_lines

    lines = blue_lines(blue_rows, frozenset({"详见销货清单"}))
    figures = [RedFigures(f"red{n}", sum((r.amount for r in rows), Decimal(0)), sum((r.tax for r in rows), Decimal(0)),
                          rows) for n, rows in enumerate(reds, 1)]
    total = sum((r.amount for r in blue_rows if r.name != "(详见销货清单)"), Decimal(0))
    tax = sum((r.tax for r in blue_rows if r.name != "(详见销货清单)"), Decimal(0))
    return balances(lines, figures, total, tax)


def test_the_same_goods_on_two_lines_are_flushed_first_line_first():
    blue = [_row(1, "*钢材*螺纹钢", "1000.00", "130.00", "10", "100"),
            _row(2, "*钢材*螺纹钢", "500.00", "65.00", "5", "100")]
    # 12 returned: 10 from line 1 (1000.00, 130.00), the other 2 from line 2 (200.00, 26.00)
    balance = _balance(blue, [_row(1, "*钢材*螺纹钢", "-1200.00", "-156.00", "-12", "100")])
    assert [(r.left_quantity, r.left_amount, r.left_tax) for r in balance.lines] == [
        (Decimal("0"), Decimal("0.00"), Decimal("0.00")), (Decimal("3"), Decimal("300.00"), Decimal("39.00"))]


def test_a_red_flushing_more_than_its_line_has_counts_against_the_whole_invoice():
    blue = [_row(1, "*钢材*螺纹钢", "1000.00", "130.00", "10", "100"), _row(2, "*钢材*盘条", "300.00", "39.00")]
    balance = _balance(blue, [_row(1, "*钢材*盘条", "-400.00", "-52.00")], [])
    assert [red.why.value for red in balance.whole] == ["over_line", "no_lines"]
    assert "“*钢材*盘条”" in balance.whole[0].reason
    assert [r.left_amount for r in balance.lines] == [Decimal("1000.00"), Decimal("300.00")]  # untouched
    assert balance.amount_left == Decimal("900.00")  # 1300.00 − 400.00: the whole invoice still counts it


def test_a_discounted_line_is_one_line_and_a_kept_list_line_is_none():
    blue = [_row(1, "(详见销货清单)", "950.00", "123.50"), _row(2, "*钢材*螺纹钢", "1000.00", "130.00", "10", "100"),
            _row(3, "*钢材*螺纹钢", "-50.00", "-6.50", discount=True)]
    [row] = _balance(blue).lines
    assert (row.line.line_no, row.line.amount, row.line.tax, row.line.unit_price, row.line.discount_lines) == (
        2, Decimal("950.00"), Decimal("123.50"), Decimal("95"), (3,))
