"""Login throttling: failed logins are counted per user name and per client address, in Redis.

Only failures count (a team logging in all morning from one office address is never slowed), in a
moving window (LOGIN_LIMIT_PER_USER / LOGIN_LIMIT_PER_ADDRESS, e.g. "5 per 15 minutes"). Past either
limit the login is refused, even with the right password, until the window moves on. The counters
live in the product's Redis (the `limits` library, which Flask-Limiter is built on) so every web
process shares them; while Redis is unreachable they fall back to this process's memory rather
than letting logins through unthrottled or refusing everyone.
"""
from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING

from flask import current_app

if TYPE_CHECKING:
    from limits.strategies import MovingWindowRateLimiter

# `limits` (and the asyncio it loads) is imported on the first login, not at every start-up
# (docs/performance.md, cold start).

log = logging.getLogger(__name__)


def _limiter() -> MovingWindowRateLimiter:
    """The Redis-backed limiter on the queue's own connection (one per app)."""
    ext = current_app.extensions
    if "login_throttle" not in ext:
        from limits.storage import RedisStorage
        from limits.strategies import MovingWindowRateLimiter

        from webapp.background import background

        storage = RedisStorage("redis://", connection_pool=background().redis().connection_pool,
                               key_prefix=f"{current_app.config['RQ_QUEUE']}:login")
        ext["login_throttle"] = MovingWindowRateLimiter(storage)
    return ext["login_throttle"]


def _keys(username: str, address: str | None):
    """(limit, identifiers) pairs: one counter per user name (case-folded), one per address."""
    from limits import parse

    config = current_app.config
    return [(parse(config["LOGIN_LIMIT_PER_USER"]), ("user", username.strip().lower())),
            (parse(config["LOGIN_LIMIT_PER_ADDRESS"]), ("address", address or "-"))]


def _call(method: str, *args):
    """Run a limiter method on Redis, or on the in-memory fallback while Redis is down."""
    try:
        return getattr(_limiter(), method)(*args)
    except Exception:  # redis.ConnectionError, TimeoutError, ...: keep throttling in memory
        log.warning("login throttle: Redis unavailable, counting in memory", exc_info=True)
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter

        fallback = current_app.extensions.setdefault("login_throttle_memory", MovingWindowRateLimiter(MemoryStorage()))
        return getattr(fallback, method)(*args)


def locked_for(username: str, address: str | None) -> int:
    """Seconds until a login for this user from this address may be tried again; 0 when allowed."""
    wait = 0
    for limit, ids in _keys(username, address):
        if not _call("test", limit, *ids):
            stats = _call("get_window_stats", limit, *ids)
            wait = max(wait, math.ceil(stats.reset_time - time.time()), 1)
    return wait


def failed(username: str, address: str | None) -> None:
    """Count one failed login against the user name and the address."""
    for limit, ids in _keys(username, address):
        _call("hit", limit, *ids)


def succeeded(username: str) -> None:
    """A right password clears the user's failures (the address's stay counted)."""
    limit, ids = _keys(username, None)[0]
    _call("clear", limit, *ids)


def lockout_message(seconds: int) -> str:
    """What the login page says while locked, in whole minutes."""
    return f"登录失败次数过多，已暂时禁止登录，请 {max(1, math.ceil(seconds / 60))} 分钟后再试"
