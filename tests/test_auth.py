"""Signup, login, JWT verification and refresh rotation through the real and test-only routes."""

from datetime import timedelta

import jwt
import pytest
from litestar.testing import TestClient
from sqlmodel import select

from api.main import create_app
from app.auth import sign_in
from core.db import session_scope, utcnow
from core.models import User
from core.security import encode_access_token
from core.settings import Settings
from tests.factories import PASSWORD, bearer, login, signup, unique_email

ME = "/api/v1/auth/me"


def _claims(settings: Settings, **overrides) -> dict:
    now = utcnow()
    claims = {
        "sub": "1",
        "org": 1,
        "role": "admin",
        "typ": "access",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.mark.parametrize("prefix", ["/api/v1/auth", "/api/v1/auth-tests"])
def test_signup_login_and_me_work_on_real_and_test_routes(client, prefix):
    email = unique_email()
    r = client.post(
        f"{prefix}/signup",
        json={"email": email, "password": PASSWORD, "organization_name": "Plant"},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["user"]["role"] == "admin"
    assert body["organization"]["name"] == "Plant"
    assert "password" not in r.text and "hash" not in r.text

    r = client.post(f"{prefix}/login", json={"email": email.upper(), "password": PASSWORD})
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 15 * 60
    me = client.get(ME, headers=bearer(tokens))
    assert me.status_code == 200
    assert me.json()["user"]["email"] == email
    assert me.json()["organization"]["id"] == body["organization"]["id"]


def test_test_only_routes_are_not_mounted_by_default(settings, engine):
    off = settings.model_copy(update={"enable_test_auth_routes": False})
    with TestClient(app=create_app(off)) as client:
        r = client.post(
            "/api/v1/auth-tests/signup",
            json={"email": unique_email(), "password": PASSWORD, "organization_name": "x"},
        )
        assert r.status_code == 404
        assert "/api/v1/auth-tests/signup" not in client.get("/api/docs/openapi.json").text
    assert Settings.model_fields["enable_test_auth_routes"].default is False


def test_signup_with_taken_email_is_409_case_insensitive(client):
    user = signup(client)
    r = client.post(
        "/api/v1/auth/signup",
        json={"email": user["email"].upper(), "password": PASSWORD, "organization_name": "Other"},
    )
    assert r.status_code == 409
    assert r.json()["code"] == "email_taken"


def test_wrong_password_and_unknown_email_get_the_same_401(client):
    user = signup(client)
    wrong = client.post(
        "/api/v1/auth/login", json={"email": user["email"], "password": "nope-nope-nope"}
    )
    unknown = client.post(
        "/api/v1/auth/login", json={"email": "ghost@factory.example", "password": PASSWORD}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"] == "invalid email or password"
    assert wrong.headers["content-type"].startswith("application/problem+json")


def test_an_unknown_email_still_costs_a_bcrypt_check(client, settings, monkeypatch):
    """Timing-safe login: an unknown email is checked against a dummy bcrypt hash, so it takes
    as long as a wrong password for a real one."""
    import core.accounts
    from core.security import dummy_password_hash, verify_password

    checked: list[str] = []

    def counting(password: str, password_hash: str) -> bool:
        checked.append(password_hash)
        return verify_password(password, password_hash)

    user = signup(client)
    monkeypatch.setattr(core.accounts, "verify_password", counting)
    unknown = {"email": "ghost@factory.example", "password": PASSWORD}
    assert client.post("/api/v1/auth/login", json=unknown).status_code == 401
    assert checked == [dummy_password_hash(settings.bcrypt_rounds)]
    assert checked[0].startswith("$2b$")
    wrong = {"email": user["email"], "password": "nope-nope-nope"}
    assert client.post("/api/v1/auth/login", json=wrong).status_code == 401
    assert len(checked) == 2 and checked[1] != checked[0] and checked[1].startswith("$2b$")


def test_token_secrets_are_compared_with_hmac_compare_digest(client, monkeypatch):
    import hmac

    from core.security import sha256_hex
    from tests.factories import make_token

    real = hmac.compare_digest
    compared: list[tuple] = []

    def recording(a, b):
        compared.append((a, b))
        return real(a, b)

    user = signup(client)
    token = make_token(client, user["headers"])["token"]
    monkeypatch.setattr(hmac, "compare_digest", recording)
    r = client.get("/api/v1/timeseries/ingest_health", headers=bearer(token))
    assert r.status_code == 200
    assert (sha256_hex(token).encode(),) * 2 in compared  # the integration token
    compared.clear()
    refresh = user["tokens"]["refresh_token"]
    r = client.post("/api/v1/auth/refresh", json={"refresh_token": refresh})
    assert r.status_code == 200
    assert (sha256_hex(refresh).encode(),) * 2 in compared  # the refresh token


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/auth/signup",
        "/api/v1/auth/login",
        "/api/v1/auth-tests/signup",
        "/api/v1/auth-tests/login",
    ],
)
def test_password_over_72_bytes_is_a_clear_400(client, path):
    long_pw = "é" * 37  # 37 characters, 74 bytes in UTF-8
    body = {"email": unique_email(), "password": long_pw}
    if path.endswith("signup"):
        body["organization_name"] = "Org"
    r = client.post(path, json=body)
    assert r.status_code == 400, r.text
    assert "72 bytes" in r.text


def test_password_of_exactly_72_bytes_works(client):
    pw = "p" * 72
    email = unique_email()
    r = client.post(
        "/api/v1/auth/signup", json={"email": email, "password": pw, "organization_name": "O"}
    )
    assert r.status_code == 201
    assert login(client, email, pw)["access_token"]


def test_short_password_is_refused_at_signup(client, settings):
    r = client.post(
        "/api/v1/auth/signup",
        json={"email": unique_email(), "password": "short", "organization_name": "O"},
    )
    assert r.status_code == 400
    assert r.json()["code"] == "password_too_short"
    assert str(settings.password_min_length) in r.json()["detail"]


def test_bcrypt_cost_defaults_to_12(settings):
    assert Settings.model_fields["bcrypt_rounds"].default == 12


def test_password_with_surrounding_spaces_is_kept_byte_for_byte(client):
    email = unique_email()
    spaced = "  spaced-password  "
    r = client.post(
        "/api/v1/auth/signup", json={"email": email, "password": spaced, "organization_name": "O"}
    )
    assert r.status_code == 201
    assert login(client, email, spaced)["access_token"]
    r = client.post("/api/v1/auth/login", json={"email": email, "password": spaced.strip()})
    assert r.status_code == 401
    # The app signs in through core with the same users: the same password works there too.
    assert sign_in(email, spaced)["email"] == email


def test_password_under_the_minimum_is_400_at_login_too(client):
    user = signup(client)
    r = client.post("/api/v1/auth/login", json={"email": user["email"], "password": "short"})
    assert r.status_code == 400
    assert r.json()["code"] == "password_too_short"


def test_stored_password_is_a_bcrypt_hash(client, settings):
    user = signup(client)
    with session_scope() as session:
        row = session.exec(select(User).where(User.email == user["email"])).one()
        assert row.password_hash.startswith(f"$2b${settings.bcrypt_rounds:02d}$")
        assert PASSWORD not in row.password_hash


def test_missing_or_malformed_authorization_is_401(client):
    assert client.get(ME).status_code == 401
    assert client.get(ME, headers={"Authorization": "Basic abc"}).status_code == 401
    r = client.get(ME, headers={"Authorization": "Bearer not.a.jwt"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"


def test_tampered_token_is_401(client):
    user = signup(client)
    header, payload, sig = user["tokens"]["access_token"].split(".")
    tampered = f"{header}.{payload}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}"
    assert client.get(ME, headers=bearer(tampered)).status_code == 401


def test_expired_token_is_401(client, settings):
    user = signup(client)
    me = client.get(ME, headers=user["headers"]).json()["user"]
    old = utcnow() - timedelta(hours=2)
    token = encode_access_token(
        settings, user_id=me["id"], org_id=me["org_id"], role="admin", now=old
    )
    r = client.get(ME, headers=bearer(token))
    assert r.status_code == 401
    assert r.json()["code"] == "token_expired"


def test_alg_none_token_is_401(client, settings):
    user = signup(client)
    me = client.get(ME, headers=user["headers"]).json()["user"]
    claims = _claims(settings, sub=str(me["id"]), org=me["org_id"])
    token = jwt.encode(claims, key=None, algorithm="none")
    assert client.get(ME, headers=bearer(token)).status_code == 401


@pytest.mark.parametrize(
    "override",
    [
        {"aud": "someone-else"},
        {"iss": "evil"},
        {"exp": None},
        {"sub": None},
        {"iat": None},
        {"typ": "refresh"},
    ],
)
def test_token_with_wrong_or_missing_claims_is_401(client, settings, override):
    user = signup(client)
    me = client.get(ME, headers=user["headers"]).json()["user"]
    claims = _claims(settings, sub=str(me["id"]), org=me["org_id"])
    claims.update(override)
    claims = {k: v for k, v in claims.items() if v is not None}
    token = jwt.encode(claims, settings.signing_secret, algorithm="HS256")
    assert client.get(ME, headers=bearer(token)).status_code == 401


def test_token_signed_with_another_algorithm_is_401(client, settings):
    user = signup(client)
    me = client.get(ME, headers=user["headers"]).json()["user"]
    token = jwt.encode(
        _claims(settings, sub=str(me["id"]), org=me["org_id"]),
        settings.signing_secret,
        algorithm="HS512",
    )
    assert client.get(ME, headers=bearer(token)).status_code == 401


def test_refresh_rotates_and_reuse_revokes_the_chain(client):
    user = signup(client)
    first = user["tokens"]["refresh_token"]
    r = client.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert r.status_code == 200
    second = r.json()
    assert second["refresh_token"] != first
    assert client.get(ME, headers=bearer(second)).status_code == 200

    replay = client.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert replay.status_code == 401
    assert replay.json()["code"] == "token_reused"
    # The thief's replay also cost the legitimate holder the session: log in again.
    r = client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert r.status_code == 401
    assert r.json()["code"] == "token_revoked"


def test_refresh_with_unknown_token_is_401(client):
    r = client.post("/api/v1/auth/refresh", json={"refresh_token": "cei_rt_made-up"})
    assert r.status_code == 401


def test_logout_revokes_the_refresh_token(client):
    user = signup(client)
    refresh = user["tokens"]["refresh_token"]
    assert client.post("/api/v1/auth/logout", json={"refresh_token": refresh}).status_code == 204
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": refresh}).status_code == 401


def test_deactivated_user_is_locked_out_at_once(client):
    user = signup(client)
    with session_scope() as session:
        row = session.exec(select(User).where(User.email == user["email"])).one()
        row.is_active = False
    assert client.get(ME, headers=user["headers"]).status_code == 401
    r = client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert r.status_code == 401
    r = client.post("/api/v1/auth/refresh", json={"refresh_token": user["tokens"]["refresh_token"]})
    assert r.status_code == 401


def test_signup_body_with_unknown_field_or_bad_email_is_400(client):
    r = client.post(
        "/api/v1/auth/signup",
        json={
            "email": unique_email(),
            "password": PASSWORD,
            "organization_name": "O",
            "role": "admin",
        },
    )
    assert r.status_code == 400
    r = client.post(
        "/api/v1/auth/signup",
        json={"email": "not-an-email", "password": PASSWORD, "organization_name": "O"},
    )
    assert r.status_code == 400
    assert r.json()["errors"][0]["key"] == "email"
