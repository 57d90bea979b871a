"""Login throttling: failed logins are counted per user name and per client address, in Redis.

Only failures count (a team logging in all morning from one office address is never slowed), in a
moving window (LOGIN_LIMIT_PER_USER / LOGIN_LIMIT_PER_ADDRESS, e.g. "5 per 15 minutes").

Locks are per user name: past its limit a user name is refused, even with the right password, until
the window moves on. An address never locks anyone out by itself: behind a NAT or a proxy a whole
office shares one address, and one colleague's (or one intruder's) wrong passwords must not keep the
others out (README, Access). An address past its own limit is suspect instead: each further wrong
password from it locks the user name it named at once, so from there every user name gets one guess
per window rather than LOGIN_LIMIT_PER_USER, while the right password of a user not locked still
logs in. An attacker's guesses from one address are thus bounded by the address limit plus one per
existing user name per window (unknown user names reach no account).

The counters live in the product's Redis (the `limits` library, which Flask-Limiter is built on) so
every web process shares them; while Redis is unreachable they fall back to this process's memory
rather than letting logins through unthrottled or refusing everyone. The address is the one the
request came from, or the client a trusted proxy names (TRUSTED_PROXIES, settings.py).
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


def _user_key(username: str):
    """(limit, identifiers) of a user name's failures (case-folded: the form does not care either)."""
    from limits import parse

    return parse(current_app.config["LOGIN_LIMIT_PER_USER"]), ("user", username.strip().lower())


def _address_key(address: str | None):
    """(limit, identifiers) of a client address's failures, whatever user names they named."""
    from limits import parse

    return parse(current_app.config["LOGIN_LIMIT_PER_ADDRESS"]), ("address", address or "-")


def _call(method: str, *args, **kwargs):
    """Run a limiter method on Redis, or on the in-memory fallback while Redis is down."""
    try:
        return getattr(_limiter(), method)(*args, **kwargs)
    except Exception:  # redis.ConnectionError, TimeoutError, ...: keep throttling in memory
        log.warning("login throttle: Redis unavailable, counting in memory", exc_info=True)
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter

        fallback = current_app.extensions.setdefault("login_throttle_memory", MovingWindowRateLimiter(MemoryStorage()))
        return getattr(fallback, method)(*args, **kwargs)


def locked_for(username: str) -> int:
    """Seconds until this user name may try again (its own failures only); 0 when allowed."""
    limit, ids = _user_key(username)
    if _call("test", limit, *ids):
        return 0
    stats = _call("get_window_stats", limit, *ids)
    return max(math.ceil(stats.reset_time - time.time()), 1)


def failed(username: str, address: str | None) -> None:
    """Count one failed login against the user name and the address; from an address past its own
    limit, lock the user name for the window at once (the rest of its allowance used up)."""
    user_limit, user = _user_key(username)
    _call("hit", user_limit, *user)
    address_limit, from_address = _address_key(address)
    suspect = not _call("test", address_limit, *from_address)  # its allowance was used up before this one
    _call("hit", address_limit, *from_address)
    if suspect:
        left = _call("get_window_stats", user_limit, *user).remaining
        if left > 0:
            _call("hit", user_limit, *user, cost=left)


def succeeded(username: str) -> None:
    """A right password clears the user's failures (the address's stay counted)."""
    limit, ids = _user_key(username)
    _call("clear", limit, *ids)


def lockout_message(seconds: int) -> str:
    """What the login page says while locked, in whole minutes."""
    return f"登录失败次数过多，已暂时禁止登录，请 {max(1, math.ceil(seconds / 60))} 分钟后再试"
