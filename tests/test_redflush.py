"""红冲准备 (webapp.pool.redflush): one test or more per rule, per 入账 code set, and at the boundaries."""
from __future__ import annotations

import json
import re
from dataclasses import FrozenInstanceError, replace
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from webapp.pool.redflush import (
    CONFIRM_BILL,
    INFO_TABLE,
    STALE_AFTER,
    BlueFacts,
    Readiness,
    assess,
    entry_confirmed,
    remaining_amount,
    to_json,
)

NOW = datetime(2025, 6, 15, 10, 0, 0)
FRESH = NOW - timedelta(days=1)
HAN = re.compile(r"[\u4e00-\u9fff]")


def blue(**changes) -> BlueFacts:
    """A normal 数电 special invoice of 1000.00, usage fetched yesterday through 乐企, nothing used."""
    facts = BlueFacts(type_code="81", status="正常", is_red=False, amount=Decimal("1000.00"),
                      flushed_amount=Decimal("0"), vat_usage="0", entry_status="01", usage_channel="leqi",
                      usage_updated_at=FRESH, red_lock=False)
    return replace(facts, **changes)


def joined(readiness: Readiness) -> str:
    return "\n".join(readiness.reasons)


def assert_readable(readiness: Readiness) -> None:
    assert readiness.reasons, "a finance user always gets a reason"
    for reason in readiness.reasons:
        assert isinstance(reason, str) and reason.strip()
        assert HAN.search(reason), reason


# ---- rules that stop a red flush -------------------------------------------------------------------

def test_red_invoice_is_not_applicable():
    r = assess(blue(is_red=True, amount=Decimal("-1000.00")), NOW)
    assert r.can_flush is False and r.mode is None and r.confirmer is None and r.document is None
    assert r.remaining == 0 and r.needs_usage_refresh is False
    assert r.reasons == ("红字发票本身不能再红冲",)


def test_red_invoice_wins_even_without_usage():
    r = assess(blue(is_red=True, usage_updated_at=None), NOW)
    assert r.can_flush is False and r.needs_usage_refresh is False


@pytest.mark.parametrize("type_code", ["04", "01"])
def test_voided_cannot_be_flushed(type_code):
    r = assess(blue(type_code=type_code, status="已作废"), NOW)
    assert r.can_flush is False and r.remaining == 0 and r.document is None
    assert r.reasons == ("已作废的发票不能红冲",)


def test_voided_wins_over_stale_usage():
    r = assess(blue(status="已作废", usage_updated_at=None), NOW)
    assert r.can_flush is False and r.needs_usage_refresh is False


def test_fully_flushed_by_status():
    r = assess(blue(status="已红冲-全额"), NOW)
    assert r.can_flush is False and r.remaining == 0
    assert "已全额红冲" in joined(r)


def test_fully_flushed_status_wins_over_missing_red_invoices():
    r = assess(blue(status="已红冲-全额", flushed_amount=Decimal("0")), NOW)
    assert r.can_flush is False and r.remaining == Decimal("0")


@pytest.mark.parametrize("flushed", [Decimal("1000.00"), Decimal("1000"), Decimal("1200.00")])
def test_fully_flushed_by_red_invoices_in_pool(flushed):
    """remaining ≤ 0 even while the status is still 正常 (the status lags behind the pool)."""
    r = assess(blue(flushed_amount=flushed), NOW)
    assert r.can_flush is False and r.remaining == 0
    assert "已全额红冲" in joined(r) and "无剩余可红冲金额" in joined(r)


def test_negative_flushed_amount_is_read_as_absolute():
    assert remaining_amount(blue(flushed_amount=Decimal("-400.00"))) == Decimal("600.00")
    assert assess(blue(flushed_amount=Decimal("-1000.00")), NOW).can_flush is False


def test_zero_amount_blue_has_nothing_to_flush():
    r = assess(blue(amount=Decimal("0.00")), NOW)
    assert r.can_flush is False and r.remaining == 0 and "零" in joined(r)


def test_red_lock_blocks_for_now():
    r = assess(blue(red_lock=True, amount=Decimal("500.00")), NOW)
    assert r.can_flush is False and r.mode is None and r.confirmer is None
    assert r.remaining == Decimal("500.00") and r.document == CONFIRM_BILL
    assert joined(r).startswith("红字锁定中：已有红字确认单在办理")


def test_red_lock_wins_over_stale_usage():
    r = assess(blue(red_lock=True, usage_updated_at=None), NOW)
    assert r.can_flush is False and r.needs_usage_refresh is False


@pytest.mark.parametrize("lock", [False, None])
def test_no_or_unknown_lock_does_not_block(lock):
    assert assess(blue(red_lock=lock), NOW).can_flush is True


# ---- usage status: missing or stale ----------------------------------------------------------------

def test_usage_never_fetched():
    r = assess(blue(usage_updated_at=None, vat_usage=None, entry_status=None, usage_channel=None), NOW)
    assert r.can_flush is None and r.needs_usage_refresh is True
    assert r.mode is None and r.confirmer is None
    assert r.document == CONFIRM_BILL and r.remaining == Decimal("1000.00")
    assert r.reasons[0] == "用途状态未获取，请先获取该月用途状态"
    text = joined(r)  # still says briefly what applies in each case
    assert "销方可直接全额红冲" in text and "可全额或部分红冲" in text and "回退进货凭证" in text


def test_usage_older_than_limit_is_stale():
    updated = NOW - STALE_AFTER - timedelta(seconds=1)
    r = assess(blue(usage_updated_at=updated, vat_usage="1"), NOW)
    assert r.can_flush is None and r.needs_usage_refresh is True
    assert "用途状态已过期" in r.reasons[0] and f"{updated:%Y-%m-%d %H:%M}" in r.reasons[0]
    assert "请先获取该月用途状态" in r.reasons[0]


def test_usage_exactly_at_limit_is_fresh():
    r = assess(blue(usage_updated_at=NOW - STALE_AFTER), NOW)
    assert r.can_flush is True and r.needs_usage_refresh is False


def test_custom_stale_after():
    facts = blue(usage_updated_at=NOW - timedelta(days=8))
    assert assess(facts, NOW, stale_after=timedelta(days=7)).needs_usage_refresh is True
    assert assess(facts, NOW, stale_after=timedelta(days=8)).needs_usage_refresh is False
    assert "超过 7 天" in assess(facts, NOW, stale_after=timedelta(days=7)).reasons[0]


def test_stale_usage_still_shows_partial_progress_and_document_notes():
    r = assess(blue(type_code="86", usage_updated_at=None, flushed_amount=Decimal("300")), NOW)
    assert r.can_flush is None and r.remaining == Decimal("700.00")
    text = joined(r)
    assert "剩余可红冲 700.00 元" in text and "数电纸质发票确认后需手工开具红字发票" in text


def test_stale_legacy_normal_says_no_confirmation_needed():
    r = assess(blue(type_code="04", usage_updated_at=None), NOW)
    assert r.can_flush is None and "须对方确认" not in joined(r) and "直接开具红字发票" in joined(r)


# ---- usage decides mode and confirmer --------------------------------------------------------------

@pytest.mark.parametrize("vat", [None, "0", "00", " 0 "])
def test_nothing_confirmed_full_only_seller_direct(vat):
    r = assess(blue(vat_usage=vat, entry_status="01"), NOW)
    assert (r.can_flush, r.mode, r.confirmer) == (True, "full_only", "seller_direct")
    assert r.reasons[0] == "购方尚未用途确认或入账确认，销方可直接全额红冲，无需购方确认（确认即开票）"
    assert "部分红冲须选择" not in joined(r)


def test_no_entry_status_counts_as_not_entered():
    r = assess(blue(entry_status=None), NOW)
    assert (r.mode, r.confirmer) == ("full_only", "seller_direct")


@pytest.mark.parametrize("vat", ["1", "4", "6", "7", "8", "9", "10", "11", "01"])
def test_usage_confirmed_partial_allowed_other_party(vat):
    r = assess(blue(vat_usage=vat), NOW)
    assert (r.can_flush, r.mode, r.confirmer) == (True, "partial_allowed", "other_party")
    text = joined(r)
    assert "购方已用途确认" in text
    assert "可全额或部分红冲，须对方在72小时内确认红字发票信息确认单" in text
    assert "开票有误只能全额红冲，部分红冲须选择销货退回、服务中止或销售折让" in r.reasons
    assert "对方确认后系统自动开具红字发票" in r.reasons


def test_usage_label_in_reason():
    assert "已申请抵扣" in assess(blue(vat_usage="1"), NOW).reasons[0]


@pytest.mark.parametrize("vat", ["2", "3", "5", "02"])
def test_export_refund_buyer_rolls_back_first(vat):
    r = assess(blue(vat_usage=vat, entry_status="02"), NOW)
    assert (r.can_flush, r.confirmer) == (True, "buyer_rollback_first")
    assert r.mode == "partial_allowed"
    assert "须购方先回退进货凭证" in r.reasons[0] and "销方可直接开具红字发票" in r.reasons[0]
    assert "72小时" not in joined(r)


ENTRY_CODES = [
    # 乐企 rzzt: 01 未入账, 02 已入账, 03 已入账撤销
    ("leqi", "01", False), ("leqi", "02", True), ("leqi", "03", False), ("leqi", "2", True),
    # 电子税务局 / RPA: 01 未入账, 02 已入账（税前扣除）, 03 已入账（不扣除）, 06 入账撤销
    ("rpa", "01", False), ("rpa", "02", True), ("rpa", "03", True), ("rpa", "06", False),
]


@pytest.mark.parametrize("channel, code, entered", ENTRY_CODES)
def test_entry_codes_per_channel(channel, code, entered):
    r = assess(blue(usage_channel=channel, entry_status=code), NOW)
    assert r.can_flush is True
    assert r.mode == ("partial_allowed" if entered else "full_only")
    assert r.confirmer == ("other_party" if entered else "seller_direct")
    if entered:
        assert "购方已入账确认" in r.reasons[0]


def test_code_03_means_opposite_things_per_channel():
    assert entry_confirmed("03", "leqi") is False
    assert entry_confirmed("03", "rpa") is True
    assert entry_confirmed("03", None) is None


def test_unreadable_entry_code_asks_for_refresh():
    for channel, code in [(None, "03"), ("leqi", "06"), ("rpa", "99")]:
        r = assess(blue(usage_channel=channel, entry_status=code), NOW)
        assert r.can_flush is None and r.needs_usage_refresh is True and r.mode is None
        assert f"入账状态代码 {code}" in r.reasons[0]


def test_unknown_channel_reads_codes_both_sets_agree_on():
    assert assess(blue(usage_channel=None, entry_status="02"), NOW).mode == "partial_allowed"
    assert assess(blue(usage_channel=None, entry_status="01"), NOW).mode == "full_only"


def test_usage_and_entry_both_named():
    r = assess(blue(vat_usage="1", entry_status="02"), NOW)
    assert r.reasons[0].startswith("购方已用途确认（已申请抵扣）、入账确认：")


# ---- partly flushed ------------------------------------------------------------------------------

def test_partly_flushed_by_red_invoices_in_pool():
    r = assess(blue(status="已红冲-部分", vat_usage="1", flushed_amount=Decimal("250.50")), NOW)
    assert r.can_flush is True and r.remaining == Decimal("749.50")
    assert "已部分红冲：已冲 250.50 元，剩余可红冲 749.50 元" in r.reasons


def test_partly_flushed_status_lagging():
    """The pool holds a red invoice while the status still says 正常."""
    r = assess(blue(status="正常", flushed_amount=Decimal("100")), NOW)
    assert r.remaining == Decimal("900.00") and "剩余可红冲 900.00 元" in joined(r)


def test_partly_flushed_status_without_red_invoices_in_pool():
    r = assess(blue(status="已红冲-部分", vat_usage="1"), NOW)
    assert r.remaining == Decimal("1000.00")
    assert "池中未找到对应红字发票" in joined(r) and "以税局为准" in joined(r)


def test_status_spelling_variants():
    assert assess(blue(status=" 已红冲－全额 "), NOW).can_flush is False
    assert "池中未找到" in joined(assess(blue(status="已红冲"), NOW))


def test_not_partly_flushed_says_nothing_about_it():
    assert "已部分红冲" not in joined(assess(blue(), NOW))


# ---- 票种: which document -------------------------------------------------------------------------

@pytest.mark.parametrize("code", ["59", "81", "82"])
def test_digital_einvoice_uses_confirmation_bill(code):
    r = assess(blue(type_code=code), NOW)
    assert r.document == CONFIRM_BILL == "红字发票信息确认单"
    assert "手工" not in joined(r)


@pytest.mark.parametrize("code", ["85", "86"])
def test_digital_paper_issued_by_hand(code):
    r = assess(blue(type_code=code, vat_usage="1"), NOW)
    assert r.document == CONFIRM_BILL
    assert "数电纸质发票确认后需手工开具红字发票" in r.reasons
    assert "对方确认后系统自动开具红字发票" not in r.reasons


@pytest.mark.parametrize("code", ["01", "08"])
def test_legacy_special_uses_information_table(code):
    r = assess(blue(type_code=code), NOW)
    assert r.document == INFO_TABLE == "红字增值税专用发票信息表"
    assert (r.mode, r.confirmer) == ("full_only", "seller_direct")
    assert "确认即开票" not in joined(r)
    confirmed = assess(blue(type_code=code, vat_usage="1"), NOW)
    assert confirmed.confirmer == "other_party" and "须对方确认红字增值税专用发票信息表" in confirmed.reasons[0]


@pytest.mark.parametrize("code", ["04", "10", "11", "14"])
def test_legacy_normal_seller_issues_directly(code):
    r = assess(blue(type_code=code), NOW)
    assert r.document is None and (r.mode, r.confirmer) == ("full_only", "seller_direct")
    assert "销方可直接开具红字发票，并注明对应蓝字发票代码和号码" in joined(r)
    entered = assess(blue(type_code=code, entry_status="02"), NOW)
    assert (entered.mode, entered.confirmer) == ("partial_allowed", "seller_direct")
    assert "须对方" not in joined(entered)


@pytest.mark.parametrize("code, text", [(None, "票种未知"), ("03", "票种代码 03"), ("51", "票种代码 51")])
def test_unknown_type_has_no_document(code, text):
    r = assess(blue(type_code=code), NOW)
    assert r.can_flush is True and r.document is None and text in joined(r)


# ---- the contract --------------------------------------------------------------------------------

CASES = [
    blue(), blue(is_red=True), blue(status="已作废"), blue(status="已红冲-全额"), blue(red_lock=True),
    blue(usage_updated_at=None), blue(usage_updated_at=NOW - timedelta(days=90)), blue(vat_usage="1"),
    blue(vat_usage="2"), blue(entry_status="02", usage_channel="rpa"), blue(type_code="04"),
    blue(type_code="01", status="已红冲-部分", flushed_amount=Decimal("1")), blue(type_code=None),
    blue(entry_status="03", usage_channel=None),
]


@pytest.mark.parametrize("facts", CASES)
def test_reasons_are_non_empty_chinese(facts):
    assert_readable(assess(facts, NOW))


@pytest.mark.parametrize("facts", CASES)
def test_answers_are_consistent(facts):
    r = assess(facts, NOW)
    assert r.remaining >= 0
    assert r.needs_usage_refresh == (r.can_flush is None)
    if r.can_flush:
        assert r.mode in ("full_only", "partial_allowed")
        assert r.confirmer in ("seller_direct", "other_party", "buyer_rollback_first")
        assert r.remaining > 0
    else:
        assert r.mode is None and r.confirmer is None


def test_results_are_frozen():
    r = assess(blue(), NOW)
    with pytest.raises(FrozenInstanceError):
        r.can_flush = False  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        blue().amount = Decimal("1")  # type: ignore[misc]


def test_to_json():
    r = assess(blue(vat_usage="1", flushed_amount=Decimal("0.5")), NOW)
    data = to_json(r)
    assert set(data) == {"can_flush", "mode", "confirmer", "document", "remaining", "needs_usage_refresh",
                         "reasons"}
    assert data["remaining"] == "999.50"
    assert data["can_flush"] is True and data["mode"] == "partial_allowed" and data["confirmer"] == "other_party"
    assert data["document"] == "红字发票信息确认单" and data["needs_usage_refresh"] is False
    assert data["reasons"] == list(r.reasons)
    json.dumps(data, ensure_ascii=False)  # serialisable as is


def test_to_json_remaining_zero_and_unknown():
    assert to_json(assess(blue(status="已红冲-全额"), NOW))["remaining"] == "0.00"
    data = to_json(assess(blue(usage_updated_at=None, amount=Decimal("12.3")), NOW))
    assert data["can_flush"] is None and data["mode"] is None and data["remaining"] == "12.30"
