"""Invoices as records, for tests: what the channels stage, read back by field name.

The product stages rows of plain values (channels/records.py HEADER_COLUMNS, LINE_COLUMNS) straight
from cells and payloads and never builds a record. Tests want to read an invoice by field name and
to build one by hand: `record_from_staged` turns a staged row into an InvoiceRecord and `stage`
turns records back, field by field, the long way the direct paths are checked against. The helpers
below read a channel or a parsed workbook through them.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from channels.etax.parser import ParsedWorkbook
from channels.leqi import LeqiClient
from channels.months import month_of
from channels.payload import staged_from_payloads, staged_invoice
from channels.records import TIMESTAMP, InvoiceRow, LineRow, StagedInvoice
from channels.rpa import RpaClient
from webapp.pool import latest_copies


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
    """The InvoiceRecord of one staged invoice (its values back as Decimals and a datetime), so a
    test can read a channel's output by field name; the exact inverse of `stage`."""
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


def _text(value) -> str | None:
    return None if value is None else str(value)


def stage(records: Iterable[InvoiceRecord]) -> list[StagedInvoice]:
    """Records as the pool's named rows of plain values (text, numbers, None: channels.records.InvoiceRow
    and LineRow); an invoice given twice is kept once, its last copy, as the pool keeps it."""
    return latest_copies(StagedInvoice(
        InvoiceRow(r.key, r.seller_tax_id, r.seller_name, r.code, r.number, r.digital_number, r.buyer_tax_id,
                   r.buyer_name, r.issued_at.strftime(TIMESTAMP), r.month, str(r.amount), str(r.tax), _text(r.total),
                   r.origin, r.type_name, r.type_code, r.status, r.is_red, r.risk_level, r.issuer, r.remark, r.red_of),
        [LineRow(ln.line_no, ln.name, ln.tax_code, ln.special_type, ln.spec, ln.unit, _text(ln.quantity),
                 _text(ln.unit_price), str(ln.amount), ln.tax_rate, str(ln.tax), _text(ln.total), ln.is_discount)
         for ln in r.lines],
    ) for r in records)


def invoice_from_payload(payload: dict) -> InvoiceRecord:
    """One PROTOCOL.md invoice payload as a record; a bad payload names the invoice."""
    return record_from_staged(staged_invoice(payload))


def records_from_payloads(payloads: object, seller_tax_id: str, label: str) -> Iterator[InvoiceRecord]:
    """A page of payloads as records, checked as a download checks them (every one the seller's)."""
    return map(record_from_staged, staged_from_payloads(payloads, seller_tax_id, label))


def leqi_fetch(client: LeqiClient, lsh: str, tax_id: str | None = None) -> Iterator[InvoiceRecord]:
    """An accepted 乐企 application's invoices as records, lazily, package by package."""
    return map(record_from_staged, client.fetch_rows(lsh, tax_id))


def leqi_download(client: LeqiClient, tax_id: str, start: date, end: date, type_code: str) -> Iterator[InvoiceRecord]:
    """Apply now (a quota refusal raises at the call, as in a job), then fetch the records lazily."""
    return leqi_fetch(client, client.apply(tax_id, start, end, type_code), tax_id)


def rpa_download(client: RpaClient, tax_id: str, account: str | None, start: date, end: date,
                 type_codes: list[str]) -> Iterator[InvoiceRecord]:
    """Submit the RPA task now, then wait for it and read its pages as records lazily."""
    return map(record_from_staged, client.fetch_rows(client.submit(tax_id, account, start, end, type_codes), tax_id))


def parsed_invoices(parsed: ParsedWorkbook) -> Iterator[InvoiceRecord]:
    """Every invoice of a parsed workbook as a record, month by month."""
    for month_invoices in parsed.staged_by_month.values():
        yield from map(record_from_staged, month_invoices)
