"""Build workbooks shaped like the Electronic Tax Bureau's 全量发票查询 export, for tests and benchmarks.

The layout follows docs/etax-export.md: sheet 信息汇总表 (one row per line) then
发票基础信息 (one row per invoice, then the 合计行 totals row); text columns are string cells,
金额/税额/价税合计 are numbers. Every company and person is invented.

An invoice is a plain dict (see `digital_invoice`, `legacy_invoice`, `make_line`); `build_workbook`
writes them, optionally with many random ones, and returns the figures an import must yield.

Run `python tests/workbook_builder.py out.xlsx --mb 10` to write a benchmark-sized export.
"""
from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from openpyxl import Workbook

TAX_ID = "91330100MA2H4K7Q1X"
SELLER_NAME = "杭州示例科技有限公司"
DETAIL_SHEET = "信息汇总表"
BASIC_SHEET = "发票基础信息"
LISTED_LINE = "(详见销货清单)"
DIGITAL_ORIGIN = "电子发票服务平台"
LEGACY_ORIGIN = "增值税发票管理系统"

BASIC_HEADERS = [
    "序号", "发票代码", "发票号码", "数电发票号码", "销方识别号", "销方名称", "购方识别号", "购买方名称",
    "开票日期", "金额", "税额", "价税合计", "发票来源", "发票票种", "发票状态", "是否正数发票",
    "发票风险等级", "开票人", "备注",
]
DETAIL_HEADERS = [
    "序号", "发票代码", "发票号码", "数电发票号码", "销方识别号", "销方名称", "购方识别号", "购买方名称",
    "开票日期", "税收分类编码", "特定业务类型", "货物或应税劳务名称", "规格型号", "单位", "数量", "单价",
    "金额", "税率", "税额", "价税合计", "发票来源", "发票票种", "发票状态", "是否正数发票", "发票风险等级",
    "开票人", "备注",
]
EXTRA_SHEET_COLUMNS = {
    "建筑服务": ["跨区域涉税事项报验管理编号", "建筑服务发生地", "建筑项目名称"],
    "不动产经营租赁服务": ["产权证书/不动产权证号", "车牌号"],
    "旅客运输服务": ["出行人", "有效身份证号", "出行日期", "出发地", "到达地", "等级", "交通工具类型"],
    "货物运输服务": ["运输工具种类", "运输工具牌号", "起运地", "到达地", "运输货物名称"],
    "铁路电子客票": ["旅客姓名", "有效身份证号", "出发地", "到达地", "出行车次", "日期", "时间"],
    "机动车销售统一发票": ["车辆识别代号/车架号", "合格证号", "发动机号码", "商检号码", "产地"],
}
MONEY_COLUMNS = frozenset({"金额", "税额", "价税合计"})

# (发票票种 as exported, family, special?) — family: digital / digital_paper / legacy
KINDS = [
    ("数电发票（普通发票）", "digital", False),
    ("数电发票（增值税专用发票）", "digital", True),
    ("数电纸质发票（普通发票）", "digital_paper", False),
    ("数电纸质发票（增值税专用发票）", "digital_paper", True),
    ("增值税专用发票", "legacy", True),
    ("增值税普通发票", "legacy", False),
    ("增值税电子专用发票", "legacy", True),
    ("增值税电子普通发票", "legacy", False),
    ("增值税普通发票（卷式）", "legacy", False),
    ("道路通行费电子普通发票", "legacy", False),
    ("机动车销售统一发票", "legacy", False),
    ("二手车销售统一发票", "legacy", False),
    ("数电发票（铁路电子客票）", "digital", False),
    ("数电发票（航空运输电子客票行程单）", "digital", False),
]
KIND_WEIGHTS = [30, 25, 4, 2, 8, 8, 5, 8, 2, 2, 1, 1, 2, 2]
VOIDABLE = {"增值税专用发票", "增值税普通发票", "增值税普通发票（卷式）", "机动车销售统一发票"}
LISTABLE = {"增值税专用发票", "增值税普通发票"}
SPECIAL_BUSINESS = {"道路通行费电子普通发票": "通行费", "数电发票（铁路电子客票）": "铁路电子客票",
                    "机动车销售统一发票": "机动车"}

GOODS = [  # (name, 税收分类编码, 税率, 单位)
    ("*信息技术服务*运维服务", "3040203000000000000", "6%", "次"),
    ("*经纪代理服务*代理服务费", "3050100000000000000", "6%", "项"),
    ("*生活服务*餐饮服务", "3070401000000000000", "1%", "次"),
    ("*计算机网络设备*交换机", "1090512990000000000", "13%", "台"),
    ("*塑料制品*塑料包装袋", "1070101010000000000", "3%", "个"),
    ("*供电*电力", "1100301010000000000", "13%", "千瓦时"),
    ("*电子元件*贴片电阻(0603)", "1090416010000000000", "13%", "盘"),
    ("*电子元件*电容（贴片）", "1090416020000000000", "13%", "盘"),
    ("*农产品*蔬菜", "1010112000000000000", "免税", "千克"),
    ("*建筑服务*工程服务", "3050200000000000000", "9%", "项"),
    ("*不动产租赁*房屋租金", "3040502020200000000", "5%", "月"),
    ("*保险服务*代收车船税", "6130000000000000000", "不征税", None),
]
BUYERS = [
    ("91110105MA01XYZ12K", "北京示例贸易有限公司"),
    ("91510100MA6CDEFG2H", "成都虚构餐饮管理有限公司"),
    ("12330000470000123X", "某某市示范学校"),
    ("91420100MA4KLMNO3J", "武汉假想物流有限公司"),
    ("", "张三"),
    (None, "李四"),
]
ISSUERS = ["赵开票", "王出纳", "李会计", None]
REMARKS = ["", "", "", "合同号:HT-2024-001", "项目：示例\n第二期", "结算期/n三月"]
TRAILING = ["", " 收款人:王五 复核人:赵六", "\n项目：示例"]


# ---------------------------------------------------------------------------------------------
# Invoice and line dicts
# ---------------------------------------------------------------------------------------------


def money(value: Any) -> Decimal:
    """A Decimal to the cent, the unit every figure is compared in."""
    return Decimal(str(value)).quantize(Decimal("0.01"), ROUND_HALF_UP)


def rate_fraction(rate: str | None) -> Decimal:
    """'13%' -> 0.13; 免税/不征税 -> 0."""
    if rate and rate.endswith("%"):
        return Decimal(rate[:-1]) / 100
    return Decimal(0)


def make_line(name: str, amount: Any, rate: str | None = "13%", *, quantity: str | None = None,
              unit_price: str | None = None, tax: Any = None, total: Any = None,
              tax_code: str | None = "1090512990000000000", special_type: str = "",
              spec: str | None = None, unit: str | None = None, cells: dict | None = None) -> dict:
    """A line dict; tax and total follow from amount and rate unless given."""
    amount = money(amount)
    tax = money(amount * rate_fraction(rate)) if tax is None else money(tax)
    return {
        "name": name, "tax_code": tax_code, "special_type": special_type, "spec": spec, "unit": unit,
        "quantity": quantity, "unit_price": unit_price, "amount": amount, "tax_rate": rate,
        "tax": tax, "total": amount + tax if total is None else money(total), "cells": cells or {},
    }


def empty_line() -> dict:
    """The detail row of a blank-voided paper invoice: goods, code, amount, rate and tax all empty,
    价税合计 0. It is a row of the sheet, not a line of the invoice."""
    return {"name": None, "tax_code": None, "special_type": "", "spec": None, "unit": None, "quantity": None,
            "unit_price": None, "amount": None, "tax_rate": None, "tax": None, "total": Decimal("0.00"),
            "cells": {}, "empty": True}


def listed_line(lines: list[dict]) -> dict:
    """The `(详见销货清单)` summary line: the whole invoice's totals, no code/spec/unit/qty/price."""
    amount = sum((line["amount"] for line in lines), Decimal("0.00"))
    tax = sum((line["tax"] for line in lines), Decimal("0.00"))
    return make_line(LISTED_LINE, amount, "13%", tax=tax, tax_code="")


def discount_line(discounted: dict, amount: Any) -> dict:
    """A 折扣行: same name, code and rate as the line before it, negative, no spec/unit/qty/price."""
    return make_line(discounted["name"], -abs(money(amount)), discounted["tax_rate"],
                     tax_code=discounted["tax_code"])


def _invoice(kind: str, lines: list[dict], issued_at: Any, *, code: str, number: str,
             digital_number: str, origin: str, **fields: Any) -> dict:
    """Common shape of an invoice dict; amount/tax/total default to its real (non-listed) lines."""
    real = [line for line in lines if not line.get("empty") and not is_listed_name(line["name"])]
    amount = sum((line["amount"] for line in real), Decimal("0.00"))
    tax = sum((line["tax"] for line in real), Decimal("0.00"))
    invoice = {
        "kind": kind, "code": code, "number": number, "digital_number": digital_number,
        "issued_at": issued_at, "buyer_tax_id": "91110105MA01XYZ12K", "buyer_name": "北京示例贸易有限公司",
        "origin": origin, "status": "正常", "is_red": False, "risk": "正常", "issuer": "赵开票",
        "remark": "", "amount": amount, "tax": tax, "total": amount + tax, "lines": lines,
        "basic_cells": {}, "line_cells": {},
    }
    invoice.update(fields)
    return invoice


def digital_invoice(digital_number: str, lines: list[dict], issued_at: Any = "2024-03-01 10:00:00",
                    *, kind: str = "数电发票（普通发票）", **fields: Any) -> dict:
    """A 数电 e-invoice: 发票代码 and 发票号码 are '' and the key is the 20-digit number."""
    return _invoice(kind, lines, issued_at, code="", number="", digital_number=digital_number,
                    origin=DIGITAL_ORIGIN, **fields)


def legacy_invoice(code: str, number: str, lines: list[dict], issued_at: Any = "2024-03-01 10:00:00",
                   *, kind: str = "增值税专用发票", **fields: Any) -> dict:
    """A 税控 (legacy) invoice: code and 8-digit number, 数电发票号码 written as '--'."""
    return _invoice(kind, lines, issued_at, code=code, number=number, digital_number="--",
                    origin=LEGACY_ORIGIN, **fields)


def blank_voided_invoice(code: str, number: str, issued_at: Any = "2021-03-05 09:12:00",
                         *, kind: str = "增值税普通发票") -> dict:
    """A paper invoice voided before anything was written on it (空白作废), as a real 2021 export
    shows it: no seller name, buyer 000000000000000 without a name, zero amounts, 已作废, and one
    empty row in 信息汇总表."""
    empty_name = {"销方名称": ""}
    return legacy_invoice(code, number, [empty_line()], issued_at, kind=kind, status="已作废",
                          buyer_tax_id="000000000000000", buyer_name="", issuer=None, remark="", risk="正常",
                          basic_cells=empty_name, line_cells=empty_name)


def invoice_key(invoice: dict) -> str:
    """The pool identity: 20-digit 数电 number, else 发票代码-发票号码."""
    digital = invoice["digital_number"]
    if digital and digital != "--":
        return digital
    return f"{invoice['code']}-{invoice['number']}"


def is_listed_name(name: str) -> bool:
    """A 销货清单 summary line, whatever its parentheses and spaces."""
    return re.sub(r"[()（）\s]", "", name or "") == "详见销货清单"


def canonical_kind(kind: str) -> str:
    """The spelling the pool keeps: full-width parentheses, 数电票（…） as 数电发票（…）."""
    name = re.sub(r"\s+", "", kind).replace("(", "（").replace(")", "）")
    return "数电发票" + name[3:] if name.startswith("数电票（") else name


# ---------------------------------------------------------------------------------------------
# Expected figures
# ---------------------------------------------------------------------------------------------


def expected_figures(invoices: Iterable[dict]) -> dict:
    """What importing these invoices must yield, in the shape of the samples' .expected.json."""
    invoices = list(invoices)
    figures = {
        "invoices": len(invoices), "lines": 0, "line_rows": 0, "blue": 0, "red": 0, "voided": 0,
        "amount": Decimal("0.00"), "tax": Decimal("0.00"), "listed_invoices": 0,
        "discount_lines": 0, "red_links": {}, "by_type": {}, "months": set(),
    }
    for invoice in invoices:
        real = [line for line in invoice["lines"] if not line.get("empty")]
        listed = sum(is_listed_name(line["name"]) for line in real)
        figures["line_rows"] += len(real)
        figures["lines"] += len(real) - listed
        figures["listed_invoices"] += bool(listed)
        figures["discount_lines"] += _discount_count(invoice)
        figures["red" if invoice["is_red"] else "blue"] += 1
        figures["voided"] += invoice["status"] == "已作废"
        figures["amount"] += money(invoice["amount"])
        figures["tax"] += money(invoice["tax"])
        if invoice.get("red_of"):
            figures["red_links"][invoice_key(invoice)] = invoice["red_of"]
        kind = canonical_kind(invoice["kind"])
        figures["by_type"][kind] = figures["by_type"].get(kind, 0) + 1
        figures["months"].add(_month(invoice["issued_at"]))
    figures["amount"], figures["tax"] = str(figures["amount"]), str(figures["tax"])
    figures["months"] = sorted(figures["months"])
    return figures


def _discount_count(invoice: dict) -> int:
    """Negative lines right after another line of a blue invoice."""
    if invoice["is_red"]:
        return 0
    return sum(1 for line in invoice["lines"][1:] if not line.get("empty") and money(line["amount"]) < 0)


def _month(issued_at: Any) -> str:
    """'YYYY-MM' of a date cell or of the exported text."""
    if isinstance(issued_at, (date, datetime)):
        return f"{issued_at.year:04d}-{issued_at.month:02d}"
    return str(issued_at)[:7]


# ---------------------------------------------------------------------------------------------
# Random invoices
# ---------------------------------------------------------------------------------------------


class _Numbers:
    """Unique invoice numbers for one generated workbook."""

    def __init__(self, rng: random.Random, year: int) -> None:
        self.rng, self.yy, self.seq = rng, f"{year % 100:02d}", 0

    def digital(self) -> str:
        """A 20-digit 数电 number starting with the year's two digits."""
        self.seq += 1
        return f"{self.yy}{self.rng.randint(100, 999)}1234{self.seq:011d}"

    def legacy(self) -> tuple[str, str]:
        """A 12-digit code and an 8-digit number that often starts with zeros."""
        self.seq += 1
        return f"0{self.rng.randint(10**10, 10**11 - 1)}", f"{self.seq:08d}"


def random_lines(rng: random.Random, kind: str, *, discount: bool) -> list[dict]:
    """1-9 realistic lines; with discount, a 折扣行 follows one of them."""
    lines = []
    for _ in range(rng.choice((1, 1, 2, 3, 4, 5, 6, 7, 8, 9))):
        name, tax_code, rate, unit = rng.choice(GOODS)
        quantity = rng.randint(1, 99)
        price = Decimal(rng.randint(100, 500000)) / 100
        if rng.random() < 0.2:  # prices with many decimals, as the export writes them
            price = (Decimal(rng.randint(10**6, 10**9)) / Decimal(1011)).quantize(Decimal("1e-13"))
            price_text = str(price)
        else:
            price_text = f"{price:.8f}"
        lines.append(make_line(
            name, Decimal(quantity) * price, rate, quantity=str(quantity), unit_price=price_text,
            tax_code=tax_code, unit=unit, spec=rng.choice((None, "*", "X-200", "标准", "无")),
            special_type=SPECIAL_BUSINESS.get(kind, ""),
        ))
    if discount:
        at = rng.randrange(len(lines))
        lines.insert(at + 1, discount_line(lines[at], money(lines[at]["amount"] * Decimal("0.05")) + 1))
    return lines


def random_blue(rng: random.Random, numbers: _Numbers, issued_at: datetime, kind_index: int, *,
                tax_id: str, seller_name: str, discount: bool, listed: bool, voided: bool) -> dict:
    """One blue invoice of KINDS[kind_index] with random parties and lines."""
    kind, family, _ = KINDS[kind_index]
    lines = random_lines(rng, kind, discount=discount)
    if listed:
        lines.insert(0, listed_line(lines))
    buyer_tax_id, buyer_name = rng.choice(BUYERS)
    fields = dict(issuer=rng.choice(ISSUERS), remark=rng.choice(REMARKS), buyer_tax_id=buyer_tax_id,
                  buyer_name=buyer_name, status="已作废" if voided else "正常",
                  seller_tax_id=tax_id, seller_name=seller_name)
    when = issued_at.strftime("%Y-%m-%d %H:%M:%S")
    if family == "legacy":
        code, number = numbers.legacy()
        return legacy_invoice(code, number, lines, when, kind=kind, **fields)
    invoice = digital_invoice(numbers.digital(), lines, when, kind=kind, **fields)
    if family == "digital_paper":
        invoice["code"], invoice["number"] = numbers.legacy()
    return invoice


def red_for(rng: random.Random, numbers: _Numbers, blue: dict, issued_at: datetime, style: int, *,
            partial: bool) -> dict:
    """A red invoice flushing `blue`, its 备注 naming the blue one in format `style` (docs/codes.md,
    红字发票如何指向蓝字发票).

    1: legacy red for a legacy blue; 2: 数电 red for a 数电 blue; 3: 数电 red for a legacy blue.
    Marks the blue invoice 已红冲-全额 or 已红冲-部分.
    """
    real = [line for line in blue["lines"] if not is_listed_name(line["name"])]
    if partial:
        first = real[0]
        half = -money(first["amount"] / 2) or Decimal("-0.01")
        lines = [make_line(first["name"], half, first["tax_rate"], tax_code=first["tax_code"])]
    else:
        lines = [make_line(line["name"], -line["amount"], line["tax_rate"], tax=-line["tax"],
                           tax_code=line["tax_code"], unit=line["unit"], unit_price=line["unit_price"],
                           quantity=f"-{line['quantity']}" if line["quantity"] else None)
                 for line in real]
    blue["status"] = "已红冲-部分" if partial else "已红冲-全额"
    colon = rng.choice((":", "："))
    confirm = "".join(rng.choice("0123456789") for _ in range(20))
    trailing = rng.choice(TRAILING)
    when = issued_at.strftime("%Y-%m-%d %H:%M:%S")
    common = dict(is_red=True, red_of=invoice_key(blue), buyer_tax_id=blue["buyer_tax_id"],
                  buyer_name=blue["buyer_name"], issuer=blue["issuer"],
                  seller_tax_id=blue.get("seller_tax_id"), seller_name=blue.get("seller_name"))
    if style == 1:
        space = rng.choice(("", " "))
        remark = f"对应正数发票代码{colon}{blue['code']}{space}号码{colon}{blue['number']}{trailing}"
        code, number = numbers.legacy()
        return legacy_invoice(code, number, lines, when, kind=blue["kind"], remark=remark, **common)
    if style == 2:
        wording = rng.choice(("数电发票", "数电票"))
        remark = (f"被红冲蓝字{wording}号码{colon}{blue['digital_number']} "
                  f"红字发票信息确认单编号{colon}{confirm}{trailing}")
    else:
        remark = (f"被红冲蓝字发票号码{colon}{blue['number']} 被红冲蓝字发票代码{colon}{blue['code']} "
                  f"红字发票信息确认单编号{colon}{confirm}{trailing}")
    special = any(k == blue["kind"] and s for k, _, s in KINDS)
    kind = "数电发票（增值税专用发票）" if special else "数电发票（普通发票）"
    return digital_invoice(numbers.digital(), lines, when, kind=kind, remark=remark, **common)


def random_invoices(n: int, *, seed: int = 0, year: int = 2024, tax_id: str = TAX_ID,
                    seller_name: str = SELLER_NAME) -> list[dict]:
    """n invoices of one year in date order: every kind, voided paper invoices, discount lines,
    销货清单 invoices, and red invoices linked to their blue one in all three 备注 formats.

    With n >= 40 the first invoices cover every case deterministically; the rest are random.
    """
    rng = random.Random(seed)
    numbers = _Numbers(rng, year)
    start = datetime(year, 1, 1)
    span = (datetime(year + 1, 1, 1) - start).total_seconds() - 1
    moments = sorted(start + timedelta(seconds=rng.uniform(0, span)) for _ in range(n))
    invoices: list[dict] = []
    pending_reds: list[tuple[dict, int, bool]] = []
    cover = n >= 40
    blues = 0
    for moment in moments:
        if pending_reds and (rng.random() < 0.5 or len(invoices) + len(pending_reds) >= n):
            blue, style, partial = pending_reds.pop(0)
            invoices.append(red_for(rng, numbers, blue, moment, style, partial=partial))
            continue
        forced = cover and blues < len(KINDS)
        kind_index = blues if forced else rng.choices(range(len(KINDS)), KIND_WEIGHTS)[0]
        blues += 1
        kind, family, _ = KINDS[kind_index]
        voided = kind in VOIDABLE and (rng.random() < 0.04 or (forced and kind == "增值税普通发票（卷式）"))
        listed = kind in LISTABLE and not voided and (rng.random() < 0.05 or (forced and kind == "增值税专用发票"))
        discount = not listed and (rng.random() < 0.12 or (forced and kind_index == 1))
        blue = random_blue(rng, numbers, moment, kind_index, tax_id=tax_id, seller_name=seller_name,
                           discount=discount, listed=listed, voided=voided)
        invoices.append(blue)
        style = _red_style(rng, family, kind, forced=forced)
        if style and not voided and not listed and len(invoices) + len(pending_reds) < n - 1:
            pending_reds.append((blue, style, rng.random() < 0.25))
    return invoices


def _red_style(rng: random.Random, family: str, kind: str, *, forced: bool) -> int:
    """Whether this blue invoice gets flushed, and in which 备注 format (0 = not flushed)."""
    if forced:  # cover all three formats among the first kinds
        return {"数电发票（普通发票）": 2, "增值税普通发票": 1, "增值税电子专用发票": 3}.get(kind, 0)
    if rng.random() >= 0.05:
        return 0
    if family == "legacy":
        return rng.choice((1, 3))
    return 2


# ---------------------------------------------------------------------------------------------
# Writing the workbook
# ---------------------------------------------------------------------------------------------


def build_workbook(path: str | Path, invoices: list[dict] | None = None, *,
                   header_variant: str = "数电发票号码", totals_row: bool = True,
                   extra_sheets: Iterable[str] = (), drop_columns: Iterable[str] = (),
                   n_random: int = 0, seed: int = 0, tax_id: str = TAX_ID,
                   seller_name: str = SELLER_NAME, year: int = 2024,
                   sheets: Iterable[str] = (DETAIL_SHEET, BASIC_SHEET),
                   totals_row_cells: dict | None = None, money_as_text: bool = False,
                   quantities_as_numbers: bool = False, date_style: str = "text",
                   trailing_blank_rows: int = 0, seq_step: int = 1) -> dict:
    """Write an export-shaped workbook and return the expected figures (see expected_figures).

    `invoices` are written first, then `n_random` random ones. `sheets` lists which of the two
    required sheets to write (to build a broken file); `drop_columns` removes headers by name
    from both sheets; `header_variant` names the 数电发票号码 column (全电发票号码 for old
    exports). Invoices without their own seller get `tax_id` / `seller_name`.

    Cell styles real files show: `money_as_text` writes 金额/税额/价税合计 as text ("100.00"),
    `quantities_as_numbers` writes 数量/单价 as number cells, `date_style` writes 开票日期 as
    "text" (the export's own), "serial" (an Excel serial number) or "datetime" (a date cell);
    `trailing_blank_rows` adds rows of empty cells to both sheets; `seq_step` leaves gaps in 序号.
    """
    everything = list(invoices or [])
    if n_random:
        everything += random_invoices(n_random, seed=seed, year=year, tax_id=tax_id, seller_name=seller_name)
    for invoice in everything:
        invoice.setdefault("seller_tax_id", tax_id)
        invoice["seller_tax_id"] = invoice["seller_tax_id"] or tax_id
        invoice["seller_name"] = invoice.get("seller_name") or seller_name
    dropped = set(drop_columns)
    style = _CellStyle(money_as_text, quantities_as_numbers, date_style, trailing_blank_rows, seq_step)
    workbook = Workbook(write_only=True)
    sheets = list(sheets)
    for name in sheets:
        if name == DETAIL_SHEET:
            _write_detail(workbook, everything, header_variant, dropped, style)
        elif name == BASIC_SHEET:
            _write_basic(workbook, everything, header_variant, dropped, totals_row, totals_row_cells, style)
        else:
            workbook.create_sheet(name).append(["序号"])
    for name in extra_sheets:
        _write_extra(workbook, name, header_variant)
    workbook.save(str(path))
    return expected_figures(everything)


def _headers(headers: list[str], variant: str, dropped: set[str]) -> tuple[list[str], list[int]]:
    """The header row as written, and which canonical positions survive drop_columns."""
    kept = [i for i, name in enumerate(headers) if name not in dropped]
    written = [variant if headers[i] == "数电发票号码" else headers[i] for i in kept]
    return written, kept


class _CellStyle:
    """How cells are written (see build_workbook): the export's own style by default."""

    def __init__(self, money_as_text: bool, quantities_as_numbers: bool, date_style: str,
                 trailing_blank_rows: int, seq_step: int) -> None:
        self.money_as_text, self.quantities_as_numbers = money_as_text, quantities_as_numbers
        self.date_style, self.trailing, self.seq_step = date_style, trailing_blank_rows, seq_step

    def money(self, value: Any) -> Any:
        """An amount cell: a number (the export's), or text with two decimals."""
        if value is None:
            return None
        return f"{money(value):.2f}" if self.money_as_text else float(value)

    def quantity(self, value: Any) -> Any:
        """数量/单价: text as exported, or a number cell."""
        if value is None or not self.quantities_as_numbers:
            return value
        return float(value)

    def date(self, value: Any) -> Any:
        """开票日期 in the chosen style; a cell given explicitly is kept as given."""
        if self.date_style == "text" or not isinstance(value, str):
            return value
        moment = datetime.fromisoformat(value)
        if self.date_style == "datetime":
            return moment
        return (moment - datetime(1899, 12, 30)).total_seconds() / 86400

    def seq(self, n: int) -> str:
        """序号, with gaps when seq_step > 1."""
        return str(1 + (n - 1) * self.seq_step)

    def blank_rows(self, sheet, width: int) -> None:
        """Rows of empty cells after the data, as a sheet someone scrolled through leaves them."""
        for _ in range(self.trailing):
            sheet.append([""] * width)


def _write_detail(workbook: Workbook, invoices: list[dict], variant: str, dropped: set[str],
                  style: _CellStyle) -> None:
    """信息汇总表: one row per line, invoice columns repeated, no totals row."""
    sheet = workbook.create_sheet(DETAIL_SHEET)
    header, kept = _headers(DETAIL_HEADERS, variant, dropped)
    sheet.append(header)
    seq = 0
    for invoice in invoices:
        common = _common_cells(invoice, style)
        for line in invoice["lines"]:
            seq += 1
            row = [style.seq(seq), *common[:8], line["tax_code"], line["special_type"],
                   line["name"], line["spec"], line["unit"], style.quantity(line["quantity"]),
                   style.quantity(line["unit_price"]), style.money(line["amount"]), line["tax_rate"],
                   style.money(line["tax"]), style.money(line["total"]), *common[8:]]
            _override(row, DETAIL_HEADERS, {**invoice.get("line_cells", {}), **line.get("cells", {})})
            sheet.append([row[i] for i in kept])
    style.blank_rows(sheet, len(kept))


def _write_basic(workbook: Workbook, invoices: list[dict], variant: str, dropped: set[str],
                 totals_row: bool, totals_row_cells: dict | None, style: _CellStyle) -> None:
    """发票基础信息: one row per invoice, then 合计行 with the 金额/税额 sums and empty 价税合计."""
    sheet = workbook.create_sheet(BASIC_SHEET)
    header, kept = _headers(BASIC_HEADERS, variant, dropped)
    sheet.append(header)
    amount = tax = Decimal("0.00")
    for seq, invoice in enumerate(invoices, start=1):
        common = _common_cells(invoice, style)
        row = [style.seq(seq), *common[:8], style.money(invoice["amount"]), style.money(invoice["tax"]),
               style.money(invoice["total"]), *common[8:]]
        _override(row, BASIC_HEADERS, invoice.get("basic_cells", {}))
        sheet.append([row[i] for i in kept])
        amount += money(invoice["amount"])
        tax += money(invoice["tax"])
    if totals_row:
        row = ["合计行"] + [None] * (len(BASIC_HEADERS) - 1)
        row[BASIC_HEADERS.index("金额")] = style.money(amount)
        row[BASIC_HEADERS.index("税额")] = style.money(tax)
        _override(row, BASIC_HEADERS, totals_row_cells or {})
        sheet.append([row[i] for i in kept])
    style.blank_rows(sheet, len(kept))


def _write_extra(workbook: Workbook, name: str, variant: str) -> None:
    """A special-business sheet: basic columns minus the money ones, plus its own (header only)."""
    base = [variant if h == "数电发票号码" else h for h in BASIC_HEADERS if h not in MONEY_COLUMNS]
    workbook.create_sheet(name).append(base + EXTRA_SHEET_COLUMNS.get(name, []))


def _common_cells(invoice: dict, style: _CellStyle | None = None) -> list:
    """The invoice columns both sheets share: 8 before the line/money block and 7 after it."""
    issued = style.date(invoice["issued_at"]) if style else invoice["issued_at"]
    return [
        invoice["code"], invoice["number"], invoice["digital_number"], invoice["seller_tax_id"],
        invoice["seller_name"], invoice["buyer_tax_id"], invoice["buyer_name"],
        issued if isinstance(issued, (date, datetime, float)) else str(issued),
        invoice["origin"], invoice["kind"], invoice["status"], "否" if invoice["is_red"] else "是",
        invoice["risk"], invoice["issuer"], invoice["remark"],
    ]


def _override(row: list, headers: list[str], cells: dict) -> None:
    """Replace raw cells by canonical header name (to write odd values on purpose)."""
    for name, value in cells.items():
        row[headers.index(name)] = value


def build_sized_workbook(path: str | Path, megabytes: float, *, seed: int = 0) -> dict:
    """A workbook of roughly `megabytes` MB (about 6,000 lines per MB), for benchmarks."""
    return build_workbook(path, n_random=int(megabytes * 1250), seed=seed)


# ---------------------------------------------------------------------------------------------
# The corpus of shapes real exports show, and the two sample exports the tests share
# ---------------------------------------------------------------------------------------------


def shape_corpus(year: int = 2024) -> list[dict]:
    """One invoice (or pair) of every shape the tax bureau writes, with its figures known:
    blank-voided and voided paper invoices, 免税 / 不征税 / 0% / 1% / 1.5% / 3% / 5% lines, a blue
    invoice 已红冲-全额 with its red one and one 已红冲-部分 with a partial red one, a 数电纸质发票,
    a discount line, a 销货清单 invoice and a legacy red invoice."""
    yy = f"{year % 100:02d}"
    code = f"0440{yy}900111"  # the paper invoices' 发票代码, one per year so two years never clash
    goods = make_line("*计算机网络设备*交换机", "1000.00", quantity="2", unit_price="500.00000000", unit="台")
    vegetables = make_line("*农产品*蔬菜", "52.40", "免税", quantity="13.1", unit_price="4", unit="千克")
    listed = [make_line("*电子元件*贴片电阻(0603)", "300.00"), make_line("*电子元件*电容（贴片）", "700.00")]
    full_blue = digital_invoice(f"{yy}900123400000000001", [make_line("*信息技术服务*运维服务", "8000.00", "6%")],
                                f"{year}-02-03 10:00:00", status="已红冲-全额")
    part_blue = legacy_invoice(code, "00100002", [goods], f"{year}-02-04 11:00:00",
                               kind="增值税普通发票", status="已红冲-部分")
    return [
        blank_voided_invoice(code, "00100001", f"{year}-01-05 09:12:00"),
        legacy_invoice(code, "00100003", [make_line("*塑料制品*塑料包装袋", "120.00", "3%")],
                       f"{year}-01-06 09:00:00", kind="增值税普通发票", status="已作废"),
        digital_invoice(f"{yy}900123400000000002", [
            vegetables, make_line("*保险服务*代收车船税", "360.00", "不征税", tax_code="6130000000000000000"),
            make_line("*出口货物*样品", "80.00", "0%"), make_line("*生活服务*餐饮服务", "98.02", "1%"),
            make_line("*不动产租赁*房屋租金", "2000.00", "5%"), make_line("*建筑服务*工程服务", "3000.00", "9%"),
            make_line("*租赁服务*个人出租住房", "1000.00", "1.5%"),
        ], f"{year}-01-31 23:59:59"),
        full_blue,
        digital_invoice(f"{yy}900123400000000003", [make_line("*信息技术服务*运维服务", "-8000.00", "6%")],
                        f"{year}-03-01 08:00:00", is_red=True, red_of=invoice_key(full_blue),
                        remark=f"被红冲蓝字数电发票号码：{invoice_key(full_blue)} 红字发票信息确认单编号："
                               f"{yy}000000000000000001"),
        part_blue,
        legacy_invoice(code, "00100004", [make_line("*计算机网络设备*交换机", "-250.00", quantity="-1")],
                       f"{year}-03-02 08:00:00", kind="增值税普通发票", is_red=True, red_of=invoice_key(part_blue),
                       remark=f"对应正数发票代码:{part_blue['code']}号码:{part_blue['number']}"),
        _paper_digital(yy, year),
        digital_invoice(f"{yy}900123400000000005", [goods, discount_line(goods, "50.00")],
                        f"{year}-04-01 12:00:00", kind="数电发票（增值税专用发票）"),
        legacy_invoice(code, "00100005", [listed_line(listed), *listed], f"{year}-04-02 12:00:00",
                       kind="增值税普通发票"),
    ]


def red_remark_corpus(year: int = 2024) -> list[dict]:
    """Blue invoices and the red ones flushing them, one pair per 备注 wording met in real files
    (docs/codes.md, 红字发票如何指向蓝字发票); each red's `red_of` names its blue, so the figures'
    red_links say what every wording must link to.

    The wordings: `对应正数发票代码:…号码:…` with and without a space before 号码; `被红冲蓝字数电票号码：…`
    and `被红冲蓝字数电发票号码：…`; `被红冲蓝字发票号码：… 被红冲蓝字发票代码：…`; and a road-toll red
    whose 号码 runs straight into the vehicle's plate number, its own 发票代码 another than the one its
    备注 names. Plates, codes and numbers are made up.
    """
    yy = f"{year % 100:02d}"
    code, toll_code = f"03700{yy}00111", f"03700{yy}00112"  # other series than shape_corpus's
    service = make_line("*信息技术服务*运维服务", "600.00", "6%", tax_code="3040203000000000000")
    toll = make_line("*经营租赁*通行费", "97.09", "3%", tax_code="3040502020100000000", special_type="通行费")
    blues = [legacy_invoice(code, "00300001", [service], f"{year}-05-06 09:00:00", kind="增值税普通发票"),
             legacy_invoice(code, "00300002", [service], f"{year}-05-06 09:10:00", kind="增值税普通发票"),
             digital_invoice(f"{yy}370000000000000101", [service], f"{year}-05-06 09:20:00"),
             digital_invoice(f"{yy}370000000000000102", [service], f"{year}-05-06 09:30:00"),
             legacy_invoice(code, "00300003", [service], f"{year}-05-06 09:40:00", kind="增值税电子普通发票"),
             legacy_invoice(toll_code, "10621901", [toll], f"{year}-05-06 09:50:00", kind="道路通行费电子普通发票")]
    remarks = ["对应正数发票代码:{code}号码:{number}",
               "对应正数发票代码:{code} 号码:{number} 退货",
               "被红冲蓝字数电票号码：{key} 红字发票信息确认单编号：{yy}370000000000000001",
               "被红冲蓝字数电发票号码：{key}红字发票信息确认单编号：{yy}370000000000000002 收款人:王五",
               "被红冲蓝字发票号码：{number} 被红冲蓝字发票代码：{code} 红字发票信息确认单编号：{yy}370000000000000003",
               "对应正数发票代码:{code} 号码:{number}鲁A00001 入口:示例东站 出口:示例西站"]
    corpus = []
    for n, (blue, remark) in enumerate(zip(blues, remarks, strict=True)):
        blue["status"] = "已红冲-全额"
        lines = [make_line(line["name"], -line["amount"], line["tax_rate"], tax=-line["tax"],
                           tax_code=line["tax_code"], special_type=line["special_type"]) for line in blue["lines"]]
        link = dict(is_red=True, red_of=invoice_key(blue), issued_at=f"{year}-06-0{n + 1} 10:00:00",
                    remark=remark.format(code=blue["code"], number=blue["number"], key=invoice_key(blue), yy=yy))
        if remark.startswith("对应正数"):  # a legacy red, from a later roll of the blue's kind
            red_code = blue["code"][:9] + "2" + blue["code"][10:]
            red = legacy_invoice(red_code, f"{400001 + n:08d}", lines, kind=blue["kind"], **link)
        else:
            red = digital_invoice(f"{yy}370000000000000{201 + n}", lines, **link)
        corpus += [blue, red]
    return corpus


def _paper_digital(yy: str, year: int) -> dict:
    """A 数电纸质发票: 发票代码, 发票号码 and the 20-digit number all filled."""
    invoice = digital_invoice(f"{yy}900123400000000004", [make_line("*供电*电力", "433.63")],
                              f"{year}-03-15 16:30:00", kind="数电纸质发票（普通发票）")
    invoice["code"], invoice["number"] = f"1440{yy}900222", "00200001"
    return invoice


SAMPLE_SEED_2024, SAMPLE_SEED_2023 = 6, 3  # seeds whose random numbers clash with no anchor


def build_sample_exports(folder: str | Path) -> Path:
    """The two sample exports the tests share, with their .expected.json figures, built here so
    that no test reads a file from outside the repository.

    etax-export-2024.xlsx: 312 invoices of 2024 (the shape corpus and random ones), among them
    the red 24706900000000003120 flushing the blue 24144123400000000006, the discounted
    24791123400000000013 (*蔬菜*鲜蔬菜) and exactly three numbers starting 242731.
    etax-export-2023-old-header.xlsx: 124 invoices of 2023 under the old header 全电发票号码.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    anchors = _sample_anchors()
    invoices = shape_corpus(2024) + anchors
    invoices += random_invoices(312 - len(invoices), seed=SAMPLE_SEED_2024, year=2024)
    _write_sample(folder / "etax-export-2024.xlsx", _digital_reds(invoices))
    old = shape_corpus(2023) + random_invoices(124 - len(shape_corpus(2023)), seed=SAMPLE_SEED_2023, year=2023)
    _write_sample(folder / "etax-export-2023-old-header.xlsx", old, header_variant="全电发票号码")
    return folder


def _digital_reds(invoices: list[dict]) -> list[dict]:
    """Every red invoice as a 数电 one (as in 2024, when red invoices are issued on the 数电 platform),
    naming a legacy blue invoice in the third 备注 wording."""
    for n, invoice in enumerate(i for i in invoices if i["is_red"] and i["digital_number"] == "--"):
        code, number = invoice["red_of"].split("-")
        invoice.update(code="", number="", digital_number=f"245809{n:014d}", origin=DIGITAL_ORIGIN,
                       kind="数电发票（普通发票）",
                       remark=f"被红冲蓝字发票号码：{number} 被红冲蓝字发票代码：{code} 红字发票信息确认单编号："
                              f"{n:020d}")
    return invoices


def _sample_anchors() -> list[dict]:
    """The 2024 sample's invoices other tests name by number."""
    blue = digital_invoice("24144123400000000006", [make_line("*信息技术服务*运维服务", "26000.00", "6%")],
                           "2024-05-06 10:20:30", status="已红冲-全额")
    red = digital_invoice("24706900000000003120", [make_line("*信息技术服务*运维服务", "-26000.00", "6%")],
                          "2024-06-07 11:00:00", is_red=True, red_of="24144123400000000006",
                          remark="被红冲蓝字数电发票号码：24144123400000000006 红字发票信息确认单编号："
                                 "96227780995354065050")
    vegetables = make_line("*蔬菜*鲜蔬菜", "145335.54", "9%", quantity="10000", unit_price="14.533554",
                           unit="千克", tax_code="1010112000000000000")
    discounted = digital_invoice("24791123400000000013", [vegetables, discount_line(vegetables, "14533.55")],
                                 "2024-07-08 09:00:00")
    prefixed = [digital_invoice(f"2427312340000000080{i}", [make_line("*供电*电力", f"{100 + i}.00")],
                                f"2024-08-0{i + 1} 10:00:00") for i in range(3)]
    return [blue, red, discounted, *prefixed]


def _write_sample(path: Path, invoices: list[dict], **options: Any) -> None:
    """A sample workbook in date order, with its figures beside it as .expected.json."""
    invoices.sort(key=lambda invoice: str(invoice["issued_at"]))
    figures = build_workbook(path, invoices, **options)
    path.with_suffix(".expected.json").write_text(json.dumps(figures, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="write an export-shaped benchmark workbook")
    parser.add_argument("path")
    parser.add_argument("--mb", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    figures = build_sized_workbook(args.path, args.mb, seed=args.seed)
    size = Path(args.path).stat().st_size / 1024 / 1024
    print(f"{args.path}: {size:.1f} MB, {figures['invoices']} invoices, {figures['line_rows']} line rows")
