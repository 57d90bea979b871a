"""The time the product acts on: the real clock, or CLOCK_NOW set by tests of date rules (quotas)."""
from __future__ import annotations

from datetime import datetime

from flask import current_app


def now() -> datetime:
    """Naive local (Beijing, see settings.use_time_zone) time like every stored timestamp;
    tests of date rules set CLOCK_NOW (naive, or aware in some zone) instead of waiting for days
    to pass, and get it back as the database would keep it."""
    return stored(current_app.config.get("CLOCK_NOW") or datetime.now())


def stored(moment: datetime) -> datetime:
    """How the database keeps a moment: naive, in this server's local time. An aware moment (a
    test's clock, an org-local time from the CLI) is converted; a naive one is already local."""
    return moment.astimezone().replace(tzinfo=None) if moment.tzinfo else moment
