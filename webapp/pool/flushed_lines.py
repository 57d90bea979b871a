"""What is left of a blue invoice, line by line: each line less what the red invoices linked to it
have flushed (docs/rules.md, What is left per line).

Pure logic, no database: the caller hands over the blue invoice's lines and, per red invoice, its
header figures and lines (the pool's rows serve as they are). A red's lines are matched to the
blue's by what identifies a line: 税收分类编码, 货物或应税劳务名称, 规格型号 and 税率. A red that cannot be
matched whole, line by line (a 详见对应正数发票及清单 red of a 销货清单 invoice, a 销售折让 written on a
line of its own, a line flushing more than is left), counts against the invoice as a whole, and the
screen says which and why. A 折扣行 is merged into the line it discounts (docs/codes.md, 折扣行 and
销货清单): a red flush names the discounted line, and the bureau merges the pair.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from webapp.accounts.settings import is_error_goods
from webapp.money import CENT
from webapp.statuses import UnmatchedRed

ZERO = Decimal("0")
PRICE_PLACES = Decimal("1e-8")  # a derived 单价 or 数量 (a discounted line's, a quantity from an amount)


def decimal_or_none(text) -> Decimal | None:
    """数量 / 单价 as stored (decimal text as written), None when empty or unreadable."""
    if text is None or str(text).strip() == "":
        return None
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def exact(value: Decimal) -> Decimal:
    """A derived 单价 or 数量 to 8 decimals without trailing zeros, never in exponent form."""
    value = value.quantize(PRICE_PLACES, ROUND_HALF_UP)
    text = f"{value:f}"
    return Decimal(text.rstrip("0").rstrip(".") if "." in text else text)


def cents(value: Decimal) -> Decimal:
    """An amount to the cent, rounded half up as the bureau rounds (docs/rules.md, 红冲草稿)."""
    return Decimal(value).quantize(CENT, ROUND_HALF_UP)


@dataclass(frozen=True)
class BlueLine:
    """One line of the blue invoice as a red flush names it: a discounted line with its 折扣行 merged in
    (`amount`, `tax` net of the discount; `unit_price` then the net amount per unit)."""

    line_no: int
    name: str
    tax_code: str | None
    spec: str | None
    unit: str | None
    rate: str | None
    quantity: Decimal | None
    unit_price: Decimal | None
    amount: Decimal
    tax: Decimal
    discount: Decimal = ZERO  # the 折扣行's 金额 merged in (negative), 0 without one
    discount_lines: tuple[int, ...] = ()

    @property
    def identity(self) -> tuple[str, str, str, str]:
        """What a red line must share with it: 税收分类编码, 货物或应税劳务名称, 规格型号, 税率."""
        return line_identity(self.tax_code, self.name, self.spec, self.rate)


def line_identity(tax_code, name, spec, rate) -> tuple[str, str, str, str]:
    """A line's identity with spaces and empty markers ignored (None and "" are the same)."""
    return tuple("".join((value or "").split()) for value in (tax_code, name, spec, rate))


@dataclass(frozen=True)
class LineBalance:
    """One blue line, what the matched red lines took from it, and what is left."""

    line: BlueLine
    flushed_quantity: Decimal = ZERO
    flushed_amount: Decimal = ZERO
    flushed_tax: Decimal = ZERO

    @property
    def left_quantity(self) -> Decimal | None:
        """数量 left (None: the line has no quantity, as a service line by amount)."""
        if self.line.quantity is None:
            return None
        return max(self.line.quantity - self.flushed_quantity, ZERO)

    @property
    def left_amount(self) -> Decimal:
        """金额 left, never below zero."""
        return max(self.line.amount - self.flushed_amount, ZERO)

    @property
    def left_tax(self) -> Decimal:
        """税额 left, never below zero."""
        return max(self.line.tax - self.flushed_tax, ZERO)


@dataclass(frozen=True)
class RedFigures:
    """What the balance reads of one red invoice: its key, header 金额 / 税额 and lines."""

    key: str
    amount: Decimal
    tax: Decimal
    lines: Sequence = ()


@dataclass(frozen=True)
class WholeInvoiceRed:
    """A red counted against the invoice as a whole, with why it could not be matched line by line."""

    key: str
    amount: Decimal  # |金额|
    tax: Decimal  # |税额|
    why: UnmatchedRed
    name: str = ""

    @property
    def reason(self) -> str:
        """Why, as the page says it (the code's label with the red line's goods name)."""
        return self.why.label.format(name=self.name)


@dataclass(frozen=True)
class Balances:
    """Every line of a blue invoice with what is left, the reds matched line by line, the reds counted
    against the whole invoice, and what is left of the invoice itself."""

    lines: tuple[LineBalance, ...]
    matched: tuple[str, ...]
    whole: tuple[WholeInvoiceRed, ...]
    amount_left: Decimal
    tax_left: Decimal
    flushed_amount: Decimal = ZERO
    flushed_tax: Decimal = ZERO
    by_line: dict = field(default_factory=dict, compare=False)

    def line(self, line_no: int) -> LineBalance | None:
        """A line by its 序号 (a merged 折扣行's own number names none)."""
        return self.by_line.get(line_no)


# ---- the blue invoice's lines --------------------------------------------------------------------

def blue_lines(rows: Iterable, error_goods: frozenset[str] = frozenset()) -> list[BlueLine]:
    """The pool's lines of a blue invoice, in order, each 折扣行 merged into the line before it.

    A line the admin's errorGoodsNames names (a `(详见销货清单)` line kept by an older setting) is
    not a line of its own: its figures are the whole invoice's (docs/codes.md, 销货清单 lines).
    """
    lines: list[BlueLine] = []
    for row in rows:
        if is_error_goods(row.name, error_goods):
            continue
        amount, tax = Decimal(row.amount), Decimal(row.tax)
        if row.is_discount and lines:
            lines[-1] = _merged(lines[-1], row.line_no, amount, tax)
            continue
        lines.append(BlueLine(line_no=row.line_no, name=row.name, tax_code=row.tax_code, spec=row.spec, unit=row.unit,
                              rate=row.tax_rate, quantity=decimal_or_none(row.quantity),
                              unit_price=decimal_or_none(row.unit_price), amount=amount, tax=tax))
    return lines


def _merged(line: BlueLine, line_no: int, amount: Decimal, tax: Decimal) -> BlueLine:
    """A discounted line with its 折扣行: net figures, and the net amount per unit as its price."""
    net = line.amount + amount
    price = exact(net / line.quantity) if line.quantity else line.unit_price
    return replace(line, amount=net, tax=line.tax + tax, unit_price=price, discount=line.discount + amount,
                   discount_lines=(*line.discount_lines, line_no))


# ---- matching the reds ---------------------------------------------------------------------------

def balances(lines: list[BlueLine], reds: Iterable[RedFigures], amount: Decimal, tax: Decimal) -> Balances:
    """Each red, in the order given (oldest first), taken from the lines it matches, or else from the
    invoice as a whole; `amount` and `tax` are the blue invoice's header figures."""
    taken = {line.line_no: (ZERO, ZERO, ZERO) for line in lines}
    groups: dict[tuple, list[BlueLine]] = {}
    for line in lines:
        groups.setdefault(line.identity, []).append(line)
    matched, whole, flushed_amount, flushed_tax = [], [], ZERO, ZERO
    for red in reds:
        flushed_amount += abs(Decimal(red.amount))
        flushed_tax += abs(Decimal(red.tax))
        outcome = _take(red, groups, taken)
        if isinstance(outcome, WholeInvoiceRed):
            whole.append(outcome)
        else:
            taken = outcome
            matched.append(red.key)
    rows = tuple(LineBalance(line, *taken[line.line_no]) for line in lines)
    return Balances(lines=rows, matched=tuple(matched), whole=tuple(whole),
                    amount_left=max(Decimal(amount) - flushed_amount, ZERO),
                    tax_left=max(Decimal(tax) - flushed_tax, ZERO), flushed_amount=flushed_amount,
                    flushed_tax=flushed_tax, by_line={row.line.line_no: row for row in rows})


def _red_sums(red: RedFigures) -> dict[tuple, list] | WholeInvoiceRed:
    """A red's lines summed per identity as positive flushed figures [quantity, amount, tax, name]."""
    sums: dict[tuple, list] = {}
    for row in red.lines:
        key = line_identity(row.tax_code, row.name, row.spec, row.tax_rate)
        entry = sums.setdefault(key, [ZERO, ZERO, ZERO, row.name])
        entry[0] -= decimal_or_none(row.quantity) or ZERO
        entry[1] -= Decimal(row.amount)
        entry[2] -= Decimal(row.tax)
    if not sums:
        return _whole(red, UnmatchedRed.NO_LINES)
    return sums


def _whole(red: RedFigures, why: UnmatchedRed, name: str = "") -> WholeInvoiceRed:
    """The red counted against the whole invoice, by its header figures."""
    return WholeInvoiceRed(key=red.key, amount=abs(Decimal(red.amount)), tax=abs(Decimal(red.tax)), why=why, name=name)


def _take(red: RedFigures, groups: dict, taken: dict) -> dict | WholeInvoiceRed:
    """The lines' taken figures with this red's added, or why it cannot be matched line by line."""
    sums = _red_sums(red)
    if isinstance(sums, WholeInvoiceRed):
        return sums
    result = dict(taken)
    for key, (quantity, amount, tax, name) in sums.items():
        if key not in groups:
            return _whole(red, UnmatchedRed.LINE_NOT_FOUND, name)
        if amount < 0 or not _spread(groups[key], result, quantity, amount, tax):
            return _whole(red, UnmatchedRed.OVER_LINE, name)
    return result


def _spread(lines: list[BlueLine], result: dict, quantity: Decimal, amount: Decimal, tax: Decimal) -> bool:
    """Take a red line's figures from the blue lines of its identity, first ones first (two lines of
    one identity are rare: the same goods at two prices); False when they hold less than it flushes."""
    for position, line in enumerate(lines):
        done_quantity, done_amount, done_tax = result[line.line_no]
        room = line.amount - done_amount
        last = position == len(lines) - 1
        if amount <= 0 or (room <= 0 and not last):
            continue
        share = amount if last or amount <= room else room
        part = share / amount
        share_quantity = quantity if share == amount else exact(quantity * part)
        share_tax = tax if share == amount else cents(tax * part)
        if share > room or (line.quantity is not None and done_quantity + share_quantity > line.quantity):
            return False
        result[line.line_no] = (done_quantity + share_quantity, done_amount + share, done_tax + share_tax)
        quantity, amount, tax = quantity - share_quantity, amount - share, tax - share_tax
    return amount <= 0


def balance_json(balance: Balances) -> dict:
    """`pool show`'s view of what is left per line: figures as exact decimal text (JSON has no decimal)."""
    def text(value: Decimal | None) -> str | None:
        """A figure as its exact text; None stays None (a line without quantity)."""
        return None if value is None else f"{value:f}"

    return {
        "lines": [{"line_no": row.line.line_no, "name": row.line.name, "rate": row.line.rate,
                   "discount_lines": list(row.line.discount_lines), "quantity": text(row.line.quantity),
                   "amount": text(row.line.amount), "tax": text(row.line.tax),
                   "flushed_quantity": text(row.flushed_quantity), "flushed_amount": text(row.flushed_amount),
                   "flushed_tax": text(row.flushed_tax), "left_quantity": text(row.left_quantity),
                   "left_amount": text(row.left_amount), "left_tax": text(row.left_tax)} for row in balance.lines],
        "matched_reds": list(balance.matched),
        "whole_invoice_reds": [{"key": red.key, "amount": text(red.amount), "tax": text(red.tax), "why": red.reason}
                               for red in balance.whole],
        "amount_left": text(balance.amount_left), "tax_left": text(balance.tax_left),
    }
