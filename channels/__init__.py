"""Sources of invoices (乐企, RPA, the e-tax export file), knowing nothing of Flask.

The one rule kept here, light to import (no httpx): which configured base URL means the built-in
sandbox tax bureau, asked by the clients (clients.py) and by every page's demo notice.
"""
from __future__ import annotations

SANDBOX = "sandbox"


def is_sandbox(base_url: str | None) -> bool:
    """Whether a configured base URL means the built-in sandbox (the default when unset)."""
    return (base_url or SANDBOX).strip().lower() == SANDBOX
