"""Rate limits and login throttling, counted in a Litestar store that API workers can share.

- Per integration token and per signed-in user: a fixed one-minute window of requests
  (`CEI_RATE_LIMIT_TOKEN_PER_MINUTE`, `CEI_RATE_LIMIT_USER_PER_MINUTE`); over it, 429 with
  Retry-After (the seconds left in the window).
- Login: per email and client address, after `CEI_LOGIN_MAX_FAILURES` wrong passwords the next
  attempts are refused for a delay that doubles with each further failure, from
  `CEI_LOGIN_LOCKOUT_SECONDS` up to `CEI_LOGIN_LOCKOUT_MAX_SECONDS`. A correct password resets
  it. Keyed by address as well as email, so guessing from one place cannot lock the owner out
  from another, and no lock lasts longer than the cap.

The store is Litestar's: in memory by default (one process), Redis when `CEI_REDIS_URL` is set
(shared by every worker). Counts use the store's get/set, so two workers can each let one extra
request through at the window's edge; the limit is a safeguard, not an accounting.
"""

import json
import math
import time
from collections.abc import Callable

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.stores.base import Store

from api.errors import problem
from core.accounts import Principal
from core.settings import Settings

WINDOW_SECONDS = 60


def make_store(settings: Settings) -> Store:
    if settings.redis_url:
        from litestar.stores.redis import RedisStore  # needs the redis package

        return RedisStore.with_client(url=settings.redis_url, namespace="cei")
    from litestar.stores.memory import MemoryStore

    return MemoryStore()


def too_many(retry_after: float, detail: str):
    seconds = max(1, math.ceil(retry_after))
    return problem(429, detail, "rate_limited", headers={"Retry-After": str(seconds)})


class RateLimiter:
    """Fixed-window request counters per key."""

    def __init__(
        self, store: Store, *, per_minute: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.per_minute = per_minute
        self.clock = clock

    async def hit(self, key: str) -> float | None:
        """Count a request; the seconds to wait when it is over the limit, else None."""
        now = self.clock()
        window = int(now // WINDOW_SECONDS)
        name = f"rate:{key}:{window}"
        raw = await self.store.get(name)
        count = int(raw or 0) + 1
        await self.store.set(name, str(count), expires_in=2 * WINDOW_SECONDS)
        if count > self.per_minute:
            return (window + 1) * WINDOW_SECONDS - now
        return None


class LoginThrottle:
    """Backoff after repeated wrong passwords for one email from one address."""

    def __init__(
        self,
        store: Store,
        *,
        max_failures: int,
        lockout_seconds: float,
        lockout_max_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.max_failures = max_failures
        self.lockout = lockout_seconds
        self.lockout_max = lockout_max_seconds
        self.clock = clock

    @staticmethod
    def _key(email: str, address: str) -> str:
        return f"login:{email.strip().lower()}:{address}"

    async def _state(self, key: str) -> dict:
        raw = await self.store.get(key)
        return json.loads(raw) if raw else {"failures": 0, "until": 0.0}

    async def wait(self, email: str, address: str) -> float | None:
        """Seconds until this email may try again from this address, or None."""
        until = (await self._state(self._key(email, address)))["until"]
        left = until - self.clock()
        return left if left > 0 else None

    async def failed(self, email: str, address: str) -> None:
        key = self._key(email, address)
        state = await self._state(key)
        state["failures"] += 1
        over = state["failures"] - self.max_failures
        if over >= 0:
            delay = min(self.lockout * 2**over, self.lockout_max)
            state["until"] = self.clock() + delay
        # Forgotten a day after the last failure.
        await self.store.set(key, json.dumps(state), expires_in=86_400)

    async def succeeded(self, email: str, address: str) -> None:
        await self.store.delete(self._key(email, address))


def rate_limit_guard(tokens: RateLimiter, users: RateLimiter):
    """An app-wide guard: each integration token and each user within its per-minute limit."""

    async def guard(connection: ASGIConnection, _handler: BaseRouteHandler) -> None:
        principal = connection.scope.get("user")
        if not isinstance(principal, Principal):
            return
        if principal.is_user:
            wait = await users.hit(f"user:{principal.user_id}")
            what = f"more than {users.per_minute} requests a minute from this user"
        else:
            wait = await tokens.hit(f"token:{principal.token_id}")
            what = f"more than {tokens.per_minute} requests a minute with this token"
        if wait is not None:
            raise too_many(wait, f"{what}; retry after the Retry-After seconds")

    return guard
