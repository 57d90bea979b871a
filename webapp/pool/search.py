"""Searching the invoice pool: one filter, used by the list page, its export and scripts.

Built to stay fast at a million invoices: prefix searches are index range scans, the list
fetches one row more than a page instead of counting the table.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from sqlalchemy import Select, and_, func, not_, or_, select

from channels.records import canonical_tax_id
from webapp import params
from webapp.extensions import db
from webapp.models import Batch, Invoice
from webapp.money import as_cents, as_yuan, sum_exact
from webapp.pool.usage import entry_codes
from webapp.statuses import InvoiceStatus, Source

SORTS = {
    "issued_desc": (Invoice.issued_at.desc(), Invoice.id.desc()),
    "issued_asc": (Invoice.issued_at.asc(), Invoice.id.asc()),
    "amount_desc": (Invoice.amount.desc(), Invoice.id.desc()),
    "amount_asc": (Invoice.amount.asc(), Invoice.id.asc()),
}
INVOICE_STATUSES = tuple(InvoiceStatus)
USAGE_UNKNOWN = "none"  # 未获取: a blue invoice whose status could be fetched and has not been
USAGE_NOT_APPLICABLE = "na"  # 不适用: red invoices, and voided ones with no status (usage.usage_applies)


@dataclass
class PoolFilter:
    """What a user narrowed the pool to; every field optional, all as the query string carries them."""

    tax_id: str = ""
    q: str = ""  # invoice number: prefix of the key, 发票号码 or 数电发票号码
    buyer: str = ""  # buyer name (contains) or tax ID (prefix)
    date_from: str = ""
    date_to: str = ""
    type_code: str = ""
    status: str = ""
    color: str = ""  # blue | red
    vat_usage: str = ""  # a code, 'none' for never fetched, 'na' for 不适用
    entry_status: str = ""  # a label (未入账), 'channel:code' (leqi:02, rpa:06), 'none' never fetched, 'na' 不适用
    source: str = ""  # file | leqi | rpa
    batch_no: str = ""
    sort: str = "issued_desc"

    @classmethod
    def from_args(cls, args) -> PoolFilter:
        """The filter a query string asks for, its dates and choices parsed (webapp.params): a value
        outside them is refused with the reason, never an overflow or a silently wider search."""
        flt = cls(**{f.name: (args.get(f.name) or f.default).strip() for f in fields(cls)})
        params.tax_id(flt.tax_id), params.day(flt.date_from), params.day(flt.date_to)
        params.choice(flt.status, INVOICE_STATUSES, "发票状态")
        params.choice(flt.color, ("blue", "red"), "蓝/红")
        params.choice(flt.source, Source, "数据来源")
        params.choice(flt.sort, SORTS, "排序")
        return flt

    def __post_init__(self) -> None:
        """The company filter in the pool's canonical form, however the URL spells it."""
        self.tax_id = canonical_tax_id(self.tax_id)

    def as_args(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}


def _status_is(status: str):
    """发票状态 as the list shows it: the file's, or what the pool's red invoices make of a blue one
    whose file still says otherwise (webapp.pool.flushes): 已红冲-全额 finds 正常（已被红冲 100%）."""
    flushed, amount = Invoice.flushed_amount, func.abs(Invoice.amount)
    derived_full = and_(flushed.is_not(None), flushed >= amount, Invoice.amount != 0)
    derived_partial = and_(flushed > 0, flushed < amount)
    full, partial, voided = InvoiceStatus.FLUSHED_FULL, InvoiceStatus.FLUSHED_PARTIAL, InvoiceStatus.VOIDED
    plain = Invoice.status.not_in((full, partial, voided))
    if status == full:
        return or_(Invoice.status == full, and_(plain, derived_full))
    if status == partial:
        return or_(Invoice.status == partial, and_(plain, derived_partial))
    if status == voided:
        return Invoice.status == voided
    return and_(Invoice.status == status, or_(flushed.is_(None), flushed == 0))


def _usage_missing(column, which: str):
    """No status in `column`: 未获取 where one could be fetched, else 不适用 (usage.usage_applies)."""
    applies = and_(Invoice.is_red.is_(False),
                   or_(Invoice.status != InvoiceStatus.VOIDED, Invoice.vat_usage.is_not(None)))
    return and_(column.is_(None), applies if which == USAGE_UNKNOWN else not_(applies))


def _prefix(column, text: str):
    """column LIKE 'text%' written as a range, so both databases use the column's index."""
    return (column >= text) & (column < text + "\uffff")


def _day(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        return None


def _companies(flt: PoolFilter, tax_ids: list[str], indexed: bool = True):
    """Which companies' invoices: one chosen company by its index; several without it, so the
    database walks the index of the sort order and stops at the page instead of sorting them all.
    `indexed=False` keeps the company's index out of it altogether (see pool_totals)."""
    column = Invoice.tax_id if indexed else Invoice.tax_id + ""
    if flt.tax_id in tax_ids:
        return column == flt.tax_id
    if len(tax_ids) == 1:
        return column == tax_ids[0]
    return (Invoice.tax_id + "").in_(tax_ids)


def pool_query(flt: PoolFilter, tax_ids: list[str], company_index: bool = True) -> Select:
    """The user's permitted invoices narrowed by the filter, in the chosen order."""
    query = select(Invoice).where(_companies(flt, tax_ids, company_index))
    if flt.q:
        query = query.where(or_(_prefix(Invoice.key, flt.q), _prefix(Invoice.number, flt.q),
                                _prefix(Invoice.digital_number, flt.q)))
    if flt.buyer:
        query = query.where(or_(_prefix(Invoice.buyer_tax_id, canonical_tax_id(flt.buyer)),
                                Invoice.buyer_name.contains(flt.buyer)))
    if day := _day(flt.date_from):
        query = query.where(Invoice.issued_at >= day)
    if day := _day(flt.date_to):
        query = query.where(Invoice.issued_at < day + timedelta(days=1))
    if flt.type_code:
        query = query.where(Invoice.type_code == flt.type_code)
    if flt.status in INVOICE_STATUSES:
        query = query.where(_status_is(flt.status))
    if flt.color in ("blue", "red"):
        query = query.where(Invoice.is_red.is_(flt.color == "red"))
    if flt.vat_usage in (USAGE_UNKNOWN, USAGE_NOT_APPLICABLE):
        query = query.where(_usage_missing(Invoice.vat_usage, flt.vat_usage))
    elif flt.vat_usage:
        query = query.where(Invoice.vat_usage == flt.vat_usage)
    if flt.entry_status in (USAGE_UNKNOWN, USAGE_NOT_APPLICABLE):
        query = query.where(_usage_missing(Invoice.entry_status, flt.entry_status))
    elif ":" in flt.entry_status:  # the two channels' 入账 code sets differ: a code means nothing alone
        channel, code = flt.entry_status.split(":", 1)
        query = query.where(Invoice.usage_channel == channel, Invoice.entry_status == code)
    elif pairs := entry_codes(flt.entry_status):  # a label: every channel's code that reads so
        query = query.where(or_(*[(Invoice.usage_channel == c) & (Invoice.entry_status == code) for c, code in pairs]))
    if flt.source in Source:
        query = query.where(Invoice.source == flt.source)
    if flt.batch_no:
        query = query.where(Invoice.batch_id.in_(select(Batch.id).where(Batch.batch_no == flt.batch_no)))
    return query.order_by(*SORTS.get(flt.sort, SORTS["issued_desc"]))


def pool_totals(flt: PoolFilter, tax_ids: list[str]) -> dict:
    """How many invoices the filter matches and their 金额, 税额 and 价税合计 sums, in one aggregate.

    Asked apart from the page (the list shows at once, the sums follow), so the list stays as fast as
    fetching one page whatever the pool's size; 价税合计 falls back to 金额 + 税额 where a source left it out.
    """
    dialect = db.session.get_bind().dialect.name
    columns = (Invoice.amount, Invoice.tax, func.coalesce(Invoice.total, Invoice.amount + Invoice.tax))
    # Summing a whole company, SQLite reads its rows faster in table order than one by one through
    # the company's index (at 1M invoices, a fifth of them one company's: 0.6 s against 1.8 s on this
    # loaded 2-core machine); a date range or number still narrows by index.
    narrow = dialect != "sqlite" or bool(flt.date_from or flt.date_to or flt.q or flt.batch_no)
    query = pool_query(flt, tax_ids, company_index=narrow).order_by(None).with_only_columns(
        func.count(), *(sum_exact(dialect, column) for column in columns))
    count, *sums = db.session.execute(query).one()
    amount, tax, total = (as_yuan(as_cents(value)) for value in sums)
    return {"count": count or 0, "amount": amount, "tax": tax, "total": total}



