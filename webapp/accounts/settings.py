"""Admin settings kept in the database; today errorGoodsNames (docs/rules.md, 错误商品名称过滤)."""
from __future__ import annotations

import re

from webapp.extensions import db
from webapp.models import Setting

ERROR_GOODS_KEY = "errorGoodsNames"
ERROR_GOODS_DEFAULT = "详见销货清单,原价合计,折扣额合计"
_WRAPPING = re.compile(r"^[\s\u3000(（]+|[\s\u3000)）]+$")


def normalise_goods_name(name: str | None) -> str:
    """A goods name without surrounding half- or full-width parentheses and spaces."""
    return _WRAPPING.sub("", name or "")


def is_error_goods(name: str | None, error_goods: frozenset[str]) -> bool:
    """Whether a line's goods name is one of the (normalised) error-goods names.

    Most names start with '*' and need no normalising; this runs once per imported line.
    """
    if name and not (name[0] in "(（" or name[-1] in ")）" or name[0].isspace() or name[-1].isspace()):
        return name in error_goods
    return normalise_goods_name(name) in error_goods


def validate_error_goods(value: str) -> list[str]:
    """The entries of a new setting value, or ValueError with the reason in Chinese."""
    if "，" in value:
        raise ValueError("请用英文逗号分隔各项，不要使用中文逗号")
    entries = [normalise_goods_name(part) for part in value.split(",")]
    if not value.strip() or any(not entry for entry in entries):
        raise ValueError("每一项都不能为空（检查是否有多余的逗号）")
    return entries


def get_setting(key: str, default: str) -> str:
    """A setting's value, or its default until an admin changes it."""
    row = db.session.get(Setting, key)
    return row.value if row else default


def set_setting(key: str, value: str) -> None:
    """Store a setting inside the caller's transaction."""
    row = db.session.get(Setting, key)
    if row is None:
        db.session.add(Setting(key=key, value=value))
    else:
        row.value = value


def error_goods_names() -> frozenset[str]:
    """The normalised names whose lines are dropped from blue invoices when saved to the pool."""
    return frozenset(normalise_goods_name(part)
                     for part in get_setting(ERROR_GOODS_KEY, ERROR_GOODS_DEFAULT).split(","))
