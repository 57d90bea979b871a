"""Deterministic synthetic output invoices for the sandbox tax bureau.

Every invoice is a pure function of (tax ID, invoicing month, type code): the same request always
gives the same invoices, keys, amounts and lines, in any process, whatever other types were asked
for. That makes downloads repeatable (idempotent pool writes can be tested) and lets several
processes serve one sandbox without sharing any generated data.

How a month is made (PROTOCOL.md payload, value formats as in docs/etax-export.md, Values):

- a *plan* per (company, month, type): how many blue invoices, when each was issued, which paper
  ones were voided and which blue ones get red-flushed (when, fully or partly, by which type).
  Plans are cheap, so a red invoice in month M is found by reading the plans of the months
  before it, never by generating their invoices;
- each blue invoice from its own seed (buyer, lines, discounts, 销货清单);
- each red invoice from its blue one (negated lines, 备注 and yfpkey as docs/codes.md, 红字发票如何指向蓝字发票,
  describes).

Keys: 数电 numbers are YY + province + channel + company + month + kind + sequence (20 digits);
legacy codes change each quarter and their 8-digit numbers carry the month, so months generated
independently can never collide.
"""
from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache

from channels.invoice_types import DOWNLOAD_KINDS, TYPE_NAMES
from channels.months import add_months, is_month, last_day, month_of, year_and_month

KINDS = tuple(DOWNLOAD_KINDS)  # ('10', '08', '04', '01', '82', '81')
DIGITAL = frozenset({"81", "82"})
PAPER = frozenset({"04", "01"})  # only these can be voided or carry a 销货清单
SPECIAL = frozenset({"01", "08", "81"})  # 专票: buyer must have a tax ID, no exempt lines
FIRST_MONTH = "2020-01"  # sandbox companies invoice from here on
DIGITAL_START = "2021-12"  # 数电 invoices exist from here; before, their volume is e-invoices

ORIGIN_DIGITAL = "电子发票服务平台"
ORIGIN_LEGACY = "增值税发票管理系统"
LIST_LINE = "(详见销货清单)"
RED_LIST_LINE = "详见对应正数发票及清单"
ORIGINAL_TOTAL = "原价合计"
DISCOUNT_TOTAL = "折扣额合计"

# Mean invoices a month per kind; a profile name or such a dict is a company's "volume".
PROFILES: dict[str, dict[str, int]] = {
    "large": {"82": 1750, "81": 850, "10": 160, "08": 70, "04": 110, "01": 60},  # ~3,000/month
    "medium": {"82": 30, "81": 14, "10": 3, "08": 1, "04": 3, "01": 1},  # ~50/month
    "small": {"82": 14, "81": 9, "10": 2, "08": 1, "04": 2, "01": 1},  # ~350/year
    "none": {kind: 0 for kind in KINDS},
}
# Busier before the Spring Festival and at year end, quieter in February.
SEASON = (0.93, 0.86, 1.0, 0.98, 1.0, 1.05, 0.97, 0.98, 1.03, 0.95, 1.02, 1.18)

DEFAULT_COMPANIES = (
    {"tax_id": "91330100MA2H4K7Q1X", "name": "杭州示例科技有限公司", "leqi_enabled": True,
     "leqi_since": "2023-01-01", "rpa_account": "91330100MA2H4K7Q1X-etax", "rpa_password": "sandbox",
     "volume": "large", "industry": "tech"},
    {"tax_id": "91440300MA5SANDB01", "name": "深圳沙箱贸易有限公司", "leqi_enabled": True,
     "leqi_since": "2024-03-15", "rpa_account": "91440300MA5SANDB01-etax", "rpa_password": "sandbox",
     "volume": "small", "industry": "trade"},
    {"tax_id": "91110105MA0SANDB02", "name": "北京沙箱服务有限公司", "leqi_enabled": False,
     "leqi_since": None, "rpa_account": "91110105MA0SANDB02-etax", "rpa_password": "sandbox",
     "volume": "medium", "industry": "service"},
)
_DEFAULTS_BY_ID = {c["tax_id"]: c for c in DEFAULT_COMPANIES}

# (spmc, ssbm, rate, unit, specs, price range in cents, industries)
CATALOGUE = (
    ("*信息技术服务*软件开发服务", "3040201010000000000", "6%", "项", ("", "V2.0", "定制"), (8000_00, 380000_00),
     "tech"),
    ("*信息技术服务*信息系统集成服务", "3040203000000000000", "6%", "项", ("",), (20000_00, 500000_00), "tech"),
    ("*信息技术服务*运维服务", "3040204000000000000", "6%", "月", ("", "标准版"), (2000_00, 40000_00), "tech service"),
    ("*现代服务*技术服务费", "3040502029900000000", "6%", "次", ("",), (500_00, 60000_00), "tech service"),
    ("*软件*嵌入式软件", "1060201020000000000", "13%", "套", ("V3.1", "企业版"), (900_00, 30000_00), "tech"),
    ("*计算机配套产品*笔记本电脑", "1090511030000000000", "13%", "台", ("ThinkPad X1", "MateBook 14"),
     (4200_00, 13000_00), "tech trade"),
    ("*计算机外部设备*键盘", "1090512010000000000", "13%", "个", ("K380", "G610", "*"), (79_00, 699_00), "tech trade"),
    ("*计算机外部设备*显示器", "1090512040000000000", "13%", "台", ("27英寸", "24英寸"), (799_00, 3999_00),
     "tech trade"),
    ("*网络设备*交换机", "1090514010000000000", "13%", "台", ("S5735-L24T4S", "无"), (1500_00, 26000_00), "tech trade"),
    ("*经营租赁*服务器租赁", "3040502020000000000", "13%", "月", ("",), (3000_00, 30000_00), "tech"),
    ("*不动产租赁服务*办公室租金", "3040502020200000000", "9%", "月", ("",), (15000_00, 90000_00), "service tech"),
    ("*运输服务*国内运输费", "3010101020000000000", "9%", "次", ("",), (200_00, 8000_00), "trade"),
    ("*日用杂品*办公用纸", "1060301030000000000", "13%", "箱", ("A4 70g", "/"), (120_00, 260_00), "trade"),
    ("*塑料制品*收纳箱", "1070212990000000000", "13%", "个", ("50L", ""), (25_00, 120_00), "trade"),
    ("*谷物*大米", "1010101020000000000", "9%", "千克", ("5kg/袋", ""), (4_00, 12_00), "trade"),
    ("*蔬菜*鲜蔬菜", "1010112000000000000", "免税", "千克", ("",), (2_00, 9_00), "trade service"),
    ("*图书*技术图书", "1060601010000000000", "9%", "本", ("",), (39_00, 159_00), "tech service"),
    ("*建筑服务*安装服务", "3050200000000000000", "3%", "项", ("",), (3000_00, 80000_00), "service"),
    ("*经纪代理服务*劳务派遣服务", "3040802020000000000", "5%", "月", ("",), (20000_00, 150000_00), "service"),
    ("*餐饮服务*餐饮服务", "3070401000000000000", "6%", "次", ("",), (200_00, 6000_00), "service"),
    ("*非学历教育服务*培训费", "3070201020000000000", "6%", "人次", ("",), (800_00, 9800_00), "service tech"),
    ("*预付卡销售*预付卡", "6010000000000000000", "不征税", "张", ("",), (100_00, 5000_00), "service trade"),
    ("*旧货*二手办公设备", "1090511990000000000", "1%", "台", ("旧", ""), (300_00, 3000_00), "trade"),
)
_LINE_COUNTS = (1,) * 50 + (2,) * 20 + (3,) * 12 + (4,) * 8 + (5,) * 5 + (6, 7, 8) * 2
_CITIES = ("杭州", "宁波", "温州", "上海", "苏州", "南京", "深圳", "广州", "北京", "成都", "武汉", "合肥", "厦门",
           "青岛")
_WORDS = ("恒信", "华创", "远景", "博达", "瑞丰", "中科", "天成", "新航", "诚泰", "锦程", "海纳", "卓越", "鼎盛",
          "云帆")
_TRADES = ("机械制造", "电子科技", "信息技术", "商贸", "物流", "建设工程", "医疗器械", "餐饮管理", "文化传媒", "食品")
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = ("伟", "芳", "娜", "敏", "静", "强", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "明", "超")
_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


# ------------------------------------------------------------------------------------------
# Seeds, money, small formats
# ------------------------------------------------------------------------------------------


def _seed(*parts: object) -> int:
    """A stable 64-bit seed: Python's hash() is salted per process, this is not."""
    text = "|".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def _money(cents: int) -> str:
    """Cents as the protocol's two-decimal string, exact (no float), '-0.00' never written."""
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"


def _percent(rate: str) -> int:
    """'13%' -> 13; exempt and non-taxable lines carry no tax."""
    return int(rate[:-1]) if rate.endswith("%") else 0


def _tax(amount: int, rate: str) -> int:
    """Tax in cents, rounded half away from zero like the invoicing systems do."""
    pct = _percent(rate)
    value = (abs(amount) * pct + 50) // 100
    return -value if amount < 0 else value


def _qty(q: float) -> str:
    """A quantity as the export writes it: '3', '2.5', '-2'."""
    return str(int(q)) if q == int(q) else f"{q:g}"


def _uscc(rng: random.Random, region: str) -> str:
    """A buyer tax ID in the 18-character 统一社会信用代码 form, with a valid check character."""
    body = "91" + region + "MA" + "".join(rng.choice(_USCC_CHARS[:30]) for _ in range(7))
    total = sum(_USCC_CHARS.index(c) * w for c, w in zip(body, _USCC_WEIGHTS, strict=False))
    return body + _USCC_CHARS[(31 - total % 31) % 31]


# ------------------------------------------------------------------------------------------
# The seller: buyers, clerks, goods
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Seller:
    tax_id: str
    name: str
    province: str  # '33', drives 数电 numbers
    region: str  # '3301', drives legacy codes
    company_no: int  # five digits inside 数电 numbers
    clerks: tuple[str, ...]
    buyers: tuple[tuple[str, str], ...]  # (tax id, name)
    buyer_weights: tuple[float, ...]  # cumulative: a few big customers, a long tail
    goods: tuple[tuple, ...]


@lru_cache(maxsize=64)
def _seller(tax_id: str, name: str, industry: str) -> _Seller:
    """A company's stable world: its customers, its clerks and what it sells."""
    rng = random.Random(_seed("seller", tax_id))
    province = tax_id[2:4] if tax_id[2:4].isdigit() else "33"
    region = tax_id[2:6] if tax_id[2:6].isdigit() else "3301"
    buyers = []
    for i in range(240):
        city, word, trade = rng.choice(_CITIES), rng.choice(_WORDS), rng.choice(_TRADES)
        suffix = "股份有限公司" if i % 11 == 0 else "有限公司"
        buyers.append((_uscc(rng, f"{rng.choice(('3301', '3302', '3101', '4403', '1101', '3205'))}00"),
                       f"{city}{word}{trade}{suffix}"))
    weights, total = [], 0.0
    for i in range(len(buyers)):
        total += 1.0 / (i + 1) ** 0.9
        weights.append(total)
    goods = tuple(g for g in CATALOGUE if industry in g[6].split()) or CATALOGUE
    clerks = tuple(rng.choice(_SURNAMES) + rng.choice(_GIVEN) + rng.choice(("", *_GIVEN)) for _ in range(4))
    return _Seller(tax_id, name, province, region, _seed("co", tax_id) % 100000, clerks,
                   tuple(buyers), tuple(weights), goods)


def _volume_means(volume: object) -> tuple[int, ...]:
    """A profile name or a {kind: mean per month} dict as a hashable tuple in KINDS order."""
    if volume is None:
        volume = "small"
    if isinstance(volume, str):
        if volume not in PROFILES:
            raise ValueError(f"未知的业务量档位：{volume}（可选 {', '.join(PROFILES)}）")
        volume = PROFILES[volume]
    if not isinstance(volume, dict):
        raise ValueError("业务量应为档位名称或 {发票类型: 月均份数}")
    return tuple(max(0, int(volume.get(kind, 0))) for kind in KINDS)


# ------------------------------------------------------------------------------------------
# Month plans: counts, issue times, voids, red flushes
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Flush:
    red_time: str  # 'YYYY-MM-DD HH:MM:SS'
    full: bool
    red_type: str


@dataclass(frozen=True, slots=True)
class _Plan:
    times: tuple[str, ...]  # blue issue times, ascending; index = position in the month
    voided: frozenset[int]
    flushes: dict[int, _Flush]


def _monthly_mean(means: tuple[int, ...], month: str, kind: str) -> float:
    """Mean count for a kind in a month: season, company start, and no 数电 before it existed."""
    if month < FIRST_MONTH:
        return 0.0
    by_kind = dict(zip(KINDS, means, strict=False))
    mean = float(by_kind[kind])
    if month < DIGITAL_START:
        if kind in DIGITAL:
            return 0.0
        if kind == "10":
            mean += by_kind["82"]
        elif kind == "08":
            mean += by_kind["81"]
    return mean * SEASON[int(month[5:7]) - 1]


def _count(rng: random.Random, mean: float) -> int:
    """A count near the mean: ±√mean noise, so small companies have some empty months."""
    if mean <= 0:
        return 0
    return max(0, round(rng.gauss(mean, math.sqrt(mean))))


def _issue_times(rng: random.Random, month: str, n: int) -> list[str]:
    """n issue times in office hours, mostly on working days, busiest at month end."""
    y, m = year_and_month(month)
    last = last_day(month).day
    days, weights = list(range(1, last + 1)), []
    for d in days:
        weekday = date(y, m, d).weekday()
        w = 1.0 if weekday < 5 else (0.25 if weekday == 5 else 0.12)
        weights.append(w * (1.6 if d > last - 3 else 1.0))
    picked = rng.choices(days, weights, k=n)
    stamps = sorted(d * 86400 + rng.randint(8 * 3600 + 1800, 19 * 3600 + 1800) for d in picked)
    out = []
    for s in stamps:
        d, rest = divmod(s, 86400)
        out.append(f"{y:04d}-{m:02d}-{d:02d} {rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}")
    return out


def _red_time(rng: random.Random, issued: str) -> str:
    """When a blue invoice is flushed: usually within weeks, at most ~80 days later, in office hours."""
    blue = datetime.fromisoformat(issued)
    days = min(int(rng.expovariate(1 / 12)), 80)
    if days == 0:
        when = blue + timedelta(minutes=rng.randint(10, 180))
    else:
        when = datetime.combine(blue.date() + timedelta(days=days), datetime.min.time()) + timedelta(
            seconds=rng.randint(8 * 3600 + 1800, 18 * 3600))
    return when.strftime("%Y-%m-%d %H:%M:%S")


def _red_type(rng: random.Random, blue_type: str, red_day: str) -> str:
    """Who flushes a legacy blue invoice: after 数电 arrived, often a 数电 red
    (docs/codes.md, 红字发票如何指向蓝字发票, wording 3)."""
    if blue_type in DIGITAL or red_day[:7] < DIGITAL_START or rng.random() < 0.45:
        return blue_type
    return "81" if blue_type in SPECIAL else "82"


@lru_cache(maxsize=4096)
def _plan(tax_id: str, means: tuple[int, ...], month: str, kind: str) -> _Plan:
    """The month's blue invoices in outline; cheap, so red invoices can read months before theirs."""
    rng = random.Random(_seed("plan", tax_id, month, kind))
    times = _issue_times(rng, month, _count(rng, _monthly_mean(means, month, kind)))
    void_p = 0.012 if kind in PAPER else 0.0
    voided, flushes = set(), {}
    for i, issued in enumerate(times):
        r = rng.random()
        if r < void_p:
            voided.add(i)
        elif r < void_p + 0.022:
            red_time = _red_time(rng, issued)
            flushes[i] = _Flush(red_time, rng.random() < 0.7, _red_type(rng, kind, red_time))
    return _Plan(tuple(times), frozenset(voided), flushes)


# ------------------------------------------------------------------------------------------
# Numbers
# ------------------------------------------------------------------------------------------


def _digital_number(s: _Seller, issued: str, kind: str, red: bool, seq: int) -> str:
    """20 digits: YY, province, channel 0, company, month, kind digit, 7-digit sequence."""
    kind_digit = {("81", False): 1, ("82", False): 2, ("81", True): 5, ("82", True): 6}[(kind, red)]
    return f"{issued[2:4]}{s.province}0{s.company_no:05d}{issued[5:7]}{kind_digit}{seq:07d}"


_CODE_KIND = {"04": "04", "10": "11", "08": "13"}  # the kind digits inside a 12-digit 发票代码


def _legacy_code(s: _Seller, issued: str, kind: str) -> str:
    """发票代码: 10 digits for paper 专票, 12 for the rest; a new code every quarter."""
    yy, quarter = issued[2:4], (int(issued[5:7]) - 1) // 3 + 1
    if kind == "01":
        return f"{s.region}{yy}{quarter}130"
    return f"0{s.region}{yy}{quarter}{_CODE_KIND[kind]}{s.company_no % 100:02d}"


def _legacy_number(issued: str, red: bool, seq: int) -> str:
    """8-digit 发票号码 with leading zeros: month, blue/red, sequence."""
    return f"{issued[5:7]}{5 if red else 0}{seq:05d}"


def _identity(s: _Seller, issued: str, kind: str, red: bool, seq: int) -> tuple[str, str, str]:
    """(fpdm, fphm, sdfphm) as the protocol writes them for this kind."""
    if kind in DIGITAL:
        return "", "", _digital_number(s, issued, kind, red, seq)
    return _legacy_code(s, issued, kind), _legacy_number(issued, red, seq), ""


def key_of(invoice: dict) -> str:
    """The pool identity (records.invoice_key): the 数电 number, else 发票代码-发票号码."""
    return invoice["sdfphm"] or f"{invoice['fpdm']}-{invoice['fphm']}"


# ------------------------------------------------------------------------------------------
# Lines
# ------------------------------------------------------------------------------------------


def _line(xh: int, spmc: str, ssbm: str, ggxh: str, dw: str, sl: str, dj: str, je: int, slv: str,
          se: int, hxz: str = "0") -> dict:
    """One mx entry in the protocol's field order."""
    return {"xh": xh, "spmc": spmc, "ssbm": ssbm, "tdyw": "", "ggxh": ggxh, "dw": dw, "sl": sl,
            "dj": dj, "je": _money(je), "slv": slv, "se": _money(se), "jshj": _money(je + se), "hxz": hxz}


def _goods_line(rng: random.Random, goods: tuple, special: bool) -> tuple:
    """(spmc, ssbm, ggxh, dw, sl, dj, je, slv, se) for one sold item, priced one of two ways.

    Net pricing gives two-decimal unit prices; tax-inclusive pricing gives the long unit prices
    the export shows ('2227.72277227723'), with |金额 × 税率 − 税额| ≤ 0.01.
    """
    item = rng.choice(goods)
    while special and not item[2].endswith("%"):
        item = rng.choice(goods)
    spmc, ssbm, rate, unit, specs, (low, high), _ = item
    price = int(math.exp(rng.uniform(math.log(low), math.log(high))))
    if unit in ("千克", "箱", "个", "本", "张"):
        q = rng.choice((1, 2, 3, 5, 10, 12, 20, 50, 100, 2.5, 0.5))
    else:
        q = rng.choice((1, 1, 1, 1, 2, 3, 6, 12))
    sl = _qty(q)
    if rng.random() < 0.6:
        amount = round(q * price)
        return spmc, ssbm, rng.choice(specs), unit, sl, f"{price / 100:.2f}", amount, rate, _tax(amount, rate)
    gross = round(q * price)
    amount = round(gross * 100 / (100 + _percent(rate)))
    dj = f"{amount / 100 / q:.13f}".rstrip("0")
    dj = dj + "0" * max(0, 2 - len(dj.split(".")[1]))
    return spmc, ssbm, rng.choice(specs), unit, sl, dj, amount, rate, gross - amount


def _discounted(rng: random.Random, xh: int, goods: tuple) -> list[dict]:
    """A 被折扣行 (hxz 2) and its 折扣行 (hxz 1) right after it, as docs/codes.md, Discount lines, describes."""
    spmc, ssbm, ggxh, dw, sl, dj, je, slv, se = goods
    off = -max(1, round(je * rng.uniform(0.02, 0.2)))
    return [_line(xh, spmc, ssbm, ggxh, dw, sl, dj, je, slv, se, "2"),
            _line(xh + 1, spmc, ssbm, "", "", "", "", off, slv, _tax(off, slv), "1")]


def _cents(line: dict, field: str) -> int:
    """A line amount back in cents (the lines are the source of the invoice totals)."""
    value = line[field]
    sign = -1 if value.startswith("-") else 1
    whole, frac = value.lstrip("-").split(".")
    return sign * (int(whole) * 100 + int(frac))


def _blue_lines(rng: random.Random, s: _Seller, kind: str) -> list[dict]:
    """Ordinary lines, a discount now and then, or (paper kinds) a 销货清单 invoice."""
    special = kind in SPECIAL
    if kind in PAPER and rng.random() < 0.03:
        return _list_invoice_lines(rng, s, special)
    lines: list[dict] = []
    for _ in range(rng.choice(_LINE_COUNTS)):
        goods = _goods_line(rng, s.goods, special)
        if goods[6] >= 1000 and rng.random() < 0.03:
            lines.extend(_discounted(rng, len(lines) + 1, goods))
        else:
            lines.append(_line(len(lines) + 1, *goods))
    return lines


def _list_invoice_lines(rng: random.Random, s: _Seller, special: bool) -> list[dict]:
    """A 销货清单 invoice: the (详见销货清单) line carrying the invoice total, then the list.

    Some legacy lists with discounts also carry 原价合计 / 折扣额合计 summary lines (FPHXZ 5), which
    the product's errorGoodsNames filter must drop along with the (详见销货清单) line.
    """
    with_discounts = rng.random() < 0.35
    items: list[dict] = []
    for _ in range(rng.randint(9, 30)):
        goods = _goods_line(rng, s.goods, special)
        if with_discounts and goods[6] >= 1000 and rng.random() < 0.3:
            items.extend(_discounted(rng, len(items) + 2, goods))
        else:
            items.append(_line(len(items) + 2, *goods))
    je, se = sum(_cents(m, "je") for m in items), sum(_cents(m, "se") for m in items)
    rates = {m["slv"] for m in items}
    head = _line(1, LIST_LINE, "", "", "", "", "", je, rates.pop() if len(rates) == 1 else "", se)
    lines = [head, *items]
    discounts = [m for m in items if m["hxz"] == "1"]
    if discounts:
        d_je, d_se = sum(_cents(m, "je") for m in discounts), sum(_cents(m, "se") for m in discounts)
        n = len(lines)
        lines.append(_line(n + 1, ORIGINAL_TOTAL, "", "", "", "", "", je - d_je, "", se - d_se))
        lines.append(_line(n + 2, DISCOUNT_TOTAL, "", "", "", "", "", d_je, "", d_se))
    return lines


def _real_lines(lines: list[dict]) -> list[dict]:
    """The lines that make up the amount: without the list and summary lines."""
    return [m for m in lines if m["spmc"] not in (LIST_LINE, ORIGINAL_TOTAL, DISCOUNT_TOTAL, RED_LIST_LINE)]


def _totals(lines: list[dict]) -> tuple[int, int]:
    """(je, se) of an invoice in cents, from its real lines (or the red list line alone)."""
    real = _real_lines(lines) or lines
    return sum(_cents(m, "je") for m in real), sum(_cents(m, "se") for m in real)


# ------------------------------------------------------------------------------------------
# Invoices
# ------------------------------------------------------------------------------------------


def _header(s: _Seller, kind: str, issued: str, ident: tuple[str, str, str], buyer: tuple[str, str],
            lines: list[dict], clerk: str, remark: str, red_of: str = "") -> dict:
    """An invoice payload in PROTOCOL.md's field order, totals summed from its lines."""
    je, se = _totals(lines)
    return {
        "fpdm": ident[0], "fphm": ident[1], "sdfphm": ident[2],
        "xfsh": s.tax_id, "xfmc": s.name, "gfsh": buyer[0], "gfmc": buyer[1], "kprq": issued,
        "je": _money(je), "se": _money(se), "jshj": _money(je + se),
        "fply": ORIGIN_DIGITAL if kind in DIGITAL else ORIGIN_LEGACY, "fplx": kind,
        "fppz": TYPE_NAMES[kind], "fpzt": "正常", "sfzs": "N" if red_of else "Y", "fxdj": "正常",
        "kpr": clerk, "bz": remark, "yfpkey": red_of, "mx": lines,
    }


def _buyer(rng: random.Random, s: _Seller, kind: str) -> tuple[str, str]:
    """A customer; 普票 sometimes go to natural persons, who have no tax ID."""
    if kind not in SPECIAL and rng.random() < 0.12:
        return "", rng.choice(("个人", rng.choice(_SURNAMES) + rng.choice(_GIVEN) + rng.choice(_GIVEN)))
    return rng.choices(s.buyers, cum_weights=s.buyer_weights)[0]


def _blue_remark(rng: random.Random, issued: str) -> str:
    """备注 as people write it: mostly empty, sometimes a contract, a project or payee names."""
    r = rng.random()
    if r < 0.78:
        return ""
    if r < 0.88:
        return f"合同编号：HT{issued[:4]}{rng.randint(1, 9999):04d}"
    if r < 0.96:
        return f"项目名称：{rng.choice(_WORDS)}项目二期"
    return f"收款人：{rng.choice(_SURNAMES)}{rng.choice(_GIVEN)}\n复核人：{rng.choice(_SURNAMES)}{rng.choice(_GIVEN)}"


def _blue(s: _Seller, month: str, kind: str, index: int, plan: _Plan) -> dict:
    """Blue invoice `index` of a month, from its own seed (status before any red flush)."""
    rng = random.Random(_seed("blue", s.tax_id, month, kind, index))
    issued = plan.times[index]
    invoice = _header(s, kind, issued, _identity(s, issued, kind, False, index + 1), _buyer(rng, s, kind),
                      _blue_lines(rng, s, kind), rng.choice(s.clerks), _blue_remark(rng, issued))
    if index in plan.voided:
        invoice["fpzt"] = "已作废"
    return invoice


def _confirmation_no(rng: random.Random, s: _Seller, when: str) -> str:
    """红字发票信息确认单编号: 20 digits."""
    return f"{when[2:4]}{s.province}{rng.randint(0, 10 ** 16 - 1):016d}"


def _red_remark(rng: random.Random, s: _Seller, blue: dict, red_kind: str, when: str) -> str:
    """The 备注 link to the blue invoice in the three wordings of docs/codes.md, 红字发票如何指向蓝字发票."""
    if red_kind not in DIGITAL:
        gap = " " if rng.random() < 0.3 else ""
        return f"对应正数发票代码:{blue['fpdm']}{gap}号码:{blue['fphm']}"
    confirmation = _confirmation_no(rng, s, when)
    if blue["sdfphm"]:
        label = "被红冲蓝字数电发票号码" if rng.random() < 0.85 else "被红冲蓝字数电票号码"
        return f"{label}：{blue['sdfphm']} 红字发票信息确认单编号：{confirmation}"
    return (f"被红冲蓝字发票号码：{blue['fphm']} 被红冲蓝字发票代码：{blue['fpdm']} 红字发票信息确认单编号："
            f"{confirmation}")


def _negated(line: dict, xh: int) -> dict:
    """A blue line in a full red flush: amounts and quantity negated exactly, unit price kept."""
    sl = line["sl"]
    if sl:
        sl = sl[1:] if sl.startswith("-") else "-" + sl
    return _line(xh, line["spmc"], line["ssbm"], line["ggxh"], line["dw"], sl, line["dj"],
                 -_cents(line, "je"), line["slv"], -_cents(line, "se"))


def _allowance(line: dict, xh: int, share: float) -> dict:
    """Part of a blue line in a partial flush (销售折让): a negative amount, no quantity or price."""
    je = -max(1, round(_cents(line, "je") * share))
    return _line(xh, line["spmc"], line["ssbm"], line["ggxh"], line["dw"], "", "", je, line["slv"],
                 _tax(je, line["slv"]))


def _full_red_lines(blue: dict) -> list[dict]:
    """全额红冲: every line negated; a discount pair merged into one line; a list invoice as one line."""
    lines = blue["mx"]
    if lines and lines[0]["spmc"] == LIST_LINE:
        head = lines[0]
        return [_line(1, RED_LIST_LINE, "", "", "", "", "", -_cents(head, "je"), head["slv"], -_cents(head, "se"))]
    out: list[dict] = []
    for i, line in enumerate(lines):
        if line["hxz"] == "1":
            continue
        if line["hxz"] == "2" and i + 1 < len(lines):
            off = lines[i + 1]
            je = -(_cents(line, "je") + _cents(off, "je"))
            se = -(_cents(line, "se") + _cents(off, "se"))
            out.append(_line(len(out) + 1, line["spmc"], line["ssbm"], line["ggxh"], line["dw"], "", "",
                             je, line["slv"], se))
        else:
            out.append(_negated(line, len(out) + 1))
    return out


def _partial_red_lines(rng: random.Random, blue: dict) -> list[dict]:
    """部分红冲 (销货退回 / 销售折让): part of one or two lines, never the whole invoice."""
    candidates = [m for m in _real_lines(blue["mx"]) if m["hxz"] == "0" and _cents(m, "je") >= 200]
    if not candidates:
        candidates = _real_lines(blue["mx"])[:1]
    picked = rng.sample(candidates, min(len(candidates), rng.choice((1, 1, 2))))
    return [_allowance(m, i + 1, rng.uniform(0.05, 0.6)) for i, m in enumerate(picked)]


def _red(s: _Seller, kind: str, seq: int, blue: dict, flush: _Flush) -> dict:
    """The red invoice that flushes `blue`, with yfpkey and the 备注 link."""
    rng = random.Random(_seed("red", s.tax_id, key_of(blue)))
    when = flush.red_time
    lines = _full_red_lines(blue) if flush.full else _partial_red_lines(rng, blue)
    return _header(s, kind, when, _identity(s, when, kind, True, seq), (blue["gfsh"], blue["gfmc"]), lines,
                   rng.choice(s.clerks), _red_remark(rng, s, blue, kind, when), red_of=key_of(blue))


# ------------------------------------------------------------------------------------------
# A month, cached
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Month:
    invoices: tuple[dict, ...]  # every invoice of the month, by issue time
    index: dict[str, int]  # key -> position
    flushed: dict[int, tuple[str, str]]  # position of a flushed blue -> (red issue day, status)


def _reds_for(s: _Seller, means: tuple[int, ...], month: str, kind: str) -> list[dict]:
    """Red invoices of this month and kind, found in the plans of this and the 3 months before."""
    sources = []
    for back in range(4):
        blue_month = add_months(month, -back)
        for blue_kind in KINDS:
            plan = _plan(s.tax_id, means, blue_month, blue_kind)
            for index, flush in plan.flushes.items():
                if flush.red_type == kind and flush.red_time.startswith(month):
                    sources.append((flush.red_time, blue_month, blue_kind, index, flush, plan))
    sources.sort(key=lambda src: src[:4])
    return [_red(s, kind, seq, _blue(s, bm, bk, i, plan), flush)
            for seq, (_, bm, bk, i, flush, plan) in enumerate(sources, start=1)]


@lru_cache(maxsize=96)
def _month(tax_id: str, name: str, industry: str, means: tuple[int, ...], month: str, kind: str) -> _Month:
    """Every invoice of one (company, month, kind), blue and red, in issue-time order."""
    s = _seller(tax_id, name, industry)
    plan = _plan(tax_id, means, month, kind)
    blues = [_blue(s, month, kind, i, plan) for i in range(len(plan.times))]
    for i, flush in plan.flushes.items():
        blues[i]["fpzt"] = "已红冲-全额" if flush.full else "已红冲-部分"
    invoices = sorted(blues + _reds_for(s, means, month, kind), key=lambda inv: inv["kprq"])
    index = {key_of(inv): pos for pos, inv in enumerate(invoices)}
    flushed = {index[key_of(blues[i])]: (f.red_time[:10], blues[i]["fpzt"]) for i, f in plan.flushes.items()}
    return _Month(tuple(invoices), index, flushed)


def _resolve(tax_id: str, name: str | None, volume: object, industry: str | None):
    """Fill in a company's name, volume and industry from the built-in companies when not given."""
    known = _DEFAULTS_BY_ID.get(tax_id, {})
    return (name or known.get("name") or f"沙箱企业{tax_id[-4:]}",
            _volume_means(volume if volume is not None else known.get("volume", "small")),
            industry or known.get("industry") or "all")


def _check(month: str, kind: str) -> None:
    """Refuse malformed arguments early (a typo would otherwise just give an empty month)."""
    if not is_month(month):
        raise ValueError(f"月份格式应为 YYYY-MM：{month!r}")
    if kind not in KINDS:
        raise ValueError(f"不支持的发票类型：{kind!r}")


def _seen(month: _Month, pos: int, cut: str) -> dict:
    """Invoice `pos` as shown on day `cut`: a blue flushed only later still shows 正常."""
    invoice = month.invoices[pos]
    flushed = month.flushed.get(pos)
    return {**invoice, "fpzt": "正常"} if flushed and flushed[0] > cut else invoice


def _cuts(as_of: date | datetime) -> tuple[str, str]:
    """(issue cut, flush cut) for `as_of`: a day shows what was issued by its end, a moment only
    what was issued by then (the bureau never shows an invoice dated after its now)."""
    if isinstance(as_of, datetime):
        moment = as_of.isoformat(sep=" ", timespec="seconds")
        return moment, moment
    return f"{as_of.isoformat()} 23:59:59", as_of.isoformat()


def _as_seen(month: _Month, as_of: date | datetime | None) -> list[dict]:
    """The month as the bureau shows it on `as_of` (a day or a moment): nothing issued later, no
    later red flush."""
    if as_of is None:
        return list(month.invoices)
    issued_by, cut = _cuts(as_of)
    return [_seen(month, pos, cut) for pos, inv in enumerate(month.invoices) if inv["kprq"] <= issued_by]


def invoices_for(tax_id: str, month: str, type_code: str, *, name: str | None = None,
                 volume: object = None, industry: str | None = None,
                 as_of: date | datetime | None = None) -> list[dict]:
    """All output invoices of a company for one invoicing month ('YYYY-MM') and kind, by issue time.

    `volume` is a profile name (PROFILES) or {kind: mean per month}; name, volume and industry
    default to the built-in company's. `as_of` is the bureau's today: later invoices are not yet
    issued and later red flushes not yet visible on their blue invoices. The dicts are shared with
    the cache: treat them as read-only.
    """
    _check(month, type_code)
    name, means, industry = _resolve(tax_id, name, volume, industry)
    return _as_seen(_month(tax_id, name, industry, means, month, type_code), as_of)


def find_invoice(tax_id: str, type_code: str, key: str, issued_on: date, *, name: str | None = None,
                 volume: object = None, industry: str | None = None,
                 as_of: date | datetime | None = None) -> dict | None:
    """One invoice by its key, kind and issue day, as the bureau sees it on `as_of` (or None)."""
    if type_code not in KINDS:
        return None
    name, means, industry = _resolve(tax_id, name, volume, industry)
    month = _month(tax_id, name, industry, means, month_of(issued_on), type_code)
    pos = month.index.get(key)
    if pos is None:
        return None
    invoice = month.invoices[pos]
    if invoice["kprq"][:10] != issued_on.isoformat():
        return None
    if as_of is None:
        return invoice
    issued_by, cut = _cuts(as_of)
    return None if invoice["kprq"] > issued_by else _seen(month, pos, cut)


# ------------------------------------------------------------------------------------------
# Usage status (FPZTXXCX / RPA usage)
# ------------------------------------------------------------------------------------------

# 增值税用途 fpyt, weighted: 专票 are mostly deducted, 普票 mostly unused (docs/codes.md, 增值税用途).
_FPYT_SPECIAL = {"1": 740, "0": 160, "6": 30, "2": 20, "3": 10, "4": 12, "5": 4, "7": 6, "8": 4, "9": 6, "10": 4,
                 "11": 4}
_FPYT_NORMAL = {"0": 860, "1": 90, "6": 20, "2": 8, "4": 8, "3": 3, "5": 2, "7": 3, "8": 2, "9": 2, "10": 1, "11": 1}
# One underlying entry state, written in each channel's own code set (docs/codes.md, 入账状态). The bureau's
# side, kept apart from the product's labels (webapp.pool.usage) on purpose: the sandbox checks them.
_ENTRY_STATES = (("none", 0.35), ("deducted", 0.52), ("not_deducted", 0.08), ("revoked", 0.05))
ENTRY_CODES = {
    "leqi": {"none": "01", "deducted": "02", "not_deducted": "02", "revoked": "03"},
    "rpa": {"none": "01", "deducted": "02", "not_deducted": "03", "revoked": "06"},
}
_FPZT = {"正常": "0", "已作废": "2", "已红冲-部分": "7"}


def _uniforms(key: str, n: int) -> list[float]:
    """n stable numbers in [0, 1) from an invoice key."""
    digest = hashlib.blake2b(f"usage|{key}".encode(), digest_size=4 * n).digest()
    return [int.from_bytes(digest[4 * i:4 * i + 4], "big") / 2 ** 32 for i in range(n)]


def _weighted(u: float, weights: dict[str, float]) -> str:
    """The code whose cumulative weight band holds u."""
    total, acc = sum(weights.values()), 0.0
    for code, weight in weights.items():
        acc += weight / total
        if u < acc:
            return code
    return code


def _entry_state(u: float) -> str:
    """入账 state behind both channels' codes."""
    acc = 0.0
    for state, p in _ENTRY_STATES:
        acc += p
        if u < acc:
            return state
    return "none"


def usage_for(key: str, channel: str = "leqi", invoice: dict | None = None) -> dict:
    """An invoice's usage status, stable per key, in `channel`'s code set ('leqi' or 'rpa').

    The same invoice has the same underlying state through both channels; only the 入账 code
    differs (乐企 03 已入账撤销 is e-tax 06; e-tax splits 已入账 into 02 and 03). Red and voided
    invoices are never used; fpzt follows the invoice's status when the invoice is given.
    """
    if channel not in ENTRY_CODES:
        raise ValueError(f"unknown channel {channel!r}")
    u_fpyt, u_xfs, u_entry, u_lock = _uniforms(key, 4)
    status = (invoice or {}).get("fpzt", "正常")
    kind = (invoice or {}).get("fplx", "82")
    unused = status == "已作废" or (invoice or {}).get("sfzs") == "N"
    fpyt = "0" if unused else _weighted(u_fpyt, _FPYT_SPECIAL if kind in SPECIAL else _FPYT_NORMAL)
    entry = "none" if unused else _entry_state(u_entry)
    if status == "已红冲-全额":
        fpzt = "8" if kind in DIGITAL else "3"
    else:
        fpzt = _FPZT.get(status, "0")
    return {"fpyt": fpyt, "xfsyt": "01" if not unused and u_xfs < 0.03 else "00",
            "rzzt": ENTRY_CODES[channel][entry], "fpzt": fpzt,
            "hzsdbs": "Y" if status == "正常" and not unused and u_lock < 0.01 else "N"}
