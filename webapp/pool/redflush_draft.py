"""红冲草稿: what to put on the red-flush form for one blue invoice (docs/rules.md, 红冲草稿).

Pure logic, no database: the caller gives the blue invoice, what is left of it line by line
(webapp.pool.flushed_lines), its 红冲预检 (webapp.pool.redflush) and what the user asked (a 红冲原因 and,
where the reason allows a partial flush, a quantity or an amount per line). `make_draft` answers with
the form's fields prefilled and its negative lines, or refuses with a `DraftRefusal` code. A draft is
not an invoice and is never stored: the views and the command record each one in the audit log.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from webapp import params
from webapp.pool.flushed_lines import ZERO, Balances, BlueLine, LineBalance, cents, exact
from webapp.pool.redflush import CONFIRM_BILL, DIGITAL_PAPER, INFO_TABLE, Readiness
from webapp.statuses import DraftRefusal, RedFlushReason

LINE_TOLERANCE = Decimal("0.06")  # |金额 × 税率 − 税额| of one line (docs/rules.md, 红冲草稿)
TOTAL_TOLERANCE = Decimal("1.27")  # the same differences summed over the invoice
NO_FORM = "红字发票（税控普通发票，直接开具）"


class DraftRefused(Exception):
    """A draft that cannot be made: a code (DraftRefusal) with its parameters; the message is rendered."""

    def __init__(self, code: DraftRefusal, **values):
        """Keep the code and its values; the message is the code's label filled in."""
        self.code, self.values = code, values
        super().__init__(code.label.format(**values))


@dataclass(frozen=True)
class Entry:
    """What the user asked of one line: a quantity or an amount (the reason says which may be given)."""

    line_no: int
    quantity: Decimal | None = None
    amount: Decimal | None = None


@dataclass(frozen=True)
class DraftLine(BlueLine):
    """One negative line of the red flush: the blue line (by its 序号) with the flushed quantity (None
    where the reason gives none), amount and tax, each negative, in place of the blue line's."""

    whole: bool = False  # all that was left of the line


@dataclass(frozen=True)
class Draft:
    """The form as it must be filled: the blue invoice's identity and parties, the reason, the negative
    lines with their totals, and who must confirm it."""

    document: str
    reason: RedFlushReason
    invoice: Mapping
    lines: tuple[DraftLine, ...]
    confirm: str
    made_at: datetime
    flushed_amount: Decimal
    notes: tuple[str, ...] = field(default=())

    @property
    def amount(self) -> Decimal:
        """本次红冲金额合计 (negative)."""
        return sum((line.amount for line in self.lines), ZERO)

    @property
    def tax(self) -> Decimal:
        """本次红冲税额合计 (negative)."""
        return sum((line.tax for line in self.lines), ZERO)

    @property
    def total(self) -> Decimal:
        """本次红冲价税合计 (negative)."""
        return self.amount + self.tax


# ---- what the user asked -------------------------------------------------------------------------

def default_measure(reason: RedFlushReason) -> str:
    """What a bare number on a line means: 销货退回 flushes by quantity, the others by amount."""
    return "quantity" if reason == RedFlushReason.GOODS_RETURNED else "amount"


def entry_of(reason: RedFlushReason, line_no: int, measure: str, value: Decimal) -> Entry:
    """One `--line N=…` as an Entry: an amount is checked again as money (two decimals at most)."""
    measure = measure or default_measure(reason)
    if measure == "amount":
        return Entry(line_no, amount=params.money_amount(f"{value:f}"))
    return Entry(line_no, quantity=value)


def entries_from_form(values: Mapping, line_nos: Iterable[int]) -> list[Entry]:
    """The draft form's `qty_N` and `amount_N` fields (webapp.params parsers), one Entry per line
    with either filled."""
    entries = []
    for line_no in line_nos:
        quantity = params.quantity(values.get(f"qty_{line_no}", ""))
        amount = params.money_amount(values.get(f"amount_{line_no}", ""))
        if quantity is not None or amount is not None:
            entries.append(Entry(line_no, quantity=quantity, amount=amount))
    return entries


# ---- the rules -----------------------------------------------------------------------------------

def rate_fraction(rate: str | None) -> Decimal:
    """税率 '13%' as 0.13; 免税, 不征税 and an unknown rate carry no tax."""
    text = (rate or "").strip()
    if text.endswith("%"):
        try:
            return Decimal(text[:-1]) / 100
        except ArithmeticError:
            return ZERO
    return ZERO


def _not_ready(readiness: Readiness) -> DraftRefused:
    """红冲预检 says no, or cannot tell yet: its own reasons say why and what to do first."""
    return DraftRefused(DraftRefusal.NOT_READY, why="；".join(readiness.reasons))


def _whole_lines(reason: RedFlushReason, balance: Balances) -> list[DraftLine]:
    """Every line with something left, flushed whole (开票有误, or an invoice that allows only a full
    flush); 销售折让 gives no quantity or unit price."""
    if balance.whole:
        raise DraftRefused(DraftRefusal.LINES_UNKNOWN, count=len(balance.whole))
    by_amount = reason == RedFlushReason.ALLOWANCE
    return [_line(row, None if by_amount else row.left_quantity, row.left_amount, by_amount)
            for row in balance.lines if row.left_amount > 0]


def _asked_line(reason: RedFlushReason, row: LineBalance, entry: Entry) -> DraftLine:
    """One line as the reason allows it: 销货退回 by quantity (the amount follows from 单价), 服务中止 by
    quantity or amount, 销售折让 by amount with no quantity; never more than is left."""
    line_no = row.line.line_no
    if row.left_amount <= 0:
        raise DraftRefused(DraftRefusal.NOTHING_LEFT, line=line_no)
    if entry.quantity is not None and entry.amount is not None:
        raise DraftRefused(DraftRefusal.BOTH, line=line_no)
    if reason == RedFlushReason.ALLOWANCE:
        if entry.quantity is not None:
            raise DraftRefused(DraftRefusal.QUANTITY_FOR_ALLOWANCE, line=line_no)
        return _line(row, None, _checked_amount(row, entry.amount), True)
    if reason == RedFlushReason.GOODS_RETURNED and entry.quantity is None:
        raise DraftRefused(DraftRefusal.QUANTITY_FOR_RETURN, line=line_no)
    if entry.quantity is not None:
        return _line(row, entry.quantity, _amount_of(row, entry.quantity), False)
    amount = _checked_amount(row, entry.amount)
    return _line(row, _quantity_of(row, amount), amount, False)


def _checked_amount(row: LineBalance, amount: Decimal) -> Decimal:
    """An amount to the cent, no more than the line has left."""
    amount = cents(amount)
    if amount > row.left_amount:
        raise DraftRefused(DraftRefusal.OVER_AMOUNT, line=row.line.line_no, asked=amount, left=row.left_amount)
    return amount


def _amount_of(row: LineBalance, quantity: Decimal) -> Decimal:
    """A quantity's amount at the line's 单价; all that is left of the quantity takes all of the amount."""
    line = row.line
    if line.quantity is None or not line.unit_price:
        raise DraftRefused(DraftRefusal.NO_QUANTITY, line=line.line_no)
    if quantity > row.left_quantity:
        raise DraftRefused(DraftRefusal.OVER_QUANTITY, line=line.line_no, asked=quantity, left=row.left_quantity)
    amount = row.left_amount if quantity == row.left_quantity else cents(quantity * line.unit_price)
    return _checked_amount(row, amount)


def _quantity_of(row: LineBalance, amount: Decimal) -> Decimal | None:
    """服务中止 by amount: the quantity that amount buys at the line's 单价 (none without a quantity)."""
    if row.line.quantity is None or not row.line.unit_price:
        return None
    if amount == row.left_amount:
        return row.left_quantity
    return exact(amount / row.line.unit_price)


def _line(row: LineBalance, quantity: Decimal | None, amount: Decimal, by_amount: bool) -> DraftLine:
    """The negative line, its tax at the line's rate (rounded half up) or, flushed whole, the tax left
    on it where that keeps within the bureau's 0.06 of a line."""
    line = row.line
    whole = amount == row.left_amount
    expected = amount * rate_fraction(line.rate)
    tax = (row.left_tax if whole and abs(row.left_tax - expected) <= LINE_TOLERANCE
           else min(cents(expected), row.left_tax))
    return DraftLine(**vars(line) | {"quantity": None if quantity is None else -quantity, "amount": -amount,
                                     "unit_price": None if by_amount else line.unit_price, "tax": -tax,
                                     "whole": whole})


def _asked_lines(reason: RedFlushReason, balance: Balances, entries: list[Entry]) -> list[DraftLine]:
    """The lines the user filled, each once, each a line of the invoice."""
    if not entries:
        measure = "数量" if reason == RedFlushReason.GOODS_RETURNED else "金额"
        raise DraftRefused(DraftRefusal.NO_LINES, measure=measure)
    seen: set[int] = set()
    lines = []
    for entry in entries:
        row = balance.line(entry.line_no)
        if row is None:
            raise DraftRefused(DraftRefusal.UNKNOWN_LINE, line=entry.line_no,
                               lines="、".join(str(r.line.line_no) for r in balance.lines) or "无")
        if entry.line_no in seen:
            raise DraftRefused(DraftRefusal.TWICE, line=entry.line_no)
        seen.add(entry.line_no)
        lines.append(_asked_line(reason, row, entry))
    return sorted(lines, key=lambda line: line.line_no)


def _check_totals(lines: list[DraftLine], balance: Balances) -> None:
    """Never more than the invoice has left (reds counted against the whole invoice included); each
    line's tax within 0.06 of 金额 × 税率 and the sum of those differences within 1.27."""
    amount, tax = -sum((line.amount for line in lines), ZERO), -sum((line.tax for line in lines), ZERO)
    if amount > balance.amount_left:
        raise DraftRefused(DraftRefusal.OVER_INVOICE, asked=amount, left=balance.amount_left)
    if tax > balance.tax_left:
        raise DraftRefused(DraftRefusal.OVER_INVOICE_TAX, asked=tax, left=balance.tax_left)
    difference = ZERO
    for line in lines:
        off = line.tax - line.amount * rate_fraction(line.rate)
        if abs(off) > LINE_TOLERANCE:
            raise DraftRefused(DraftRefusal.LINE_TAX, line=line.line_no, difference=cents(off))
        difference += off
    if abs(difference) > TOTAL_TOLERANCE:
        raise DraftRefused(DraftRefusal.TAX_TOLERANCE, difference=cents(difference))


def make_draft(invoice, balance: Balances, readiness: Readiness, reason: RedFlushReason,
               entries: list[Entry], made_at: datetime) -> Draft:
    """The draft for this blue invoice, or DraftRefused saying why and what to do instead.

    Nothing is drafted where 红冲预检 says no or cannot tell. 开票有误, and any reason on an invoice that
    allows only a full flush, flushes every line whole; the other reasons flush the lines given.
    """
    if readiness.can_flush is not True:
        raise _not_ready(readiness)
    full_only = readiness.mode == "full_only"
    if full_only or reason == RedFlushReason.INVOICING_ERROR:
        if entries:
            if full_only:
                raise DraftRefused(DraftRefusal.FULL_ONLY, why=readiness.reasons[0])
            raise DraftRefused(DraftRefusal.WHOLE_ONLY_REASON)
        lines = _whole_lines(reason, balance)
    else:
        lines = _asked_lines(reason, balance, entries)
    if not lines:
        raise DraftRefused(DraftRefusal.NO_BLUE_LINES)
    _check_totals(lines, balance)
    return Draft(document=readiness.document or NO_FORM, reason=reason, invoice=blue_identity(invoice),
                 lines=tuple(lines), confirm=who_confirms(readiness, invoice), made_at=made_at,
                 flushed_amount=balance.flushed_amount, notes=_notes(readiness, balance))


# ---- the form ------------------------------------------------------------------------------------

def blue_identity(invoice) -> dict:
    """What the form names of the blue invoice and its parties."""
    return {
        "key": invoice.key, "code": invoice.code or "", "number": invoice.number or "",
        "digital_number": invoice.digital_number or "", "type_name": invoice.type_name,
        "type_code": invoice.type_code or "", "issued_at": invoice.issued_at.strftime("%Y-%m-%d %H:%M:%S"),
        "seller_name": invoice.seller_name or "", "seller_tax_id": invoice.tax_id,
        "buyer_name": invoice.buyer_name or "", "buyer_tax_id": invoice.buyer_tax_id or "",
        "amount": cents(invoice.amount), "tax": cents(invoice.tax),
        "total": cents(invoice.total if invoice.total is not None else Decimal(invoice.amount) + Decimal(invoice.tax)),
    }


def who_confirms(readiness: Readiness, invoice) -> str:
    """Who must act on the form and by when (docs/codes.md, Full or partial, and who acts)."""
    buyer = invoice.buyer_name or invoice.buyer_tax_id or "购买方"
    if readiness.confirmer == "buyer_rollback_first":
        return f"购买方（{buyer}）须先回退出口退税的进货凭证；之后销方直接开具红字发票，无需确认"
    if readiness.confirmer == "other_party":
        if readiness.document == CONFIRM_BILL:
            return f"购买方（{buyer}）须在 72 小时内确认（自提交时起算，超时未确认自动作废）"
        return f"购买方（{buyer}）须确认后方可开具红字发票"
    if readiness.document == CONFIRM_BILL:
        hand = "，红字纸质发票须手工开具" if (invoice.type_code or "") in DIGITAL_PAPER else ""
        return f"无需购买方确认：销方提交确认单即开具红字发票（确认即开票）{hand}"
    if readiness.document == INFO_TABLE:
        return "无需购买方确认：销方填开信息表后开具红字专用发票"
    return "无需信息表：销方直接开具红字发票，备注注明对应蓝字发票代码和号码"


def _notes(readiness: Readiness, balance: Balances) -> tuple[str, ...]:
    """What the user should know beside the form: reds counted against the whole invoice, and the
    预检's own notes (a status the pool cannot confirm, a paper invoice issued by hand)."""
    notes = [f"红字发票 {red.key}（{red.amount} 元）按整张发票计：{red.reason}；各行剩余未扣除它，以税局系统为准"
             for red in balance.whole]
    return (*notes, *readiness.reasons)


def form_fields(draft: Draft) -> list[tuple[str, object, str]]:
    """The form's fields in its order, as (label, value, kind): `t` text, `m` money — one list for the
    page, the workbook and the command, so the three never differ."""
    blue = draft.invoice
    special_table = draft.document == INFO_TABLE
    fields = [("单据", draft.document, "t"), ("录入方身份", "销售方", "t"),
              ("红冲原因", f"{draft.reason.label}（{draft.reason.value}）", "t"),
              ("销售方名称", blue["seller_name"], "t"), ("销售方纳税人识别号", blue["seller_tax_id"], "t"),
              ("购买方名称", blue["buyer_name"], "t"), ("购买方纳税人识别号", blue["buyer_tax_id"], "t")]
    if blue["digital_number"]:
        fields.append(("蓝字发票数电发票号码", blue["digital_number"], "t"))
    if blue["code"]:
        prefix = "对应蓝字专用发票" if special_table else "蓝字发票"
        fields += [(f"{prefix}代码", blue["code"], "t"), (f"{prefix}号码", blue["number"], "t")]
    fields += [("蓝字发票票种", blue["type_name"], "t"), ("蓝字发票开票日期", blue["issued_at"], "t"),
               ("蓝字发票金额", blue["amount"], "m"), ("蓝字发票税额", blue["tax"], "m"),
               ("蓝字发票价税合计", blue["total"], "m"), ("此前已红冲金额", draft.flushed_amount, "m"),
               ("本次红冲金额合计", draft.amount, "m"), ("本次红冲税额合计", draft.tax, "m"),
               ("本次红冲价税合计", draft.total, "m"), ("确认", draft.confirm, "t"),
               ("草稿生成时间", draft.made_at.strftime("%Y-%m-%d %H:%M:%S"), "t")]
    return fields


LINE_HEADERS = ("蓝字发票行号", "项目名称", "规格型号", "单位", "数量", "单价", "金额", "税率/征收率", "税额")


def line_cells(line: DraftLine) -> list:
    """One negative line's cells in LINE_HEADERS order (numbers stay numbers)."""
    return [line.line_no, line.name, line.spec or "", line.unit or "", line.quantity, line.unit_price, line.amount,
            line.rate or "", line.tax]


def draft_json(draft: Draft) -> dict:
    """The command's answer: the fields by label, the lines, amounts as two-decimal text."""
    def plain(value):
        """Decimals as their exact text (JSON has no decimal)."""
        if isinstance(value, Decimal):
            return f"{value:f}"
        return value

    return {
        "document": draft.document, "reason": draft.reason.value, "reason_label": draft.reason.label,
        "invoice": {k: plain(v) for k, v in draft.invoice.items()},
        "fields": {label: plain(value) for label, value, _kind in form_fields(draft)},
        "lines": [dict(zip(("line_no", "name", "spec", "unit", "quantity", "unit_price", "amount", "rate", "tax"),
                           map(plain, line_cells(line)), strict=True))
                  | {"tax_code": line.tax_code, "whole": line.whole, "discount_lines": list(line.discount_lines)}
                  for line in draft.lines],
        "amount": plain(draft.amount), "tax": plain(draft.tax), "total": plain(draft.total),
        "confirm": draft.confirm, "notes": list(draft.notes),
    }


def write_xlsx(draft: Draft, target) -> None:
    """The draft as a workbook to copy from (webapp.xlsx_stream: texts as text, figures as numbers)."""
    from webapp.xlsx_stream import Workbook

    with Workbook(target) as book:
        sheet = book.add_sheet(draft.document[:31], [22, 30, 14, 8, 14, 14, 14, 12, 14], freeze_header=False)
        for label, value, kind in form_fields(draft):
            sheet.append([label, value], "t" + kind)
        sheet.append([])
        sheet.append(list(LINE_HEADERS))
        for line in draft.lines:
            sheet.append(line_cells(line), "ctttnnmtm")
        sheet.append(["合计", None, None, None, None, None, draft.amount, None, draft.tax], "ttttttmtm")
        for note in draft.notes:
            sheet.append(["说明", note])


def audit_details(draft: Draft, form: str) -> dict:
    """What the audit log keeps of a draft: the company (so the row is linked to it), the reason code,
    the lines and totals, and which form it was made in (page, print, xlsx, command)."""
    return {"tax_id": draft.invoice["seller_tax_id"], "flush_reason": draft.reason.value, "draft_form": form,
            "draft_lines": [f"{line.line_no}:{line.amount:f}" for line in draft.lines],
            "draft_amount": f"{draft.amount:f}", "draft_tax": f"{draft.tax:f}"}
