"""发票用途状态: the codes each channel answers with, shown with one consistent Chinese label.

乐企 and the Electronic Tax Bureau (RPA) use different 入账 code sets (docs/codes.md, 入账状态): the code
is stored as answered, with its channel, and labelled here.
"""
from __future__ import annotations

from webapp.statuses import Channel, InvoiceStatus

VAT_USAGE = {
    "0": "未使用", "1": "已申请抵扣", "2": "已申请退税", "3": "已申请代办退税", "4": "已勾选不抵扣（历史数据）",
    "5": "已申请代办退税（历史数据）", "6": "已申请不抵扣", "7": "内销转出口", "8": "出口转内销", "9": "准予退税",
    "10": "不予退税", "11": "冬奥退税",
}
EXCISE_USAGE = {"00": "未勾选库存", "01": "已勾选库存"}
ENTRY_STATUS = {
    Channel.LEQI: {"01": "未入账", "02": "已入账", "03": "入账撤销"},
    Channel.RPA: {"01": "未入账", "02": "已入账（企业所得税税前扣除）", "03": "已入账（企业所得税不扣除）",
                  "06": "入账撤销"},
}

# 增值税用途 codes of export refund (docs/codes.md, 增值税用途): 已申请退税, 已申请代办退税, 已申请代办退税（历史数据）
EXPORT_REFUND_USAGE = frozenset({"2", "3", "5"})
# 入账 per channel, read from the labels above: 已入账… is entered; 未入账 and 入账撤销 are not
ENTERED = {channel: frozenset(code for code, text in codes.items() if text.startswith("已入账"))
           for channel, codes in ENTRY_STATUS.items()}
NOT_ENTERED = {channel: frozenset(codes) - ENTERED[channel] for channel, codes in ENTRY_STATUS.items()}
# Whichever channel answered: the codes that mean the same in every set ("03" does not)
ENTERED_ANY = frozenset().union(*ENTERED.values()) - frozenset().union(*NOT_ENTERED.values())
NOT_ENTERED_ANY = frozenset().union(*NOT_ENTERED.values()) - frozenset().union(*ENTERED.values())


def entry_codes(label: str) -> list[tuple[str, str]]:
    """Every (channel, code) a 入账状态 label stands for: a filter lists each label once, whichever
    channel's code set it comes from."""
    return [(channel, code) for channel, codes in ENTRY_STATUS.items() for code, text in codes.items() if text == label]


ENTRY_LABELS = list(dict.fromkeys(text for codes in ENTRY_STATUS.values() for text in codes.values()))


NOT_APPLICABLE = "不适用"  # a red invoice has no usage (never asked); a voided one none unless a channel gave one


def usage_applies(is_red: bool, status: str | None, vat_usage: str | None) -> bool:
    """Whether an invoice can have a usage status to show or wait for: not a red one (only blue
    invoices are queried), and not a voided one the bureau gave none for. Such invoices read
    不适用, never 未获取, which means a status could still be fetched (docs/rules.md, 用途状态)."""
    return not is_red and (status != InvoiceStatus.VOIDED or vat_usage is not None)


def _label(table: dict, code: str | None) -> str:
    if code is None:
        return "未获取"
    return table.get(code, f"未知代码 {code}")


def usage_labels(vat: str | None, excise: str | None, entry: str | None, channel: str | None) -> dict:
    """The three statuses as users read them, whichever channel answered."""
    return {
        "vat_usage": _label(VAT_USAGE, vat),
        "excise_usage": _label(EXCISE_USAGE, excise),
        "entry_status": _label(ENTRY_STATUS.get(channel or "", {}), entry),
    }
