"""The app's login form uses the API's LoginThrottle: same keys (email and client address),
same store (memory, or Redis at CEI_REDIS_URL), so guessing from one address does not lock the
owner out from another, and the app and the API count the same failures."""

import pytest
from litestar.testing import TestClient
from streamlit.testing.v1 import AppTest

import app.auth
from api.main import create_app
from tests.app.conftest import APP_MAIN
from tests.app.conftest import sign_in as _sign_in
from tests.factories import PASSWORD, signup

ATTACKER, OWNER = "203.0.113.9", "198.51.100.7"
REFUSED = "Too many failed sign-ins for this email"


def _session(monkeypatch, address: str) -> AppTest:
    """A fresh browser tab whose connection comes from `address`."""
    monkeypatch.setattr(app.auth, "client_address", lambda: address)
    at = AppTest.from_file(str(APP_MAIN), default_timeout=60)
    at.run()
    return at


def test_wrong_guesses_from_one_address_do_not_lock_the_owner_out_of_the_app(
    monkeypatch, client, settings
):
    user = signup(client, org="Guessed Works")
    throttle = app.auth.login_throttle()
    monkeypatch.setattr(throttle, "clock", lambda: 1_000_000.0)  # no back-off runs out
    attacker = _session(monkeypatch, ATTACKER)
    for _ in range(settings.login_max_failures):
        _sign_in(attacker, user["email"], "wrong-password-1")
        assert attacker.error[0].value == "Invalid email or password."
    _sign_in(attacker, user["email"], PASSWORD)  # even the right password waits, there
    assert REFUSED in attacker.error[0].value
    assert "principal" not in attacker.session_state

    owner = _session(monkeypatch, OWNER)
    _sign_in(owner, user["email"], PASSWORD)
    assert not owner.exception
    assert owner.session_state["principal"]["email"] == user["email"]


def _redis_or_skip(url: str = "redis://127.0.0.1:6379/15") -> str:
    import redis

    conn = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        conn.flushdb()  # database 15 is the tests' own
    except redis.exceptions.ConnectionError:
        pytest.skip("needs Redis at 127.0.0.1:6379")
    finally:
        conn.close()
    return url


def test_the_app_and_the_api_count_the_same_failures_in_redis(monkeypatch, settings, engine):
    shared = settings.model_copy(update={"redis_url": _redis_or_skip(), "login_max_failures": 2})
    monkeypatch.setattr(app.auth, "get_settings", lambda: shared)
    with TestClient(app=create_app(shared)) as api:
        user = signup(api, org="Shared Throttle Works")
        wrong = {"email": user["email"], "password": "wrong-password-2"}
        # One wrong password through the API, one through the app, from the same address.
        assert api.post("/api/v1/auth/login", json=wrong).status_code == 401
        tab = _session(monkeypatch, "testclient")  # the address the API saw
        _sign_in(tab, user["email"], "wrong-password-2")
        assert tab.error[0].value == "Invalid email or password."
        # Two failures between them: both now make that address wait, right password or not.
        refused = api.post("/api/v1/auth/login", json={**wrong, "password": PASSWORD})
        assert refused.status_code == 429
        again = _session(monkeypatch, "testclient")
        _sign_in(again, user["email"], PASSWORD)
        assert REFUSED in again.error[0].value
        # Another address is not held up.
        owner = _session(monkeypatch, OWNER)
        _sign_in(owner, user["email"], PASSWORD)
        assert owner.session_state["principal"]["email"] == user["email"]
    assert app.auth.login_throttle().store.__class__.__name__ == "CountingRedisStore"
