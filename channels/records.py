"""Normalised invoice records: the one shape every source (e-tax file, 乐企, RPA) yields.

The job layer writes these to the invoice pool without knowing where they came from, so a
channel's only duty is to produce them faithfully.
"""
from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from channels.months import month_of

# The pool's rows as plain values (text, numbers, None) in the tables' column order: what a
# source's invoices are staged as between the parse and the write (webapp.pool), and what the
# channels build straight from the wire so a download makes no per-row objects (channels.payload).
HEADER_COLUMNS = ("key", "tax_id", "seller_name", "code", "number", "digital_number", "buyer_tax_id", "buyer_name",
                  "issued_at", "month", "amount", "tax", "total", "origin", "type_name", "type_code", "status",
                  "is_red", "risk_level", "issuer", "remark", "red_of")
LINE_COLUMNS = ("line_no", "name", "tax_code", "special_type", "spec", "unit", "quantity", "unit_price", "amount",
                "tax_rate", "tax", "total", "is_discount")
TIMESTAMP = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's own SQLite format; PostgreSQL casts it too
StagedInvoice = tuple[tuple, list[tuple]]


class SourceRejected(Exception):
    """A source's input cannot be used; the message is shown to the user, in Chinese."""


class TransientError(Exception):
    """A source failed in a way worth retrying (timeout, 5xx, 处理中, 系统繁忙); message in Chinese."""


class Pending(TransientError):
    """The source accepted the request but the result is not ready (code 01, RPA 'running').

    A subclass, so that after the last poll the caller can tell "still being prepared, ask
    again later" from "the service is down".
    """


class ChannelRejected(SourceRejected):
    """A permanent refusal with the protocol's code (e.g. '13' quota), for callers that branch on it.

    Kept here with the other source errors rather than beside the HTTP client that raises it, so
    the job layer can catch it without importing httpx (a file import never speaks HTTP)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class UsageQuery:
    """One positive invoice whose usage status is asked for."""

    key: str
    type_code: str
    code: str | None
    number: str | None  # 发票号码, or the 20-digit 数电 number
    issued_on: str  # YYYYMMDD


@dataclass(slots=True)
class UsageStatus:
    """The answer for one invoice, in the answering channel's own code set (PROTOCOL.md)."""

    key: str
    vat_usage: str | None  # fpyt
    excise_usage: str | None  # xfsyt
    entry_status: str | None  # rzzt
    invoice_status: str | None = None  # fpzt
    red_lock: bool | None = None  # hzsdbs == 'Y'


@dataclass(slots=True)
class LineRecord:
    """One invoice line (货物或应税劳务) as the source wrote it; amounts are signed Decimals."""

    line_no: int
    name: str
    tax_code: str | None = None
    special_type: str | None = None
    spec: str | None = None
    unit: str | None = None
    quantity: Decimal | None = None
    unit_price: Decimal | None = None
    amount: Decimal = Decimal("0")
    tax_rate: str | None = None  # as written: '13%', '免税', '不征税'
    tax: Decimal = Decimal("0")
    total: Decimal | None = None
    is_discount: bool = False  # 折扣行: a negative line directly after the line it discounts


@dataclass(slots=True)
class InvoiceRecord:
    """One invoice header with its lines; `key` is its identity in the pool."""

    key: str  # the 20-digit 数电 number, else '发票代码-发票号码'
    seller_tax_id: str
    seller_name: str | None
    issued_at: datetime
    code: str | None = None  # 发票代码 (legacy and 数电纸质)
    number: str | None = None  # 发票号码 (legacy and 数电纸质)
    digital_number: str | None = None  # 数电发票号码
    buyer_tax_id: str | None = None
    buyer_name: str | None = None
    amount: Decimal = Decimal("0")
    tax: Decimal = Decimal("0")
    total: Decimal | None = None
    origin: str | None = None  # 发票来源: 增值税发票管理系统 / 电子发票服务平台
    type_name: str = ""  # 发票票种, canonical spelling (see channels.invoice_types)
    type_code: str | None = None  # the tax bureau's two-digit fplxDm
    status: str = "正常"  # 发票状态: 正常 / 已作废 / 已红冲-全额 / 已红冲-部分 ...
    is_red: bool = False  # 是否正数发票 == 否
    risk_level: str | None = None
    issuer: str | None = None
    remark: str | None = None
    red_of: str | None = None  # key of the blue invoice a red invoice flushes
    lines: list[LineRecord] = field(default_factory=list)

    @property
    def month(self) -> str:
        """The invoicing month 'YYYY-MM' that places the invoice in a subtask."""
        return month_of(self.issued_at)


def _decimal(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _timestamp(text: str) -> datetime:
    """TIMESTAMP text back as a datetime (strftime writes a year before 1000 without its zeros)."""
    return datetime.fromisoformat(text.rjust(26, "0"))


def record_from_staged(staged: StagedInvoice) -> InvoiceRecord:
    """The InvoiceRecord of one staged invoice (its values back as Decimals and a datetime), for
    callers that want records from a channel; the exact inverse of tests/records_support.py's stage."""
    (key, tax_id, seller_name, code, number, digital, buyer_tax_id, buyer_name, issued_at, _month, amount, tax,
     total, origin, type_name, type_code, status, is_red, risk_level, issuer, remark, red_of), lines = staged
    return InvoiceRecord(
        key=key, seller_tax_id=tax_id, seller_name=seller_name, issued_at=_timestamp(issued_at),
        code=code, number=number, digital_number=digital, buyer_tax_id=buyer_tax_id, buyer_name=buyer_name,
        amount=Decimal(amount), tax=Decimal(tax), total=_decimal(total), origin=origin, type_name=type_name,
        type_code=type_code, status=status, is_red=is_red, risk_level=risk_level, issuer=issuer, remark=remark,
        red_of=red_of,
        lines=[LineRecord(line_no=n, name=name, tax_code=tax_code, special_type=special, spec=spec, unit=unit,
                          quantity=_decimal(quantity), unit_price=_decimal(price), amount=Decimal(line_amount),
                          tax_rate=rate, tax=Decimal(line_tax), total=_decimal(line_total), is_discount=discount)
               for (n, name, tax_code, special, spec, unit, quantity, price, line_amount, rate, line_tax, line_total,
                    discount) in lines])


def canonical_tax_id(value: str | None) -> str | None:
    """A 纳税人识别号 in the one form the pool, the companies and every look-up compare: upper case, no
    spaces anywhere. An export or a bureau may write `91330100ma2h4k7q1x`; stored as written, that
    invoice matched no company page, search or figure (issue 17, defect 3). Every way in (files,
    channels, forms, the CLI) passes tax IDs through here; None (no buyer tax ID) stays None."""
    if value is None:
        return None
    return "".join(value.split()).upper()


def invoice_key(code: str | None, number: str | None, digital_number: str | None) -> str:
    """The pool identity: the 数电 number where there is one, else code-number."""
    if digital_number:
        return digital_number
    if code and number:
        return f"{code}-{number}"
    raise SourceRejected("发票缺少号码：既无数电发票号码，也无发票代码和发票号码")


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while many invoices are built, staged or written.

    A download page of 500 invoices is some 20,000 dicts and lists, a file some hundreds of
    thousands of tuples, records and strings, none of them in a reference cycle (reference counting
    frees them), yet allocating them set off collections that walked the whole heap again and again:
    a third of a download's decoding, a tenth of a file's parse (docs/performance.md). The collector
    runs again afterwards.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
