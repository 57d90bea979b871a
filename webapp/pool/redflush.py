"""红冲准备: whether and how a blue output invoice can be red-flushed under 金税四期 rules.

Pure logic, no database: the caller gathers `BlueFacts` from the pool (the blue invoice, the sum of
the red invoices linked to it, its usage status) and `assess` answers with a `Readiness` a finance
user can act on. Rules are from docs/codes.md: 红冲, 发票用途状态 (用途 / 入账 code sets) and 票种:

1. 红字发票本身不能红冲; 已作废 cannot be flushed; nothing is left once fully flushed.
2. 红字锁定 (乐企 hzsdbs = Y): a 确认单 is already in progress, so not now.
3. The answer depends on the buyer's usage / entry status, so a missing or stale status means
   "cannot tell yet": fetch the month's usage status first.
4. Buyer has not confirmed usage or entry → the seller flushes the full amount directly.
   Buyer has confirmed usage or entry → full or partial, the other party confirms within 72 hours.
   Used for export refund (fpyt 2, 3, 5) → the buyer rolls back first, then the seller issues.
5. 数电 invoices use the 红字发票信息确认单; legacy 税控 special invoices the 红字增值税专用发票信息表;
   legacy normal invoices are flushed by the seller directly, quoting the blue invoice.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from webapp.money import CENT
from webapp.pool.usage import ENTERED, ENTERED_ANY, EXPORT_REFUND_USAGE, NOT_ENTERED, NOT_ENTERED_ANY, VAT_USAGE
from webapp.statuses import InvoiceStatus

STALE_AFTER = timedelta(days=31)
ZERO = Decimal("0")

Mode = Literal["full_only", "partial_allowed"]
Confirmer = Literal["seller_direct", "other_party", "buyer_rollback_first"]
Document = Literal["红字发票信息确认单", "红字增值税专用发票信息表"]

CONFIRM_BILL: Document = "红字发票信息确认单"
INFO_TABLE: Document = "红字增值税专用发票信息表"

# 票种 (docs/codes.md, 票种; the red-flush forms: docs/codes.md, Which form)
DIGITAL_ELECTRONIC = frozenset({"59", "81", "82", "83", "84"})  # 数电票 (59: toll): issued once confirmed
DIGITAL_PAPER = frozenset({"85", "86", "87", "88"})  # 数电纸质发票: red invoice issued by hand
LEGACY_SPECIAL = frozenset({"01", "08"})  # 税控 增值税专用发票 / 电子专用发票
LEGACY_NORMAL = frozenset({"04", "10", "11", "14"})  # 税控 普通发票 (paper, electronic, roll, toll)
# 增值税用途 and 入账 code sets (docs/codes.md, 发票用途状态): webapp.pool.usage, the one home of the
# channels' codes

PARTIAL_REASON_CODES = "开票有误只能全额红冲，部分红冲须选择销货退回、服务中止或销售折让"

WHAT_APPLIES = ("获取后按用途判断：购方未用途确认或入账确认的，销方可直接全额红冲；"
                "已用途确认或入账确认的，可全额或部分红冲，须对方确认；"
                "已用于出口退税的，须购方先回退进货凭证，再由销方直接开具")
WHAT_APPLIES_LEGACY_NORMAL = ("获取后按用途判断：购方未用途确认或入账确认的，只能全额红冲；"
                              "已用途确认或入账确认的，可全额或部分红冲；"
                              "已用于出口退税的，须购方先回退进货凭证")



@dataclass(frozen=True)
class BlueFacts:
    """What the pool knows about one blue invoice.

    `flushed_amount` is the sum of the absolute amounts (金额, excluding tax) of the red invoices
    already linked to it in the pool. Usage codes are stored as the channel answered them
    (`usage_channel` 'leqi' or 'rpa'); `red_lock` None means the lock flag is not known.
    """

    type_code: str | None
    status: str | None
    is_red: bool
    amount: Decimal
    flushed_amount: Decimal
    vat_usage: str | None
    entry_status: str | None
    usage_channel: str | None
    usage_updated_at: datetime | None
    red_lock: bool | None = None


@dataclass(frozen=True)
class Readiness:
    """The answer: can_flush None means "cannot tell until the usage status is fetched"."""

    can_flush: bool | None
    mode: Mode | None
    confirmer: Confirmer | None
    document: Document | None
    remaining: Decimal
    needs_usage_refresh: bool
    reasons: tuple[str, ...]


# ---- small helpers -------------------------------------------------------------------------------

def _yuan(value: Decimal) -> str:
    return f"{Decimal(value).quantize(CENT, ROUND_HALF_UP)}"


def _status(facts: BlueFacts) -> str:
    """发票状态 with spaces removed and full-width hyphens read as ASCII ones."""
    return "".join((facts.status or "").split()).replace("－", "-").replace("—", "-")


def _vat_code(code: str | None) -> str | None:
    """fpyt as '0'…'11': '01' and '1' are the same code."""
    if code is None or not code.strip():
        return None
    code = code.strip()
    return str(int(code)) if code.isdigit() else code


def _entry_code(code: str | None) -> str | None:
    """入账状态 as two digits: '2' and '02' are the same code."""
    if code is None or not code.strip():
        return None
    code = code.strip()
    return code.zfill(2) if code.isdigit() else code


def remaining_amount(facts: BlueFacts) -> Decimal:
    """Amount still flushable: the blue 金额 less the red amounts already linked, never below zero.

    A blue invoice whose 发票状态 says 已红冲-全额 has nothing left, whatever the pool holds.
    """
    if facts.is_red or _status(facts) in (InvoiceStatus.FLUSHED_FULL, InvoiceStatus.VOIDED):
        return ZERO
    return max(Decimal(facts.amount) - abs(Decimal(facts.flushed_amount)), ZERO)


# ---- rules that stop a red flush -----------------------------------------------------------------

def red_invoice_rule(facts: BlueFacts) -> str | None:
    """Only a blue invoice is red-flushed; a red (negative) invoice is not applicable
    (docs/codes.md, What stops a red flush)."""
    return "红字发票本身不能再红冲" if facts.is_red else None


def voided_rule(facts: BlueFacts) -> str | None:
    """An invoice voided (已作废) no longer exists for tax purposes and cannot be red-flushed
    (docs/codes.md, What stops a red flush)."""
    return "已作废的发票不能红冲" if _status(facts) == InvoiceStatus.VOIDED else None


def fully_flushed_rule(facts: BlueFacts) -> str | None:
    """已红冲-全额, or red invoices in the pool that cover the whole amount: nothing is left
    (docs/codes.md, What stops a red flush)."""
    if _status(facts) == InvoiceStatus.FLUSHED_FULL:
        return "已全额红冲（发票状态：已红冲-全额）"
    if remaining_amount(facts) <= 0:
        if facts.flushed_amount:
            return f"已全额红冲：池中对应红字发票已冲 {_yuan(abs(facts.flushed_amount))} 元，无剩余可红冲金额"
        return "发票金额为零，无可红冲金额"
    return None


def red_lock_rule(facts: BlueFacts) -> str | None:
    """While a 确认单 is in progress the blue invoice is locked (hzsdbs = Y); wait for it
    (docs/codes.md, 发票状态 and 红字锁定)."""
    if facts.red_lock:
        return "红字锁定中：已有红字确认单在办理，待其确认、作废或开具红字发票后再判断"
    return None


# ---- what the red flush needs --------------------------------------------------------------------

def document_for(type_code: str | None) -> tuple[Document | None, tuple[str, ...]]:
    """数电 (59/81/82, 数电纸质 85/86) use the 红字发票信息确认单; legacy 税控 special invoices
    (01/08) the 红字增值税专用发票信息表 (docs/codes.md, Which form); legacy normal invoices (04/10/11/14) need neither
    form: the seller issues the red invoice directly, quoting the blue invoice's code and number."""
    code = (type_code or "").strip()
    if code in DIGITAL_ELECTRONIC:
        return CONFIRM_BILL, ()
    if code in DIGITAL_PAPER:
        return CONFIRM_BILL, ("数电纸质发票确认后需手工开具红字发票",)
    if code in LEGACY_SPECIAL:
        return INFO_TABLE, ("税控专用发票红冲须填开红字增值税专用发票信息表",)
    if code in LEGACY_NORMAL:
        return None, ("税控普通发票无需红字信息表，销方可直接开具红字发票，并注明对应蓝字发票代码和号码",)
    if not code:
        return None, ("票种未知，无法确定红冲所需单据",)
    return None, (f"票种代码 {code} 的红冲单据未知，请按税局要求办理",)


def usage_is_stale(facts: BlueFacts, now: datetime, stale_after: timedelta = STALE_AFTER) -> str | None:
    """The answer depends on the buyer's usage and entry status (docs/codes.md, What stops a red
    flush), so it must be fetched and recent; a status older than `stale_after` (exactly at the
    limit still counts as fresh) is stale."""
    if facts.usage_updated_at is None:
        return "用途状态未获取，请先获取该月用途状态"
    if now - facts.usage_updated_at > stale_after:
        return (f"用途状态已过期（上次更新 {facts.usage_updated_at:%Y-%m-%d %H:%M}，超过 {stale_after.days} 天），"
                "请先获取该月用途状态")
    return None


def entry_confirmed(entry_status: str | None, channel: str | None) -> bool | None:
    """已入账 in the answering channel's code set (docs/codes.md, 入账状态): 乐企 rzzt 02; RPA 02 or
    03. 入账撤销 (乐企 03, RPA 06) and 未入账 count as not entered. None when the code cannot be read."""
    code = _entry_code(entry_status)
    if code is None:
        return False
    entered = ENTERED.get(channel or "", ENTERED_ANY)
    not_entered = NOT_ENTERED.get(channel or "", NOT_ENTERED_ANY)
    if code in entered:
        return True
    if code in not_entered:
        return False
    return None


def usage_confirmed(vat_usage: str | None) -> bool:
    """The buyer confirmed a VAT usage when fpyt is anything but None or '0' (未使用)
    (docs/codes.md, 增值税用途)."""
    return _vat_code(vat_usage) not in (None, "0")


def export_refund_rule(vat_usage: str | None) -> bool:
    """A blue invoice used for export refund (fpyt 2 已申请退税, 3 已申请代办退税, 5 已申请代办退税（历史数据）)
    must first have the buyer's 进货凭证 rolled back; then the seller issues directly (docs/codes.md,
    Full or partial, and who acts)."""
    return _vat_code(vat_usage) in EXPORT_REFUND_USAGE


def _what_buyer_did(vat: str | None, entered: bool) -> str:
    parts = []
    if usage_confirmed(vat):
        parts.append(f"用途确认（{VAT_USAGE.get(vat, f'代码 {vat}')}）")
    if entered:
        parts.append("入账确认")
    return "、".join(parts)


def usage_decision(facts: BlueFacts, document: Document | None) -> tuple[Mode, Confirmer, tuple[str, ...]] | None:
    """docs/codes.md, Full or partial, and who acts:
    - buyer has not confirmed usage or entry: full only, the seller issues directly (确认即开票);
    - buyer confirmed usage or entry: full or partial, the other party confirms within 72 hours;
    - export-refund usage: the buyer rolls back first, then the seller issues directly.
    Legacy normal invoices need no form, so their seller always issues directly.
    None when the 入账 code cannot be read in its channel's code set.
    """
    vat = _vat_code(facts.vat_usage)
    entered = entry_confirmed(facts.entry_status, facts.usage_channel)
    if entered is None:
        return None
    legacy_normal = (facts.type_code or "").strip() in LEGACY_NORMAL
    if export_refund_rule(vat):
        return "partial_allowed", "buyer_rollback_first", (
            f"购方已将发票用于出口退税（{VAT_USAGE[vat]}）：须购方先回退进货凭证，之后销方可直接开具红字发票，"
            "无需购方确认",
            PARTIAL_REASON_CODES)
    if usage_confirmed(vat) or entered:
        did = _what_buyer_did(vat, entered)
        if legacy_normal:
            return "partial_allowed", "seller_direct", (f"购方已{did}：可全额或部分红冲", PARTIAL_REASON_CODES)
        if document == CONFIRM_BILL:
            how = "须对方在72小时内确认红字发票信息确认单，超时自动作废"
        elif document == INFO_TABLE:
            how = "须对方确认红字增值税专用发票信息表"
        else:
            how = "须对方确认后方可开具红字发票"
        reasons = [f"购方已{did}：可全额或部分红冲，{how}", PARTIAL_REASON_CODES]
        if (facts.type_code or "").strip() in DIGITAL_ELECTRONIC:
            reasons.append("对方确认后系统自动开具红字发票")
        return "partial_allowed", "other_party", tuple(reasons)
    suffix = "（确认即开票）" if document == CONFIRM_BILL else ""
    return "full_only", "seller_direct", (f"购方尚未用途确认或入账确认，销方可直接全额红冲，无需购方确认{suffix}",)


def partial_progress(facts: BlueFacts, remaining: Decimal) -> tuple[str, ...]:
    """A blue invoice already partly flushed (已红冲-部分, or linked red invoices below its amount) can
    only be flushed for what is left (docs/codes.md, What stops a red flush)."""
    status = _status(facts)
    flushed = abs(Decimal(facts.flushed_amount))
    if 0 < flushed < Decimal(facts.amount):
        return (f"已部分红冲：已冲 {_yuan(flushed)} 元，剩余可红冲 {_yuan(remaining)} 元",)
    if status == InvoiceStatus.FLUSHED_PARTIAL:
        return ("发票状态为已红冲-部分，但池中未找到对应红字发票，剩余可红冲金额以税局为准",)
    if status.startswith("已红冲"):
        return (f"发票状态为{status}，池中未找到对应红字发票，剩余可红冲金额以税局为准",)
    return ()


# ---- the assessment ------------------------------------------------------------------------------

STOP_RULES = (red_invoice_rule, voided_rule, fully_flushed_rule, red_lock_rule)


def assess(facts: BlueFacts, now: datetime, stale_after: timedelta = STALE_AFTER) -> Readiness:
    """Whether and how this blue invoice can be red-flushed now, with the reasons in Chinese."""
    remaining = remaining_amount(facts)
    for rule in STOP_RULES:
        reason = rule(facts)
        if reason:
            document = None if facts.is_red or remaining <= 0 else document_for(facts.type_code)[0]
            return Readiness(can_flush=False, mode=None, confirmer=None, document=document, remaining=remaining,
                             needs_usage_refresh=False, reasons=(reason,))

    document, document_reasons = document_for(facts.type_code)
    progress = partial_progress(facts, remaining)
    stale = usage_is_stale(facts, now, stale_after)
    decision = None if stale else usage_decision(facts, document)
    if decision is None:
        if not stale:
            stale = (f"入账状态代码 {facts.entry_status} 无法按通道 {facts.usage_channel or '未知'} 识别，"
                     "请重新获取该月用途状态")
        applies = WHAT_APPLIES_LEGACY_NORMAL if (facts.type_code or "").strip() in LEGACY_NORMAL else WHAT_APPLIES
        return Readiness(can_flush=None, mode=None, confirmer=None, document=document, remaining=remaining,
                         needs_usage_refresh=True, reasons=(stale, applies, *progress, *document_reasons))

    mode, confirmer, usage_reasons = decision
    return Readiness(can_flush=True, mode=mode, confirmer=confirmer, document=document, remaining=remaining,
                     needs_usage_refresh=False, reasons=(*usage_reasons, *progress, *document_reasons))


def to_json(readiness: Readiness) -> dict:
    """The CLI's view: remaining as a 2-decimal string, reasons as a list."""
    return {
        "can_flush": readiness.can_flush,
        "mode": readiness.mode,
        "confirmer": readiness.confirmer,
        "document": readiness.document,
        "remaining": _yuan(readiness.remaining),
        "needs_usage_refresh": readiness.needs_usage_refresh,
        "reasons": list(readiness.reasons),
    }
