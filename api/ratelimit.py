"""Rate limits and login throttling, counted in a Litestar store that API workers can share.

- Per integration token, per signed-in user and per client address for unauthenticated calls
  (signup, login, refresh): a fixed one-minute window of requests
  (`CEI_RATE_LIMIT_TOKEN_PER_MINUTE`, `CEI_RATE_LIMIT_USER_PER_MINUTE`,
  `CEI_RATE_LIMIT_ANONYMOUS_PER_MINUTE`); over it, 429 with Retry-After (the seconds left in
  the window).
- Login, per email and client address: after `CEI_LOGIN_MAX_FAILURES` wrong passwords the next
  attempt waits a delay that doubles with each further failure, from `CEI_LOGIN_LOCKOUT_SECONDS`
  up to `CEI_LOGIN_LOCKOUT_MAX_SECONDS`; while it waits, one attempt at a time. A correct
  password resets it. Keyed by address as well as email, so guessing from one place cannot
  lock the owner out from another, and no wait lasts longer than the cap.
- Login, per email from every address together: once `CEI_LOGIN_MAX_FAILURES_PER_EMAIL` wrong
  passwords arrive within a 15-minute window, the email is "under attack" until 15 minutes pass
  without a wrong password. Meanwhile attempts from addresses that have never signed in to it
  share one slot every `CEI_LOGIN_LOCKOUT_SECONDS` (a wait of at most that long, never a
  refusal that an attacker can prolong), so rotating addresses buys an attacker one guess per
  slot. Addresses that signed in to that email successfully within the last 30 days are not
  slowed by this at all (only by their own per-address back-off): the owner, from a place they
  have used before, always gets in with the right password.
- The Streamlit app's login form uses the same throttle with the same keys and store
  (`throttle_for(settings)`), so guesses through either count against both.

The store is Litestar's: in memory by default (one process), Redis when `CEI_REDIS_URL` is set
(shared by every worker). Counters are atomic: Redis INCR, or a lock around the memory store.
"""

import asyncio
import math
import time
from collections.abc import Callable

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore

from api.errors import problem
from core.accounts import Principal
from core.settings import Settings

WINDOW_SECONDS = 60
EMAIL_WINDOW_SECONDS = 900
STATE_TTL_SECONDS = 86_400  # a login failure is forgotten a day after the last one
KNOWN_ADDRESS_TTL_SECONDS = 30 * 86_400  # an address that signed in is trusted this long


class CountingRedisStore(RedisStore):
    """Litestar's Redis store with an atomic counter."""

    async def incr(self, key: str, by: int, expires_in: int) -> int:
        name = self._make_key(key)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incrby(name, by)
            pipe.expire(name, expires_in)
            count, _ = await pipe.execute()
        return int(count)


def make_store(settings: Settings) -> Store:
    if settings.redis_url:
        return CountingRedisStore.with_client(url=settings.redis_url, namespace="cei")
    return MemoryStore()


_locks: dict[tuple[int, int], asyncio.Lock] = {}


async def incr(store: Store, key: str, *, by: int = 1, expires_in: int) -> int:
    """Add `by` to the counter at `key` and return the new value, atomically."""
    if isinstance(store, CountingRedisStore):
        return await store.incr(key, by, expires_in)
    # The memory store lives in one process; one lock per store and event loop serialises
    # the read and the write (an asyncio lock cannot be shared across loops).
    lock = _locks.setdefault((id(store), id(asyncio.get_running_loop())), asyncio.Lock())
    async with lock:
        count = int(await store.get(key) or 0) + by
        await store.set(key, str(count), expires_in=expires_in)
        return count


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
        count = await incr(self.store, f"rate:{key}:{window}", expires_in=2 * WINDOW_SECONDS)
        if count > self.per_minute:
            return (window + 1) * WINDOW_SECONDS - now
        return None


class LoginThrottle:
    """Backoff after wrong passwords per email and address; per email overall, a slowdown for
    addresses that have never signed in to it.

    `begin` reserves an attempt before the password is checked, so parallel guesses cannot all
    slip through one check; `end` releases it with the outcome."""

    def __init__(
        self,
        store: Store,
        *,
        max_failures: int,
        lockout_seconds: float,
        lockout_max_seconds: float,
        max_failures_per_email: int = 100,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.max_failures = max_failures
        self.lockout = lockout_seconds
        self.lockout_max = lockout_max_seconds
        self.max_per_email = max_failures_per_email
        self.clock = clock

    @staticmethod
    def _email(email: str) -> str:
        return email.strip().lower()

    def _who(self, email: str, address: str) -> str:
        return f"{self._email(email)}:{address}"

    def _email_window_key(self, email: str) -> str:
        window = int(self.clock() // EMAIL_WINDOW_SECONDS)
        return f"login-email:{self._email(email)}:{window}"

    async def _int(self, key: str) -> int:
        return int(await self.store.get(key) or 0)

    async def wait(self, email: str, address: str) -> float | None:
        """Seconds until this email may try again from this address (its own back-off), or
        None."""
        who = self._who(email, address)
        failures = await self._int(f"login-fail:{who}")
        if failures < self.max_failures:
            return None
        delay = min(self.lockout * 2 ** (failures - self.max_failures), self.lockout_max)
        left = await self._int(f"login-last:{who}") / 1000 + delay - self.clock()
        return left if left > 0 else None

    async def known_address(self, email: str, address: str) -> bool:
        """True when this address signed in to this email successfully in the last 30 days."""
        return await self.store.exists(f"login-known:{self._who(email, address)}")

    async def under_attack(self, email: str) -> bool:
        """True from the per-email cap until a whole window passes without a wrong password."""
        until = await self.store.get(f"login-attack:{self._email(email)}")
        return until is not None and float(until) > self.clock()

    async def _slot_wait(self, email: str) -> float | None:
        """Under attack, addresses new to the email share one attempt per `lockout` seconds:
        the first caller in a slot takes it, the others wait for the next (at most `lockout`)."""
        now = self.clock()
        slot = int(now // self.lockout)
        key = f"login-slot:{self._email(email)}:{slot}"
        taken = await incr(self.store, key, expires_in=math.ceil(2 * self.lockout) + 1)
        if taken > 1:
            return (slot + 1) * self.lockout - now
        return None

    async def begin(self, email: str, address: str) -> float | None:
        """Reserve an attempt; the seconds to wait instead when it is refused."""
        wait = await self.wait(email, address)
        if wait is not None:
            return wait
        if not await self.known_address(email, address) and await self.under_attack(email):
            wait = await self._slot_wait(email)
            if wait is not None:
                return wait
        who = self._who(email, address)
        busy = await incr(self.store, f"login-busy:{who}", expires_in=WINDOW_SECONDS)
        failures = await self._int(f"login-fail:{who}")
        allowed = max(1, self.max_failures - failures)  # once backing off, one at a time
        if busy > allowed:
            await incr(self.store, f"login-busy:{who}", by=-1, expires_in=WINDOW_SECONDS)
            return 1.0
        return None

    async def end(self, email: str, address: str, *, outcome: str) -> None:
        """Release a reserved attempt: `ok` resets the count and remembers the address, `wrong`
        adds a failure, anything else (the check could not run) counts nothing."""
        who = self._who(email, address)
        await incr(self.store, f"login-busy:{who}", by=-1, expires_in=WINDOW_SECONDS)
        if outcome == "ok":
            await self.store.delete(f"login-fail:{who}")
            await self.store.set(f"login-known:{who}", "1", expires_in=KNOWN_ADDRESS_TTL_SECONDS)
            return
        if outcome != "wrong":
            return
        await incr(self.store, f"login-fail:{who}", expires_in=STATE_TTL_SECONDS)
        millis = str(int(self.clock() * 1000))
        await self.store.set(f"login-last:{who}", millis, expires_in=STATE_TTL_SECONDS)
        count = await incr(
            self.store, self._email_window_key(email), expires_in=2 * EMAIL_WINDOW_SECONDS
        )
        if count >= self.max_per_email or await self.under_attack(email):
            until = str(self.clock() + EMAIL_WINDOW_SECONDS)
            await self.store.set(
                f"login-attack:{self._email(email)}", until, expires_in=EMAIL_WINDOW_SECONDS
            )


def throttle_for(settings: Settings, store: Store | None = None) -> LoginThrottle:
    """The login throttle these settings describe (the API's and the app's are the same)."""
    return LoginThrottle(
        store or make_store(settings),
        max_failures=settings.login_max_failures,
        lockout_seconds=settings.login_lockout_seconds,
        lockout_max_seconds=settings.login_lockout_max_seconds,
        max_failures_per_email=settings.login_max_failures_per_email,
    )


def client_address(connection: ASGIConnection) -> str:
    return connection.client.host if connection.client else "unknown"


def rate_limit_guard(tokens: RateLimiter, users: RateLimiter, anonymous: RateLimiter):
    """An app-wide guard: each integration token, each user and each address of callers
    without credentials within its per-minute limit."""

    async def guard(connection: ASGIConnection, _handler: BaseRouteHandler) -> None:
        principal = connection.scope.get("user")
        if not isinstance(principal, Principal):
            wait = await anonymous.hit(f"anon:{client_address(connection)}")
            what = f"more than {anonymous.per_minute} unauthenticated requests a minute"
        elif principal.is_user:
            wait = await users.hit(f"user:{principal.user_id}")
            what = f"more than {users.per_minute} requests a minute from this user"
        else:
            wait = await tokens.hit(f"token:{principal.token_id}")
            what = f"more than {tokens.per_minute} requests a minute with this token"
        if wait is not None:
            raise too_many(wait, f"{what}; retry after the Retry-After seconds")

    return guard
