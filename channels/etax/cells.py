"""The export's cell readers: one cell as the pool keeps it (text, money, numbers, rates, dates), or BadCell.

Each rule is written once (docs/etax-export.md, Values): the parser (channels.etax.parser) reads
every row through these, and the 乐企/RPA payload converter (channels.payload) reuses them, so a
file import and a download of the same invoice give the same record. A reader raises BadCell; the
caller adds the sheet and row for the user.
"""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from channels.invoice_types import canonical_type_name, type_code

MONEY_LIMIT = 10**15  # the pool keeps 18 digits with 2 decimals; larger is not an amount
MAX_NUMBER_TEXT = 40  # 数量/单价 are kept as text in 40 characters (see as_decimal)
# 数量 and 单价 texts repeat ("1", "2.00000000"): each is read once (Decimals are immutable)
_DECIMAL_TEXTS: dict[str, Decimal] = {}
# and the text the pool keeps for each such text: read once as well
_NUMBER_TEXTS: dict[str, str] = {}
_FAST_MONEY = 1e11  # below this, a float times 100 is within 0.002 of the exact cents: safe to round
NULLS = frozenset(("", "--"))
# the rates the export writes, so the line loop skips as_rate() for them
KNOWN_RATES = {r: r for r in ("13%", "9%", "6%", "5%", "3%", "1%", "0%", "免税", "不征税",
                               "16%", "10%", "17%", "11%", "1.5%", "0.5%")}
_CENT = Decimal("0.01")
_EXACT_FLOAT_LIMIT = 2**53  # beyond this a number-typed ID has lost digits
_EXCEL_EPOCH = datetime(1899, 12, 30)
_COLON = r"\s*[:：]\s*"
_RE_RED_DIGITAL = re.compile(r"被红冲蓝字数电(?:发)?票号码" + _COLON + r"([0-9]{20})(?![0-9])")
_RE_RED_NUMBER = re.compile(r"被红冲蓝字发票号码" + _COLON + r"([0-9]+)")
_RE_RED_CODE = re.compile(r"被红冲蓝字发票代码" + _COLON + r"([0-9]+)")
_RE_RED_LEGACY = re.compile(
    r"对应正数发票代码" + _COLON + r"([0-9]+)\s*号码" + _COLON + r"([0-9]+)"
)


class BadCell(Exception):
    """A cell that cannot be read; the parsing loop adds the sheet and row for the user."""

    def __init__(self, column: str, value: object, why: str = "无法识别") -> None:
        super().__init__(column)
        self.column, self.value, self.why = column, value, why


def shown(value: object) -> str:
    """A cell value as the user typed it, for messages: floats without a needless '.0'."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return str(value)


def is_negative(amount: str) -> bool:
    """Whether an amount's text (to the cent) is below zero."""
    return amount[0] == "-" and amount != "-0.00"


def as_text(value: object) -> str | None:
    """Free text as written; the export's '' and '--' mean 'nothing'."""
    if value.__class__ is str:
        return None if value in NULLS else value
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def as_id(value: object, column: str) -> str | None:
    """An identifier kept as text; a number-typed cell is accepted only while it is exact."""
    if value.__class__ is str:
        value = value.strip()
        return None if value in NULLS else value
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if float(value).is_integer() and abs(value) < _EXACT_FLOAT_LIMIT:
            return str(int(value))
        raise BadCell(column, value, "被保存为数字，位数已丢失，请使用未经 Excel 另存的原始导出文件")
    raise BadCell(column, value)


def as_loose_id(value: object) -> str | None:
    """A code such as 税收分类编码 typed as a number: keep its digits, without '.0'."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def as_money(value: object, column: str) -> Decimal:
    """An amount to the cent, from the number as written, never from float noise.

    The export writes whole cents, so the float times 100 is within a hair of an integer: that
    integer is the exact amount in cents (fast). Anything else, e.g. 2.675, is rounded from its
    shortest decimal text (repr), half up, as a person reading the cell would.
    """
    if value.__class__ is float:
        if -_FAST_MONEY < value < _FAST_MONEY:  # NaN and inf fail this too
            cents = value * 100
            whole = round(cents)
            if -1e-6 < cents - whole < 1e-6:
                return _CENT * whole  # exact: an integer number of cents, exponent -2
            return Decimal(repr(value)).quantize(_CENT, ROUND_HALF_UP)
        if -MONEY_LIMIT < value < MONEY_LIMIT:
            return Decimal(repr(value)).quantize(_CENT, ROUND_HALF_UP)
    if isinstance(value, int) and not isinstance(value, bool) and -MONEY_LIMIT < value < MONEY_LIMIT:
        return Decimal(value).quantize(_CENT)
    if value.__class__ is str and value.strip() not in NULLS:
        number = as_decimal(value.replace(",", "").replace("¥", ""), column)
        if -MONEY_LIMIT < number < MONEY_LIMIT:
            return number.quantize(_CENT, ROUND_HALF_UP)
        raise BadCell(column, value, "超出金额范围")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise BadCell(column, value, "超出金额范围" if value == value else "不是金额")
    raise BadCell(column, value, "不是金额" if value not in NULLS else "为空")


def as_money_or_none(value: object, column: str) -> Decimal | None:
    """An optional amount (价税合计): empty means unknown, not zero."""
    return None if _blank(value) else as_money(value, column)


def _blank(value: object) -> bool:
    """An optional amount's cell left empty (or `--`): unknown, not zero."""
    return value.__class__ is str and value.strip() in NULLS


def money_text(value: object, column: str) -> str:
    """An amount as the pool keeps it: the text of `as_money`'s Decimal. The export's usual cell, a
    float of whole cents, is formatted from its integer cents without making a Decimal (the same
    text: below _FAST_MONEY a float holds every cent exactly enough for two decimals)."""
    if value.__class__ is float and -_FAST_MONEY < value < _FAST_MONEY:
        cents = value * 100
        whole = round(cents)
        if -1e-6 < cents - whole < 1e-6:
            return f"{whole / 100:.2f}"
    return str(as_money(value, column))


def money_or_none_text(value: object, column: str) -> str | None:
    """An optional amount's text (价税合计): empty means unknown, not zero."""
    return None if _blank(value) else money_text(value, column)


def number_text(value: object, column: str) -> str:
    """数量/单价 as the pool keeps them: the text of `as_decimal`'s Decimal, once per spelling of a text cell."""
    if value.__class__ is not str:
        return str(as_decimal(value, column))
    text = _NUMBER_TEXTS.get(value)
    if text is None:
        text = str(as_decimal(value, column))
        if len(_NUMBER_TEXTS) < 50_000:
            _NUMBER_TEXTS[value] = text
    return text


def as_decimal(value: object, column: str) -> Decimal:
    """A Decimal exactly as written (数量/单价 carry up to 15 decimals as text).

    Its text is at most MAX_NUMBER_TEXT characters (a Decimal read from n characters prints in
    at most n + 1), so the pool's 40-character columns always hold it and the parse need not
    print every number again to check.
    """
    if value.__class__ is str:
        number = _DECIMAL_TEXTS.get(value)
        if number is not None:
            return number
        try:
            number = Decimal(value)  # surrounding spaces are accepted by Decimal itself
        except InvalidOperation:
            raise BadCell(column, value, "不是数字") from None
        if number.is_finite() and len(value) < MAX_NUMBER_TEXT:
            if len(_DECIMAL_TEXTS) < 50_000:
                _DECIMAL_TEXTS[value] = number
            return number
        raise BadCell(column, value, "不是数字" if not number.is_finite()
                      else f"过长：最多 {MAX_NUMBER_TEXT - 1} 个字符")
    if value.__class__ is float:
        if value - value == 0:  # finite; 15 significant digits print in at most 22 characters
            return _as_excel_shows(value)
        raise BadCell(column, value, "不是数字")
    if isinstance(value, int) and not isinstance(value, bool) and -10**30 < value < 10**30:
        return Decimal(value)
    raise BadCell(column, value, "不是数字")


def _as_excel_shows(value: float) -> Decimal:
    """A number cell as Excel shows it: 15 significant digits, so 2199.5841666666665 is 2199.58416666667.

    A quantity computed as 金额 ÷ 单价 is stored as the nearest binary float, whose shortest repr can
    carry a 16th or 17th digit of noise that the user never saw in the cell.
    """
    return Decimal(format(value, ".15g"))


def as_rate(value: object) -> str | None:
    """税率 as the export writes it ('13%', '免税', '不征税'); a number such as 0.13 becomes '13%'."""
    if value.__class__ is str:
        text = value.strip()
        if text in NULLS:
            return None
        if text.endswith("%") or not text[:1].isdigit():
            return text
        try:
            number = Decimal(text)
        except InvalidOperation:
            return text
        return _percent(number) if 0 <= number <= 100 else _bad_rate(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 100:
        return _percent(Decimal(repr(value)))
    return _bad_rate(value)


def _bad_rate(value: object):
    """A 税率 that is no rate at all (negative, above 100%, not a number)."""
    raise BadCell("税率", value, "不是税率")


def _percent(fraction: Decimal) -> str:
    """0.13 -> '13%', 0.015 -> '1.5%': the spelling of the export."""
    if fraction > 1:  # already a percentage, e.g. 13
        fraction /= 100
    text = format((fraction * 100).normalize(), "f")
    return f"{text}%"


def as_kind(raw: object) -> tuple[str, str | None]:
    """Canonical 发票票种 and its code; cached per distinct raw spelling by the caller."""
    name = canonical_type_name(raw if isinstance(raw, str) else str(raw or ""))
    if not name:
        raise BadCell("发票票种", raw, "为空")
    return name, type_code(name)


def as_red(value: object) -> bool:
    """是否正数发票: '否' marks a red invoice; anything but 是/否 is a damaged cell."""
    if value == "否":
        return True
    if value == "是":
        return False
    text = str(value).strip()
    if text in ("是", "否"):
        return text == "否"
    raise BadCell("是否正数发票", value, "应为“是”或“否”")


def as_issued_at(value: object) -> datetime:
    """开票日期: text 'YYYY-MM-DD HH:MM:SS' as exported; also a date-only text or a date cell."""
    if value.__class__ is str:
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            parsed = _date_from_loose_text(value)
        return parsed.replace(tzinfo=None) if parsed.tzinfo else parsed
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 1 <= value < 2958466:
        return _EXCEL_EPOCH + timedelta(seconds=round(value * 86400))  # an Excel serial, to the second
    raise BadCell("开票日期", value, "不是日期")


_RE_LOOSE_DATE = re.compile(
    r"\s*(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?)?\s*$"
)


def _date_from_loose_text(text: str) -> datetime:
    """Dates re-typed by a user: 2024/1/2, 2024年1月2日 12:00 (slow path, rarely taken)."""
    match = _RE_LOOSE_DATE.match(text)
    if not match:
        raise BadCell("开票日期", text, "不是日期")
    try:
        return datetime(*(int(part) for part in match.groups() if part is not None))
    except ValueError:
        raise BadCell("开票日期", text, "不是日期") from None


def blue_key_from_remark(remark: str) -> str | None:
    """The key of the blue invoice a red invoice flushes, from its 备注 (docs/etax-export.md).

    The export has no column for it; three wordings are known (legacy → legacy, 数电 → 数电,
    数电 → legacy), with ASCII or full-width colons and trailing text.
    """
    if "红冲" in remark:
        match = _RE_RED_DIGITAL.search(remark)
        if match:
            return match.group(1)
        number, code = _RE_RED_NUMBER.search(remark), _RE_RED_CODE.search(remark)
        if number and code:
            return f"{code.group(1)}-{number.group(1)}"
    if "对应正数发票" in remark:
        match = _RE_RED_LEGACY.search(remark)
        if match:
            return f"{match.group(1)}-{match.group(2)}"
    return None
