"""Invoice kinds: the tax bureau's two-digit codes and the names the export writes (docs/codes.md, 票种)."""
from __future__ import annotations

import re

# code -> canonical 发票票种 as the current export spells it
TYPE_NAMES: dict[str, str] = {
    "01": "增值税专用发票",
    "03": "机动车销售统一发票",
    "04": "增值税普通发票",
    "08": "增值税电子专用发票",
    "10": "增值税电子普通发票",
    "11": "增值税普通发票（卷式）",
    "14": "道路通行费电子普通发票",
    "15": "二手车销售统一发票",
    "51": "数电发票（铁路电子客票）",
    "59": "数电发票（通行费发票）",
    "61": "数电发票（航空运输电子客票行程单）",
    "81": "数电发票（增值税专用发票）",
    "82": "数电发票（普通发票）",
    "85": "数电纸质发票（增值税专用发票）",
    "86": "数电纸质发票（普通发票）",
}
_CODES_BY_NAME = {name: code for code, name in TYPE_NAMES.items()}

# The six kinds a user picks for 税局下载 (docs/rules.md, 导入 dialog), in its order, each under the
# one name the pool, the export and every screen use for it (TYPE_NAMES).
DOWNLOAD_KINDS: dict[str, str] = {code: TYPE_NAMES[code] for code in ("10", "08", "04", "01", "82", "81")}


def canonical_type_name(raw: str) -> str:
    """One spelling per kind: full-width parentheses, and 数电票（…） written as 数电发票（…）."""
    name = re.sub(r"\s+", "", raw or "").replace("(", "（").replace(")", "）")
    if name.startswith("数电票（"):
        name = "数电发票" + name[len("数电票"):]
    return name


def type_code(name: str) -> str | None:
    """The two-digit code of a canonical 发票票种, or None for a kind we do not know yet."""
    return _CODES_BY_NAME.get(name)
