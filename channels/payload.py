"""The wire payloads of PROTOCOL.md (invoice and usage), turned into records.

Both 乐企 and RPA send the same invoice payload, so one converter serves both clients. Value
normalisation (money, decimals, rates, dates, free text, the red link in 备注) is the export
parser's: one spelling of each rule in the product, so a file import and a download of the same
invoice give the same record.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal

from channels.etax_file import (  # private helpers reused on purpose, see the module docstring
    _BadCell,
    _decimal,
    _issued_at,
    _money,
    _money_or_none,
    _rate,
    _text,
    blue_key_from_remark,
)
from channels.invoice_types import TYPE_NAMES, canonical_type_name
from channels.records import (
    InvoiceRecord,
    LineRecord,
    SourceRejected,
    UsageQuery,
    UsageStatus,
    invoice_key,
)

_SHOWN_CHARS = 40


def invoice_from_payload(payload: dict) -> InvoiceRecord:
    """One PROTOCOL.md invoice payload as an InvoiceRecord; a bad payload names the invoice.

    A payload that breaks the contract fails the download loudly rather than writing a half
    record into the pool.
    """
    if not isinstance(payload, dict):
        raise SourceRejected(f"税局返回的发票数据格式错误：应为对象，实际为 {_shown(payload)}")
    try:
        return _invoice(payload)
    except _BadCell as bad:
        raise SourceRejected(
            f"税局返回的发票 {_invoice_name(payload)} 数据有误：“{bad.column}”{bad.why}：{_shown(bad.value)}"
        ) from None


def _invoice(p: dict) -> InvoiceRecord:
    """Build the record field by field; any bad field raises _BadCell with its Chinese name."""
    code, number = _ident(p, "fpdm", "发票代码"), _ident(p, "fphm", "发票号码")
    digital = _ident(p, "sdfphm", "数电发票号码")
    key = _key(p, code, number, digital)
    is_red = _is_red(p)
    remark = _opt(p, "bz", "备注")
    type_name, type_code = _kind(p)
    return InvoiceRecord(
        key=key, seller_tax_id=_required(p, "xfsh", "销方识别号"), seller_name=_opt(p, "xfmc", "销方名称"),
        issued_at=_issued_at(_required(p, "kprq", "开票日期")),
        code=code, number=number, digital_number=digital,
        buyer_tax_id=_ident(p, "gfsh", "购方识别号"), buyer_name=_opt(p, "gfmc", "购买方名称"),
        amount=_amount(p, "je", "金额"), tax=_amount(p, "se", "税额"), total=_optional_amount(p, "jshj", "价税合计"),
        origin=_opt(p, "fply", "发票来源"), type_name=type_name, type_code=type_code,
        status=_opt(p, "fpzt", "发票状态") or "正常", is_red=is_red,
        risk_level=_opt(p, "fxdj", "发票风险等级"), issuer=_opt(p, "kpr", "开票人"), remark=remark,
        red_of=_red_of(p, remark) if is_red else None,
        lines=_lines(p),
    )


def _key(p: dict, code: str | None, number: str | None, digital: str | None) -> str:
    """The pool identity by the one rule in records.invoice_key, with the invoice named on failure."""
    try:
        return invoice_key(code, number, digital)
    except SourceRejected as exc:
        raise SourceRejected(f"税局返回的发票 {_invoice_name(p)} 数据有误：{exc}") from None


def _kind(p: dict) -> tuple[str, str | None]:
    """发票票种 in canonical spelling and the two-digit fplx; the name falls back to the code's."""
    type_code = _ident(p, "fplx", "发票类型代码")
    name = canonical_type_name(_opt(p, "fppz", "发票票种") or "") or TYPE_NAMES.get(type_code or "", "")
    if not name:
        raise _BadCell("发票票种", p.get("fppz"), "为空")
    return name, type_code


def _is_red(p: dict) -> bool:
    """sfzs (是否正数发票): N marks a red invoice; anything but Y/N breaks the contract."""
    value = p.get("sfzs")
    if value not in ("Y", "N"):
        raise _BadCell("是否正数发票", value, "应为 Y 或 N")
    return value == "N"


def _red_of(p: dict, remark: str | None) -> str | None:
    """The flushed blue invoice: the channel's yfpkey when given, else the export's 备注 wording."""
    return _ident(p, "yfpkey", "原发票") or (blue_key_from_remark(remark) if remark else None)


def _lines(p: dict) -> list[LineRecord]:
    """The mx lines in order; 折扣行 are the ones the source marks hxz = 1."""
    lines = p.get("mx")
    if lines is None:
        return []
    if not isinstance(lines, list):
        raise _BadCell("明细", lines, "应为列表")
    return [_line(line, position) for position, line in enumerate(lines, start=1)]


def _line(m: object, position: int) -> LineRecord:
    """One mx entry as a LineRecord; its column names are prefixed with the line number."""
    if not isinstance(m, dict):
        raise _BadCell(f"第 {position} 行明细", m, "应为对象")
    try:
        return LineRecord(
            line_no=_line_no(m.get("xh"), position), name=_opt(m, "spmc", "货物或应税劳务名称") or "",
            tax_code=_opt(m, "ssbm", "税收分类编码"), special_type=_opt(m, "tdyw", "特定业务类型"),
            spec=_opt(m, "ggxh", "规格型号"), unit=_opt(m, "dw", "单位"),
            quantity=_number(m, "sl", "数量"), unit_price=_number(m, "dj", "单价"),
            amount=_amount(m, "je", "金额"), tax_rate=_line_rate(m), tax=_amount(m, "se", "税额"),
            total=_optional_amount(m, "jshj", "价税合计"), is_discount=str(m.get("hxz", "")) == "1",
        )
    except _BadCell as bad:
        bad.column = f"第 {position} 行明细的{bad.column}"
        raise


def _line_no(value: object, position: int) -> int:
    """xh as an int; a missing xh falls back to the line's position in mx."""
    if value is None or value == "":
        return position
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise _BadCell("序号", value, "不是整数")


def _string(d: dict, wire: str, column: str, expected: str) -> str | None:
    """A wire field that PROTOCOL.md sends as a string (amounts and numbers too: never floats), or
    None when absent; any other type breaks the contract, said as `expected`."""
    value = d.get(wire)
    if value is None or isinstance(value, str):
        return value
    raise _BadCell(column, value, expected)


def _line_rate(m: dict) -> str | None:
    """税率 as written ('13%', '免税'); _rate also turns a bare 0.13 into '13%'."""
    value = _string(m, "slv", "税率", "应为字符串")
    return None if value is None else _rate(value)


def _amount(d: dict, wire: str, column: str) -> Decimal:
    """A required amount: a decimal string (PROTOCOL.md forbids floats), to the cent."""
    value = _string(d, wire, column, "应为金额字符串")
    if value is None:
        raise _BadCell(column, None, "缺失")
    return _money(value, column)


def _optional_amount(d: dict, wire: str, column: str) -> Decimal | None:
    """An optional amount (价税合计): absent or '' means unknown, not zero."""
    value = _string(d, wire, column, "应为金额字符串")
    return None if value is None else _money_or_none(value, column)


def _number(d: dict, wire: str, column: str) -> Decimal | None:
    """数量 / 单价 exactly as written; absent or '' means the line has none."""
    value = _string(d, wire, column, "应为数字字符串")
    return _decimal(value, column) if value else None


def _opt(d: dict, wire: str, column: str) -> str | None:
    """Optional free text as written: '' (the protocol's 'nothing') and the export's '--' become None."""
    return _text(_string(d, wire, column, "应为字符串"))


def _ident(d: dict, wire: str, column: str) -> str | None:
    """An optional identifier (number, tax ID, code): as _opt, without surrounding spaces."""
    value = d.get(wire)
    return _opt(d, wire, column) if not isinstance(value, str) else _text(value.strip())


def _required(d: dict, wire: str, column: str) -> str:
    """A required identifier: missing or empty breaks the contract."""
    value = _ident(d, wire, column)
    if value is None:
        raise _BadCell(column, d.get(wire), "缺失" if d.get(wire) is None else "为空")
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


def records_from_payloads(payloads: object, seller_tax_id: str, label: str) -> Iterator[InvoiceRecord]:
    """A page or package of payloads as records, refusing any that is not the company's own sale.

    Channels download 销项 invoices, so a foreign seller means the source answered for another
    company; writing it into this company's pool would be worse than failing.
    """
    if not isinstance(payloads, list):
        raise SourceRejected(f"{label}：返回的发票列表格式错误（fpxx 应为列表）")
    for payload in payloads:
        try:
            record = invoice_from_payload(payload)
        except SourceRejected as exc:
            raise SourceRejected(f"{label}：{exc}") from None
        if record.seller_tax_id.upper() != seller_tax_id.upper():
            raise SourceRejected(
                f"{label}：返回的发票 {record.key} 销方税号 {record.seller_tax_id} 与所查询企业 {seller_tax_id} 不一致"
            )
        yield record


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
        raise SourceRejected(f"{label}：查询 {len(queries)} 张发票的用途状态，返回了 {count} 条结果")
    return [_paired(answer, query, label) for answer, query in zip(answers, queries, strict=False)]


def _paired(answer: object, query: UsageQuery, label: str) -> UsageStatus:
    """One answer for its query, checking that the answer's fphm is the number asked for."""
    number = answer.get("fphm") if isinstance(answer, dict) else None
    if number and query.number and str(number) != query.number:
        raise SourceRejected(f"{label}：用途状态结果顺序错乱（查询 {query.number}，返回 {number}）")
    return usage_from_payload(answer, query.key)



def wire_date(day: date) -> str:
    """Dates in requests are YYYYMMDD (PROTOCOL.md)."""
    return day.strftime("%Y%m%d")
