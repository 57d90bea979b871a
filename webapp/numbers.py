"""Numbers as a finance user reads them: thousands separators on amounts and counts, and 数量 / 单价
exactly as the source gave them (a spreadsheet's binary float shown as the 15 digits Excel shows)."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

SIGNIFICANT = 15  # what Excel displays of a number cell; further digits are binary float noise


def thousands(value) -> str:
    """A count with separators: 2454 → 2,454 (None → empty)."""
    if value is None or value == "":
        return ""
    return f"{int(value):,}"


def money(value) -> str:
    """An amount to the cent with separators: 1234.5 → 1,234.50 (None → empty)."""
    if value is None or value == "":
        return ""
    return f"{Decimal(str(value)).quantize(Decimal('0.01')):,}"


def exact_number(value) -> str:
    """数量 / 单价 as written; only digits past Excel's 15 significant ones are cut.

    Why: a workbook cell stored as a binary float (2199.58416666667 in Excel) reads back as
    2199.5841666666665; the user's source shows the former. Text with fewer digits is untouched.
    """
    if value is None or value == "":
        return ""
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    digits = number.as_tuple().digits
    if not number.is_finite() or len(digits) <= SIGNIFICANT:
        return str(value)
    rounded = number.quantize(Decimal(1).scaleb(number.adjusted() - SIGNIFICANT + 1))
    text = f"{rounded:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
