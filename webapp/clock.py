"""The time the product acts on: the real clock, or CLOCK_NOW set by tests of date rules (quotas)."""
from __future__ import annotations

from datetime import datetime

from flask import current_app


def now() -> datetime:
    """Naive local (Beijing, see config.use_local_time_zone) time like every stored timestamp;
    tests of date rules set CLOCK_NOW instead of waiting for days to pass."""
    return current_app.config.get("CLOCK_NOW") or datetime.now()
