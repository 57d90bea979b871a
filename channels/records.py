"""What every source (e-tax file, 乐企, RPA) yields: invoices as staged rows, and its errors.

The job layer writes the rows to the invoice pool without knowing where they came from, so a
channel's only duty is to produce them faithfully.
"""
from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

from channels import reasons

TIMESTAMP = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's own SQLite format; PostgreSQL casts it too


class InvoiceRow(NamedTuple):
    """One invoice as the pool keeps it, in the invoice table's column order, as plain values (amounts
    as text to the cent, issued_at as TIMESTAMP text): what a source's invoices are staged as between
    the parse and the write (webapp.pool), built straight from the wire so a download makes no
    per-value objects (channels.payload). Named, so code says `header.is_red`, not an index."""

    key: str
    tax_id: str
    seller_name: str | None
    code: str | None
    number: str | None
    digital_number: str | None
    buyer_tax_id: str | None
    buyer_name: str | None
    issued_at: str
    month: str
    amount: str
    tax: str
    total: str | None
    origin: str | None
    type_name: str
    type_code: str | None
    status: str
    is_red: bool
    risk_level: str | None
    issuer: str | None
    remark: str | None
    red_of: str | None


class LineRow(NamedTuple):
    """One invoice line as the pool keeps it (the invoice_line table's columns after invoice_key)."""

    line_no: int
    name: str
    tax_code: str | None
    special_type: str | None
    spec: str | None
    unit: str | None
    quantity: str | None
    unit_price: str | None
    amount: str
    tax_rate: str | None
    tax: str
    total: str | None
    is_discount: bool


class StagedInvoice(NamedTuple):
    """An invoice with its lines, as staged between a source and the pool."""

    header: InvoiceRow
    lines: list[LineRow]


HEADER_COLUMNS = InvoiceRow._fields
LINE_COLUMNS = LineRow._fields
# Builders for the hot loops (a file's or a download's every row): tuple.__new__ called from C makes
# the same named row without the Python-level __new__ a NamedTuple call runs (docs/performance.md, Rows with names).
new_invoice_row = partial(tuple.__new__, InvoiceRow)
new_line_row = partial(tuple.__new__, LineRow)
new_staged = partial(tuple.__new__, StagedInvoice)


class Reasoned(Exception):
    """An error that says why as data: `reason`, a code of channels.reasons (webapp.statuses.Reason
    gives its sentence), and `params`, its values by name; the message stays the technical text.

    Why: the job stores code and parameters beside the message, so no screen reads the words back
    (docs/rules.md, 失败与等待原因). Without a reason of its own an error is `rejected` and its
    message is the sentence shown."""

    reason = reasons.REJECTED

    def __init__(self, text: str, /, *, reason: str | None = None, **params) -> None:
        super().__init__(text)
        if reason is not None:
            self.reason = reason
        self.params = params or {"message": text}


class SourceRejected(Reasoned):
    """A source's input cannot be used; the message is shown to the user, in Chinese."""


class FileRefused(SourceRejected):
    """An uploaded file that is not a usable export (docs/etax-export.md, What refuses a file); the
    message says why, in the user's terms."""

    reason = reasons.FILE_REFUSED


class TransientError(Reasoned):
    """A source failed in a way worth retrying (timeout, 5xx, 处理中, 系统繁忙); message in Chinese."""


class Pending(TransientError):
    """The source accepted the request but the result is not ready (code 01, RPA 'running').

    A subclass, so that after the last poll the caller can tell "still being prepared, ask
    again later" from "the service is down".
    """

    reason = reasons.CHANNEL_PENDING


class ChannelRejected(SourceRejected):
    """A permanent refusal with the protocol's code (e.g. '13' quota), for callers that branch on it.

    Kept here with the other source errors rather than beside the HTTP client that raises it, so
    the job layer can catch it without importing httpx (a file import never speaks HTTP)."""

    def __init__(self, text: str, /, code: str | None = None, **why) -> None:
        super().__init__(text, **why)
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


def canonical_tax_id(value: str | None) -> str | None:
    """A 纳税人识别号 in the one form the pool, the companies and every look-up compare: upper case, no
    spaces anywhere. An export or a bureau may write `91330100ma2h4k7q1x`; stored as written, that
    invoice matched no company page, search or figure (README, Access). Every way in (files,
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
