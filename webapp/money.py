"""Sums of money exact to the cent on both databases.

SQLite keeps NUMERIC columns as binary floats, so a plain SUM there drifts by fractions of a cent over
many rows; it adds whole cents as integers instead. PostgreSQL sums NUMERIC exactly.
"""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import Integer, cast, func

CENT = Decimal("0.01")


def sum_exact(dialect: str, column):
    """SUM of a money column, exact: whole cents on SQLite, numeric on PostgreSQL."""
    if dialect == "sqlite":
        return func.sum(cast(func.round(column * 100), Integer))
    return func.sum(column)


def as_cents(value) -> int:
    """A `sum_exact` result as whole cents, whichever database summed it (SQLite: cents already)."""
    if value is None:
        return 0
    return value if isinstance(value, int) else int(Decimal(value) * 100)


def as_yuan(cents: int) -> Decimal:
    """Whole cents as an amount with two decimals."""
    return (Decimal(cents) / 100).quantize(CENT)
