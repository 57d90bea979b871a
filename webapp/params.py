"""Every value a URL, a form or a command brings, parsed into a bounded type before use.

Why (README, Command line): one unbounded value took the server down — `?year=9999` made the 同步覆盖
grid count months forever, `date_to=9999-12-31` and `page=99999999999999999999` overflowed into
500s. So each parameter goes through one of the parsers below, which either return a value inside
the product's range or raise `Refused` with a Chinese reason; the pages answer a refusal with HTTP 400
and that reason (the error page, or where htmx shows errors), the commands with a click error and a
non-zero exit (`Parsed`). Every text parameter of a request also passes `_guard_text` (no control
characters, bounded length), and path integers are bounded by the `int` converter (`BoundedInt`).
"""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from decimal import Decimal

import click
from flask import current_app, request
from flask.cli import ScriptInfo
from werkzeug.routing import IntegerConverter

from channels.months import is_month, month_index
from channels.records import canonical_tax_id
from webapp.clock import now

FIRST_DAY = date(2000, 1, 1)  # no invoice, batch or audit row of the product is older
AHEAD = timedelta(days=366)  # dates may run a year past today (an end date chosen generously)
MAX_PAGE = 1_000_000  # far past any result (a million invoices are 20,000 pages), inside every integer column
MAX_ID = 2**31 - 1  # the largest id a database row of ours can have (PostgreSQL integer)
MAX_TEXT = 10_000  # characters in one parameter (the longest: a poll naming 200 batches)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # tabs and line breaks are text


class Refused(ValueError):
    """A parameter outside its type or range; the message says in Chinese what is expected."""


def _today() -> date:
    """Today as the product's one clock says (webapp/clock.py)."""
    return now().date()


def _shown(text: str) -> str:
    """A refused value as a message may repeat it: short (a hostile value may be huge)."""
    return text if len(text) <= 30 else text[:30] + "…"


def integer(text: str, low: int, high: int, what: str) -> int:
    """A whole number from low to high (digits only, so never a float, a huge exponent or 'NaN')."""
    text = (text or "").strip()
    if not re.fullmatch(r"-?[0-9]{1,20}", text) or not low <= int(text) <= high:
        raise Refused(f"{what}应为 {low} 至 {high} 之间的整数：{_shown(text)}")
    return int(text)


def page_number(text: str) -> int:
    """A page of a list: 1 when not given, else 1..MAX_PAGE (a page past the result shows its end)."""
    return integer(text, 1, MAX_PAGE, "页码") if (text or "").strip() else 1


def year_range() -> tuple[int, int]:
    """The years a page or command may ask for: 2000 up to next year."""
    return FIRST_DAY.year, _today().year + 1


def year(text: str) -> int | None:
    """A year (None when not given) within year_range()."""
    if not (text or "").strip():
        return None
    return integer(text, *year_range(), "年度")


def day(text: str) -> date | None:
    """A date written YYYY-MM-DD (None when not given), from 2000-01-01 to a year after today."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        value = None
    return bounded_day(value, text)


def bounded_day(value: date | None, text: str = "") -> date:
    """A date already read (a form's DateField) checked against the range every date must keep."""
    first, last = FIRST_DAY, _today() + AHEAD
    if value is None or not first <= value <= last:
        raise Refused(f"日期应为 {first:%Y-%m-%d} 至 {last:%Y-%m-%d} 之间的 YYYY-MM-DD：{_shown(text or str(value))}")
    return value


def month(text: str) -> str | None:
    """A month written YYYY-MM (None when not given) within year_range()."""
    text = (text or "").strip()
    if not text:
        return None
    first, last = year_range()
    if not is_month(text) or not month_index(f"{first}-01") <= month_index(text) <= month_index(f"{last}-12"):
        raise Refused(f"月份应为 {first}-01 至 {last}-12 之间的 YYYY-MM：{_shown(text)}")
    return text


def moment(text: str) -> datetime | None:
    """An ISO time such as 2026-12-05T00:30 (None when not given), its date within day()'s range."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise Refused(f"时间格式应为 ISO，例如 2026-12-05T00:30：{_shown(text)}") from None
    bounded_day(value.date(), text)
    return value


# The shapes of a 纳税人识别号 (canonical: upper case, no spaces, channels.records.canonical_tax_id) and of
# a 导入批次号 (what webapp.batches.new_batch_no writes fits: digits and capitals, the column's 32), here
# below every feature, which all parse them through this module.
TAX_ID_SHAPE = re.compile(r"^[0-9A-Z]{15,20}$")
BATCH_NO_SHAPE = re.compile(r"[0-9A-Z]{1,32}")


def check_tax_id(tax_id: str) -> str:
    """A 纳税人识别号 in its canonical form, or ValueError in Chinese (a form's rule or a parameter)."""
    tax_id = canonical_tax_id(tax_id or "")
    if not TAX_ID_SHAPE.match(tax_id):
        raise ValueError(f"税号格式不正确：{tax_id or '（空）'}（应为15至20位数字或大写字母）")
    return tax_id


def tax_id(text: str) -> str:
    """A 纳税人识别号 by its shape (15 to 20 digits or letters), in its canonical form (check_tax_id);
    "" when not given."""
    if not (text or "").strip():
        return ""
    try:
        return check_tax_id(text)
    except ValueError as exc:
        raise Refused(str(exc)) from None


def batch_no(text: str) -> str:
    """导入批次号 by its shape (BATCH_NO_SHAPE); "" when not given."""
    text = (text or "").strip()
    if text and not BATCH_NO_SHAPE.fullmatch(text):
        raise Refused(f"导入批次号格式不正确（应为最多 32 位数字和大写字母，如 20261205093000A1B2C3）：{_shown(text)}")
    return text


def choice(text: str, allowed, what: str) -> str:
    """One of the allowed codes ("" when not given)."""
    text = (text or "").strip()
    if text and text not in allowed:
        raise Refused(f"{what}不正确：{_shown(text)}，请从页面列出的选项中选择")
    return text


MAX_AMOUNT_DIGITS = 12  # whole-yuan digits of an amount (MONEY is Numeric(18, 2): far below its limit)
MAX_LINE_NO = 99_999  # an invoice line number (序号); no invoice has that many lines


def money_amount(text: str) -> Decimal | None:
    """An amount of money in yuan (None when not given): more than 0, at most two decimals, below
    10^12 — a red flush's 金额 of one line (docs/rules.md, 红冲草稿)."""
    return _positive_decimal(text, 2, "金额应为大于 0、最多两位小数的数字（元）")


def quantity(text: str) -> Decimal | None:
    """A quantity (None when not given): more than 0, at most 13 decimals (as invoices write 数量),
    below 10^12 — a red flush's 数量 of one line."""
    return _positive_decimal(text, 13, "数量应为大于 0、最多 13 位小数的数字")


def _positive_decimal(text: str, decimals: int, refusal: str) -> Decimal | None:
    """A number more than 0 below 10^12 with at most `decimals` decimals (None when not given),
    else `refusal` with the value."""
    text = (text or "").strip()
    if not text:
        return None
    if not re.fullmatch(rf"[0-9]{{1,{MAX_AMOUNT_DIGITS}}}(\.[0-9]{{1,{decimals}}})?", text) or not Decimal(text) > 0:
        raise Refused(f"{refusal}：{_shown(text)}")
    return Decimal(text)


LINE_MEASURES = {"qty": "quantity", "数量": "quantity", "amount": "amount", "金额": "amount"}


def line_entry(text: str) -> tuple[int, str, Decimal] | None:
    """`N=VALUE`, `N=qty:VALUE` or `N=amount:VALUE` (None when not given): line N of an invoice and
    the quantity or amount asked of it. Without a measure the caller reads VALUE as the reason's own
    (`redflush-draft --line`); "" stands for that in the answer."""
    text = (text or "").strip()
    if not text:
        return None
    match = re.fullmatch(r"([0-9]{1,5})=(?:([a-z\u4e00-\u9fff]+):)?(.*)", text)
    if not match or match.group(2) not in (None, *LINE_MEASURES):
        raise Refused(f"行的写法应为 行号=数量或金额，如 2=3 或 2=qty:3、2=amount:150.00：{_shown(text)}")
    line_no = integer(match.group(1), 1, MAX_LINE_NO, "行号")
    measure = LINE_MEASURES.get(match.group(2) or "", "")
    value = money_amount(match.group(3)) if measure == "amount" else quantity(match.group(3))
    if value is None:
        raise Refused(f"第 {line_no} 行没有填写数量或金额：{_shown(text)}")
    return line_no, measure, value


def text(value: str) -> str:
    """Free text (a name, a number, a key): no control characters (a NUL cannot even be stored by
    PostgreSQL) and at most MAX_TEXT characters; returned without surrounding spaces."""
    if len(value) > MAX_TEXT or _CONTROL.search(value):
        raise Refused(f"参数含有控制字符或超过 {MAX_TEXT} 个字符，请检查输入内容后重试")
    return value.strip()


def arg(name: str, parse, query_only: bool = False):
    """The request's parameter `name` (query string or form; `query_only`: where a form field of the same
    name means something else) parsed; a refusal becomes a 400 (init_app)."""
    return parse((request.args if query_only else request.values).get(name, ""))


def _guard_text() -> None:
    """Every text a request carries (query string, form, path) passes text() before any view reads it."""
    values = [v for values in request.args.listvalues() for v in values] + list((request.view_args or {}).values())
    if request.method == "POST":
        values += [v for values in request.form.listvalues() for v in values]
    for value in values:
        if isinstance(value, str):
            text(value)


class BoundedInt(IntegerConverter):
    """`<int:…>` in a URL: a number no row id can exceed matches no route (404), never reaches a query."""

    def __init__(self, map, fixed_digits: int = 0, min: int | None = None, max: int | None = MAX_ID,  # noqa: A002
                 signed: bool = False) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


class Parsed(click.ParamType):
    """A command option parsed by one of the parsers above: a refusal is click's usage error (the
    Chinese reason, exit status 2), never a traceback."""

    def __init__(self, name: str, parse):
        self.name = name
        self.parse = parse

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        if not current_app and ctx is not None:  # the parsers read the product's clock and settings
            with ctx.ensure_object(ScriptInfo).load_app().app_context():
                return self.convert(value, param, ctx)
        try:
            parsed = self.parse(value)
        except Refused as exc:
            self.fail(str(exc), param, ctx)
        if parsed in (None, ""):
            self.fail("不能为空", param, ctx)
        return parsed


class Choice(click.Choice):
    """click's Choice (the help lists the codes), refusing in Chinese like the parsers above."""

    def __init__(self, choices, what: str):
        super().__init__(list(choices))
        self.what = what

    def convert(self, value, param, ctx):
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            self.fail(f"{self.what}应为 {'、'.join(self.choices)} 之一：{_shown(str(value))}", param, ctx)


YEAR, MONTH, MOMENT, TAX_ID, BATCH_NO, TEXT, LINE_ENTRY = (
    Parsed("YYYY", year), Parsed("YYYY-MM", month), Parsed("ISO-TIME", moment), Parsed("TAX_ID", tax_id),
    Parsed("BATCH_NO", batch_no), Parsed("TEXT", text), Parsed("N=AMOUNT|QTY", line_entry))


def init_app(app) -> None:
    """Bound path integers (before any blueprint adds a route), guard every request's text, and answer
    a refused parameter with 400 and its reason."""
    from webapp.web import error_response

    app.url_map.converters["int"] = BoundedInt
    app.before_request(_guard_text)
    app.register_error_handler(Refused, lambda exc: error_response(400, str(exc)))
