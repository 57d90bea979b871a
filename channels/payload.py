"""The wire payloads of PROTOCOL.md (invoice and usage), turned into pool rows and records.

Both 乐企 and RPA send the same invoice payload, so one converter serves both clients. Value
normalisation (money, decimals, rates, dates, free text, the red link in 备注) is the export's
cell readers' (channels.etax.cells): one spelling of each rule in the product, so a file import
and a download of the same invoice give the same record.

An invoice becomes the pool's staged rows directly (channels.records.InvoiceRow), with no
record or Decimal made on the way: a company-year is some 36,000 invoices and 85,000 lines, and
per-value objects were most of a download's time (docs/performance.md). Text the bureau already
sends in the canonical form (an amount in whole cents, a plain decimal) is kept as sent, which is
exactly what the export's rule would print; anything else goes through that rule.
"""
from __future__ import annotations

import re
from datetime import date

from channels import reasons
from channels.etax.cells import (  # the export's cell rules, shared on purpose: see the module docstring
    MAX_NUMBER_TEXT,
    NULLS,
    BadCell,
    as_decimal,
    as_issued_at,
    as_money,
    as_money_or_none,
    as_rate,
    as_text,
    blue_key_from_remark,
)
from channels.invoice_types import TYPE_NAMES, canonical_type_name
from channels.records import (
    TIMESTAMP,
    LineRow,
    SourceRejected,
    StagedInvoice,
    UsageQuery,
    UsageStatus,
    canonical_tax_id,
    invoice_key,
    new_invoice_row,
    new_line_row,
    new_staged,
)

_SHOWN_CHARS = 40
_MONEY_TEXT = re.compile(r"-?(?:0|[1-9][0-9]{0,14})\.[0-9]{2}")  # already whole cents within MONEY_LIMIT
_NUMBER_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")  # a Decimal prints these back unchanged…
_TINY = ("0.000000", "-0.000000")  # …except below 1e-6, which it prints as 1E-7
_CACHE_LIMIT = 1000  # distinct 税率 and 发票票种 spellings remembered (a handful in practice)
_rates: dict[str, str | None] = {}
_kinds: dict[tuple, tuple[str, str | None]] = {}



def staged_invoice(payload: dict) -> StagedInvoice:
    """One PROTOCOL.md invoice payload as the pool's rows (channels.records.InvoiceRow and
    LineRow): the values tests/records_support.py's stage makes of its record, with no record made.

    A payload that breaks the contract fails the download loudly rather than writing a half
    record into the pool.
    """
    if not isinstance(payload, dict):
        raise SourceRejected(f"税局返回的发票数据格式错误：应为对象，实际为 {_shown(payload)}")
    try:
        return _invoice(payload)
    except BadCell as bad:
        raise SourceRejected(
            f"税局返回的发票 {_invoice_name(payload)} 数据有误：“{bad.column}”{bad.why}：{_shown(bad.value)}"
        ) from None


def _invoice(p: dict) -> StagedInvoice:
    """Build the rows field by field (in the order the fields were always checked, so the first
    bad one is the one named); any bad field raises BadCell with its Chinese name."""
    code, number = _ident(p, "fpdm", "发票代码"), _ident(p, "fphm", "发票号码")
    digital = _ident(p, "sdfphm", "数电发票号码")
    key = _key(p, code, number, digital)
    is_red = _is_red(p)
    remark = _opt(p, "bz", "备注")
    type_name, type_code = _kind(p)
    seller, seller_name = canonical_tax_id(_required(p, "xfsh", "销方识别号")), _opt(p, "xfmc", "销方名称")
    issued_at, month = _timestamp(_required(p, "kprq", "开票日期"))
    header = new_invoice_row((
        key, seller, seller_name, code, number, digital, canonical_tax_id(_ident(p, "gfsh", "购方识别号")),
        _opt(p, "gfmc", "购买方名称"), issued_at, month, _amount(p, "je", "金额"), _amount(p, "se", "税额"),
        _optional_amount(p, "jshj", "价税合计"), _opt(p, "fply", "发票来源"), type_name, type_code,
        _opt(p, "fpzt", "发票状态") or "正常", is_red, _opt(p, "fxdj", "发票风险等级"), _opt(p, "kpr", "开票人"),
        remark, _red_of(p, remark) if is_red else None,
    ))
    return new_staged((header, _lines(p)))


def _timestamp(value: str) -> tuple[str, str]:
    """开票日期 as the pool's timestamp text (channels.records.TIMESTAMP) and its month 'YYYY-MM'."""
    issued_at = as_issued_at(value)
    if issued_at.year >= 1000:  # isoformat is strftime's TIMESTAMP there, several times faster
        text = issued_at.isoformat(" ", "microseconds")
        return text, text[:7]
    return issued_at.strftime(TIMESTAMP), issued_at.strftime("%Y-%m")


def _key(p: dict, code: str | None, number: str | None, digital: str | None) -> str:
    """The pool identity by the one rule in records.invoice_key, with the invoice named on failure."""
    try:
        return invoice_key(code, number, digital)
    except SourceRejected as exc:
        raise SourceRejected(f"税局返回的发票 {_invoice_name(p)} 数据有误：{exc}") from None


def _kind(p: dict) -> tuple[str, str | None]:
    """发票票种 in canonical spelling and the two-digit fplx; the name falls back to the code's.
    Remembered per (fppz, fplx) as sent: a download repeats a handful of spellings."""
    sent = (p.get("fppz"), p.get("fplx"))
    known = _kinds.get(sent) if sent[0].__class__ is str and sent[1].__class__ is str else None
    if known is None:
        known = _remember(_kinds, sent, _parse_kind(p))
    return known


def _parse_kind(p: dict) -> tuple[str, str | None]:
    """_kind's rule."""
    type_code = _ident(p, "fplx", "发票类型代码")
    name = canonical_type_name(_opt(p, "fppz", "发票票种") or "") or TYPE_NAMES.get(type_code or "", "")
    if not name:
        raise BadCell("发票票种", p.get("fppz"), "为空")
    return name, type_code


def _is_red(p: dict) -> bool:
    """sfzs (是否正数发票): N marks a red invoice; anything but Y/N breaks the contract."""
    value = p.get("sfzs")
    if value not in ("Y", "N"):
        raise BadCell("是否正数发票", value, "应为 Y 或 N")
    return value == "N"


def _red_of(p: dict, remark: str | None) -> str | None:
    """The flushed blue invoice: the channel's yfpkey when given, else the export's 备注 wording."""
    return _ident(p, "yfpkey", "原发票") or (blue_key_from_remark(remark) if remark else None)


def _remember(cache: dict, key, value):
    """Keep a parsed spelling for the next invoice (bounded: a hostile source cannot grow it)."""
    if len(cache) < _CACHE_LIMIT and key.__hash__ is not None:
        cache[key] = value
    return value


def _lines(p: dict) -> list[LineRow]:
    """The mx lines in order; 折扣行 are the ones the source marks hxz = 1."""
    lines = p.get("mx")
    if lines is None:
        return []
    if not isinstance(lines, list):
        raise BadCell("明细", lines, "应为列表")
    return [_line(line, position) for position, line in enumerate(lines, start=1)]


def _line(m: object, position: int) -> LineRow:
    """One mx entry as a line row (channels.records.LineRow); its column names are prefixed with the line number."""
    if not isinstance(m, dict):
        raise BadCell(f"第 {position} 行明细", m, "应为对象")
    try:
        return new_line_row((
            _line_no(m.get("xh"), position), _opt(m, "spmc", "货物或应税劳务名称") or "",
            _opt(m, "ssbm", "税收分类编码"), _opt(m, "tdyw", "特定业务类型"), _opt(m, "ggxh", "规格型号"),
            _opt(m, "dw", "单位"), _number(m, "sl", "数量"), _number(m, "dj", "单价"), _amount(m, "je", "金额"),
            _line_rate(m), _amount(m, "se", "税额"), _optional_amount(m, "jshj", "价税合计"),
            str(m.get("hxz", "")) == "1",
        ))
    except BadCell as bad:
        bad.column = f"第 {position} 行明细的{bad.column}"
        raise


def _line_no(value: object, position: int) -> int:
    """xh as an int; a missing xh falls back to the line's position in mx."""
    if value.__class__ is int:
        return value
    if value is None or value == "":
        return position
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise BadCell("序号", value, "不是整数")




def _line_rate(m: dict) -> str | None:
    """税率 as written ('13%', '免税'); as_rate also turns a bare 0.13 into '13%'."""
    value = m.get("slv")
    if value is None:
        return None
    if value.__class__ is not str:
        if not isinstance(value, str):
            raise BadCell("税率", value, "应为字符串")
        return as_rate(value)
    rate = _rates.get(value)
    return _remember(_rates, value, as_rate(value)) if rate is None else rate


def _amount(d: dict, wire: str, column: str) -> str:
    """A required amount: a decimal string (PROTOCOL.md forbids floats), to the cent, as text.
    Text already in whole cents is its own answer; anything else goes through the export's rule."""
    value = d.get(wire)
    if value.__class__ is str and _MONEY_TEXT.fullmatch(value):
        return value
    if not isinstance(value, str):
        raise BadCell(column, value, "缺失" if value is None else "应为金额字符串")
    return str(as_money(value, column))


def _optional_amount(d: dict, wire: str, column: str) -> str | None:
    """An optional amount (价税合计): absent or '' means unknown, not zero."""
    value = d.get(wire)
    if value.__class__ is str and _MONEY_TEXT.fullmatch(value):
        return value
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadCell(column, value, "应为金额字符串")
    money = as_money_or_none(value, column)
    return None if money is None else str(money)


def _number(d: dict, wire: str, column: str) -> str | None:
    """数量 / 单价 exactly as written (as a Decimal prints it); absent or '' means the line has none."""
    value = d.get(wire)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadCell(column, value, "应为数字字符串")
    if len(value) < MAX_NUMBER_TEXT and _NUMBER_TEXT.fullmatch(value) and not value.startswith(_TINY):
        return value
    return str(as_decimal(value, column))


def _opt(d: dict, wire: str, column: str) -> str | None:
    """Optional free text as written: '' (the protocol's 'nothing') and the export's '--' become None."""
    value = d.get(wire)
    if value.__class__ is str:
        return None if value in NULLS else value
    if value is None or isinstance(value, str):
        return as_text(value)
    raise BadCell(column, value, "应为字符串")


def _ident(d: dict, wire: str, column: str) -> str | None:
    """An optional identifier (number, tax ID, code): as _opt, without surrounding spaces."""
    value = d.get(wire)
    if value.__class__ is str:
        value = value.strip()
        return None if value in NULLS else value
    return _opt(d, wire, column) if not isinstance(value, str) else as_text(value.strip())


def _required(d: dict, wire: str, column: str) -> str:
    """A required identifier: missing or empty breaks the contract."""
    value = _ident(d, wire, column)
    if value is None:
        raise BadCell(column, d.get(wire), "缺失" if d.get(wire) is None else "为空")
    return value


def _invoice_name(p: dict) -> str:
    """How a message names an invoice even when its fields are broken."""
    digital, code, number = (str(p.get(k) or "").strip() for k in ("sdfphm", "fpdm", "fphm"))
    if digital:
        return digital
    if code and number:
        return f"{code}-{number}"
    return f"（无号码，开票日期 {p.get('kprq') or '未知'}）"


def _shown(value: object) -> str:
    """A value short enough for a message."""
    text = repr(value) if value is None or not isinstance(value, str) else value
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"


def _bad_answer(label: str) -> dict:
    """The reason of an answer outside the contract from the channel `label` (channels.records.Reasoned)."""
    return {"reason": reasons.CHANNEL_BAD_ANSWER, "channel": label}


def staged_from_payloads(payloads: object, seller_tax_id: str, label: str) -> list[StagedInvoice]:
    """A page or package of payloads as pool rows, refusing any that is not the company's own sale.

    Channels download 销项 invoices, so a foreign seller means the source answered for another
    company; writing it into this company's pool would be worse than failing.
    """
    if not isinstance(payloads, list):
        raise SourceRejected(f"{label}：返回的发票列表格式错误（fpxx 应为列表）", **_bad_answer(label))
    expected = canonical_tax_id(seller_tax_id)
    staged = []
    for payload in payloads:
        try:
            rows = staged_invoice(payload)
        except SourceRejected as exc:
            raise SourceRejected(f"{label}：{exc}", **_bad_answer(label)) from None
        key, seller = rows.header.key, rows.header.tax_id
        if seller != expected:  # both canonical (channels.records.canonical_tax_id)
            raise SourceRejected(f"{label}：返回的发票 {key} 销方税号 {seller} 与所查询企业 {seller_tax_id} 不一致")
        staged.append(rows)
    return staged


# ---------------------------------------------------------------------------------------------
# Usage status (FPZTXXCX and the RPA usage call)
# ---------------------------------------------------------------------------------------------


def usage_from_payload(payload: dict, key: str) -> UsageStatus:
    """One usage answer; an invoice the bureau does not know comes back with every field None."""
    if not isinstance(payload, dict):
        raise SourceRejected(f"税局返回的发票 {key} 用途状态格式错误：{_shown(payload)}")
    hzsdbs = payload.get("hzsdbs")
    return UsageStatus(
        key=key, vat_usage=_code(payload.get("fpyt")), excise_usage=_code(payload.get("xfsyt")),
        entry_status=_code(payload.get("rzzt")), invoice_status=_code(payload.get("fpzt")),
        red_lock=None if hzsdbs not in ("Y", "N") else hzsdbs == "Y",
    )


def _code(value: object) -> str | None:
    """A status code as text; null and '' mean unknown."""
    if value is None or value == "":
        return None
    return str(value)


def usage_request_item(query: UsageQuery) -> dict:
    """One fpxx entry of a usage request (both channels use the same shape)."""
    return {"fplx": query.type_code, "fpdm": query.code or "", "fphm": query.number or "",
            "kprq": query.issued_on}


def usage_from_answers(answers: object, queries: list[UsageQuery], label: str) -> list[UsageStatus]:
    """Pair answers with queries by position (the protocol answers in request order).

    A count or number mismatch means the pairing would attach one invoice's status to another,
    so it is refused instead.
    """
    if not isinstance(answers, list) or len(answers) != len(queries):
        count = len(answers) if isinstance(answers, list) else "格式错误的"
        raise SourceRejected(f"{label}：查询 {len(queries)} 张发票的用途状态，返回了 {count} 条结果",
                             **_bad_answer(label))
    return [_paired(answer, query, label) for answer, query in zip(answers, queries, strict=False)]


def _paired(answer: object, query: UsageQuery, label: str) -> UsageStatus:
    """One answer for its query, checking that the answer's fphm is the number asked for."""
    number = answer.get("fphm") if isinstance(answer, dict) else None
    if number and query.number and str(number) != query.number:
        raise SourceRejected(f"{label}：用途状态结果顺序错乱（查询 {query.number}，返回 {number}）",
                             **_bad_answer(label))
    try:
        return usage_from_payload(answer, query.key)
    except SourceRejected as exc:
        raise SourceRejected(f"{label}：{exc}", **_bad_answer(label)) from None



def wire_date(day: date) -> str:
    """Dates in requests are YYYYMMDD (PROTOCOL.md)."""
    return day.strftime("%Y%m%d")
