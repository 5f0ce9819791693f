"""Rate limits per integration token and per user, login throttling, shared counters."""

import asyncio
import time

import pytest
from litestar.stores.memory import MemoryStore
from litestar.testing import TestClient
from sqlmodel import select

from api.main import create_app
from api.ratelimit import LoginThrottle
from core.db import session_scope
from core.models import Reading
from tests.factories import PASSWORD, bearer, hourly_records, make_site, make_token, signup


def _batch(client, headers, hour=0):
    from datetime import UTC, datetime, timedelta

    start = datetime(2025, 11, 1, tzinfo=UTC) + timedelta(hours=hour)
    return client.post(
        "/api/v1/timeseries/batch",
        json=hourly_records("lim", "main-incomer", start, 1),
        headers=headers,
    )


def test_a_token_over_its_limit_gets_429_with_retry_after(settings, engine):
    limited = settings.model_copy(update={"rate_limit_token_per_minute": 3})
    with TestClient(app=create_app(limited)) as client:
        user = signup(client, org="Limited Works")
        make_site(client, user["headers"], "lim")
        token = bearer(make_token(client, user["headers"], name="busy")["token"])
        other = bearer(make_token(client, user["headers"], name="calm")["token"])
        assert [_batch(client, token, h).status_code for h in range(3)] == [200, 200, 200]
        r = _batch(client, token, 3)
        assert r.status_code == 429
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "rate_limited"
        assert 1 <= int(r.headers["retry-after"]) <= 60
        # Limits are per token: another token, and people, are not held up.
        assert _batch(client, other, 4).status_code == 200
        assert client.get("/api/v1/sites", headers=user["headers"]).status_code == 200


def test_workers_sharing_a_store_share_the_count(settings, engine):
    store = MemoryStore()  # what Redis is to several workers
    limited = settings.model_copy(update={"rate_limit_token_per_minute": 3})
    with (
        TestClient(app=create_app(limited, rate_store=store)) as one,
        TestClient(app=create_app(limited, rate_store=store)) as two,
    ):
        user = signup(one, org="Shared Works")
        make_site(one, user["headers"], "lim")
        token = bearer(make_token(one, user["headers"])["token"])
        codes = [_batch(c, token, h).status_code for h, c in enumerate((one, two, one, two))]
        assert codes == [200, 200, 200, 429]


def test_users_have_a_limit_too(settings, engine):
    limited = settings.model_copy(update={"rate_limit_user_per_minute": 5})
    with TestClient(app=create_app(limited)) as client:
        user = signup(client, org="Chatty Works")
        codes = [client.get("/api/v1/sites", headers=user["headers"]).status_code for _ in range(6)]
        assert codes == [200] * 5 + [429]


def test_login_backs_off_after_failures_and_never_locks_for_good(client):
    user = signup(client, org="Guessed Works")
    throttle = client.app.state.login_throttle
    now = [1_000_000.0]
    throttle.clock = lambda: now[0]

    def login(password):
        return client.post(
            "/api/v1/auth/login", json={"email": user["email"], "password": password}
        )

    assert [login("wrong-password-1").status_code for _ in range(5)] == [401] * 5
    locked = login(PASSWORD)  # even the right password waits
    assert locked.status_code == 429 and locked.json()["code"] == "rate_limited"
    assert int(locked.headers["retry-after"]) == 30
    now[0] += 31
    assert login("wrong-password-2").status_code == 401  # the 6th failure doubles the wait
    assert int(login(PASSWORD).headers["retry-after"]) == 60
    for _ in range(10):  # keep failing: the wait stops growing at the cap
        now[0] += 10_000
        login("wrong-password-3")
    assert int(login(PASSWORD).headers["retry-after"]) <= 900
    now[0] += 901
    assert login(PASSWORD).status_code == 200  # the owner gets in, and the count resets
    assert login("wrong-password-4").status_code == 401


def _throttle(**kw) -> LoginThrottle:
    opts = {"max_failures": 3, "lockout_seconds": 30, "lockout_max_seconds": 900, **kw}
    return LoginThrottle(MemoryStore(), **opts)


async def _fail(throttle: LoginThrottle, email: str, address: str) -> None:
    assert await throttle.begin(email, address) is None
    await throttle.end(email, address, outcome="wrong")


def test_guessing_from_one_address_does_not_lock_the_owner_out_elsewhere():
    throttle = _throttle()

    async def scenario():
        for _ in range(3):
            await _fail(throttle, "Owner@Plant.example", "203.0.113.9")
        attacker = await throttle.begin("owner@plant.example", "203.0.113.9")
        owner = await throttle.begin("owner@plant.example", "198.51.100.7")
        return attacker, owner

    attacker, owner = asyncio.run(scenario())
    assert attacker is not None and 0 < attacker <= 900
    assert owner is None


def test_rotating_addresses_buys_one_guess_per_slot_after_the_per_email_cap():
    now = [1_000_000.0]
    throttle = _throttle(max_failures_per_email=10, clock=lambda: now[0])

    async def scenario():
        guesses, waits = 0, []
        for i in range(600):  # a new address for every attempt, one attempt a second
            address = f"198.51.100.{i % 250}"
            wait = await throttle.begin("owner@plant.example", address)
            if wait is None:
                guesses += 1
                await throttle.end("owner@plant.example", address, outcome="wrong")
            else:
                waits.append(wait)
            now[0] += 1
        return guesses, waits

    guesses, waits = asyncio.run(scenario())
    # Ten free guesses, then one per 30-second slot: about 30 in ten minutes, not 600.
    assert 10 < guesses <= 10 + 600 // 30 + 1
    assert waits and max(waits) <= 30  # a wait, never a refusal for the rest of a window


def test_an_attacker_rotating_addresses_cannot_keep_the_owner_out():
    """200 addresses taking turns to guess every second for an hour, past the per-email cap in
    each of four 15-minute windows: the owner, from an address that has signed in before, gets
    in every time with the right password; from a new address, no wait exceeds one slot."""
    now = [1_000_000.0]
    throttle = _throttle(max_failures_per_email=100, clock=lambda: now[0])
    email, home = "owner@plant.example", "192.0.2.1"

    async def owner_signs_in(address: str) -> float | None:
        wait = await throttle.begin(email, address)
        if wait is None:
            await throttle.end(email, address, outcome="ok")
        return wait

    async def scenario():
        assert await owner_signs_in(home) is None  # the owner's usual place
        owner_waits, new_place_waits, guesses = [], [], 0
        for second in range(3600):
            address = f"203.0.113.{second % 200}"
            if await throttle.begin(email, address) is None:
                guesses += 1
                await throttle.end(email, address, outcome="wrong")
            if second % 60 == 59:
                owner_waits.append(await owner_signs_in(home))
                wait = await throttle.begin(email, f"198.51.100.{second // 60}")
                new_place_waits.append(wait)
                if wait is None:  # a lucky slot: release it as the owner would
                    await throttle.end(email, f"198.51.100.{second // 60}", outcome="ok")
            now[0] += 1
        return owner_waits, new_place_waits, guesses

    owner_waits, new_place_waits, guesses = asyncio.run(scenario())
    assert owner_waits == [None] * 60
    assert all(w is None or w <= 30 for w in new_place_waits)
    assert guesses <= 100 + 3600 // 30 + 1  # the cap, then one guess per slot


def test_parallel_guesses_cannot_all_pass_one_check():
    throttle = _throttle()

    async def scenario():
        for _ in range(3):  # at the threshold: the next attempt is one at a time
            await _fail(throttle, "owner@plant.example", "203.0.113.9")
        throttle.clock = lambda: time.time() + 10_000  # the wait is over
        return await asyncio.gather(
            *(throttle.begin("owner@plant.example", "203.0.113.9") for _ in range(20))
        )

    answers = asyncio.run(scenario())
    assert sum(a is None for a in answers) == 1


def test_a_database_outage_during_login_counts_no_failure():
    throttle = _throttle()

    async def scenario():
        for _ in range(10):
            assert await throttle.begin("owner@plant.example", "203.0.113.9") is None
            await throttle.end("owner@plant.example", "203.0.113.9", outcome="error")
        return await throttle.begin("owner@plant.example", "203.0.113.9")

    assert asyncio.run(scenario()) is None


def test_callers_without_credentials_are_limited_per_address(settings, engine):
    limited = settings.model_copy(update={"rate_limit_anonymous_per_minute": 4})
    with TestClient(app=create_app(limited)) as client:
        codes = [
            client.post(
                "/api/v1/auth/login", json={"email": "x@y.example", "password": "wrong-guess-1"}
            ).status_code
            for _ in range(5)
        ]
        assert codes == [401] * 4 + [429]
        refresh = client.post("/api/v1/auth/refresh", json={"refresh_token": "x" * 40})
        assert refresh.status_code == 429 and int(refresh.headers["retry-after"]) >= 1


def _redis_or_skip(url: str = "redis://127.0.0.1:6379/15"):
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.flushdb()  # database 15 is the tests' own: no counts left from an earlier run
    except redis.exceptions.ConnectionError:
        pytest.skip("needs Redis at 127.0.0.1:6379")
    finally:
        client.close()
    return url


def test_workers_configured_with_redis_share_counts_through_it(settings, engine):
    """Two apps, as two worker processes would be, each with its own Redis connection."""
    url = _redis_or_skip()
    limited = settings.model_copy(
        update={"redis_url": url, "rate_limit_token_per_minute": 3, "login_max_failures": 2}
    )
    one_app, two_app = create_app(limited), create_app(limited)
    with TestClient(app=one_app) as one, TestClient(app=two_app) as two:
        user = signup(one, org="Redis Works")
        make_site(one, user["headers"], "lim")
        token = bearer(make_token(one, user["headers"])["token"])
        codes = [_batch(c, token, h).status_code for h, c in enumerate((one, two, one, two))]
        assert codes == [200, 200, 200, 429]
        wrong = {"email": user["email"], "password": "wrong-password-9"}
        assert one.post("/api/v1/auth/login", json=wrong).status_code == 401
        assert two.post("/api/v1/auth/login", json=wrong).status_code == 401
        refused = one.post("/api/v1/auth/login", json={**wrong, "password": PASSWORD})
        assert refused.status_code == 429  # the failures seen by both workers add up


@pytest.mark.parametrize(
    "path", ["/api/v1/sites", "/api/v1/sites/lim/meters", "/api/v1/integration-tokens"]
)
def test_list_endpoints_page_and_refuse_pages_over_the_cap(client, path):
    user = signup(client, org="Paged Works")
    make_site(client, user["headers"], "lim", meters=("main-incomer", "m-2", "m-3"))
    make_site(client, user["headers"], "lim-2")
    make_site(client, user["headers"], "lim-3")
    for name in ("a", "b", "c"):
        make_token(client, user["headers"], name=name)
    whole = client.get(path, headers=user["headers"]).json()
    assert whole["count"] == 3 and len(whole["data"]) == 3
    second = client.get(f"{path}?limit=1&offset=1", headers=user["headers"]).json()
    assert second["count"] == 3 and second["data"] == whole["data"][1:2]
    over = client.get(f"{path}?limit=1001", headers=user["headers"])
    assert over.status_code == 400 and over.json()["code"] == "validation_error"


@pytest.mark.parametrize("limit, status", [(500, 200), (501, 400), (0, 400)])
def test_alert_pages_hold_at_most_500(client, limit, status):
    user = signup(client, org="Alerted Works")
    r = client.get("/api/v1/alerts", params={"limit": limit}, headers=user["headers"])
    assert r.status_code == status, r.text
    if status == 400:
        assert r.json()["code"] == "validation_error"


def test_a_csv_upload_over_the_size_limit_is_413_and_stores_nothing(settings, engine):
    small = settings.model_copy(update={"max_upload_bytes": 4096})
    with TestClient(app=create_app(small)) as client:
        user = signup(client, org="Big File Works")
        make_site(client, user["headers"], "lim")
        rows = ["site_id,meter_id,timestamp_utc,value,unit"] + [
            f"lim,main-incomer,2025-11-{1 + h // 24:02d}T{h % 24:02d}:00:00Z,5.0,kWh"
            for h in range(200)
        ]
        body = ("\n".join(rows) + "\n").encode()
        assert len(body) > 4096
        for kwargs in (
            {"content": body, "headers": {**user["headers"], "Content-Type": "text/csv"}},
            {"files": {"file": ("big.csv", body, "text/csv")}, "headers": user["headers"]},
        ):
            r = client.post("/api/v1/timeseries/upload", **kwargs)
            assert r.status_code == 413, r.text
            assert r.json()["code"] == "payload_too_large"
    with session_scope(engine) as session:
        assert session.exec(select(Reading)).all() == []


def test_the_trusted_proxies_setting_reaches_uvicorn(settings, monkeypatch):
    """Behind a reverse proxy on another host, uvicorn must believe its X-Forwarded-For, or
    every client shares the proxy's address in the rate limits and the login back-off."""
    import core.cli

    assert "--forwarded-allow-ips" not in core.cli._api_argv("127.0.0.1", 8000)
    proxied = settings.model_copy(update={"forwarded_allow_ips": "10.0.0.5,10.0.0.6"})
    monkeypatch.setattr(core.cli, "get_settings", lambda: proxied)
    argv = core.cli._api_argv("0.0.0.0", 8000)  # noqa: S104
    assert argv[argv.index("--forwarded-allow-ips") + 1] == "10.0.0.5,10.0.0.6"
