"""Integration tokens: minted once, listed without secrets, scoped, revocable, expiring."""

from datetime import timedelta

import pytest
from litestar import Request, get
from litestar.testing import TestClient
from sqlmodel import select

from api.main import create_app
from core.db import session_scope, utcnow
from core.models import IntegrationToken, Role
from core.security import sha256_hex
from tests.factories import add_user, bearer, make_site, make_token, signup

TOKENS = "/api/v1/integration-tokens"


@get("/api/v1/_probe", opt={"integration_token": True}, sync_to_thread=False)
def probe(request: Request) -> dict:
    """A route that, like ingestion, admits integration tokens; echoes the principal."""
    p = request.user
    return {"org_id": p.org_id, "kind": p.kind, "site_ids": list(p.site_ids or [])}


@get("/elsewhere", sync_to_thread=False)
def elsewhere() -> dict:
    """A route outside /api/v1 that did not opt in: tokens must be refused here too."""
    return {"ok": True}


@pytest.fixture(name="probe_client")
def probe_client_fixture(settings, engine):
    app = create_app(settings)
    app.register(probe)
    app.register(elsewhere)
    with TestClient(app=app) as client:
        yield client


def test_create_shows_the_secret_once_and_stores_only_its_hash(client):
    admin = signup(client)
    created = make_token(client, admin["headers"], name="factory-scada-line1", expires_in_days=30)
    assert created["token"].startswith("cei_int_")
    assert created["token"].startswith(created["prefix"])
    assert created["status"] == "active"
    assert created["expires_at"] is not None

    listed = client.get(TOKENS, headers=admin["headers"]).json()
    assert listed["count"] == 1
    assert listed["data"][0]["prefix"] == created["prefix"]
    assert created["token"] not in client.get(TOKENS, headers=admin["headers"]).text
    assert "token" not in listed["data"][0]
    assert "hash" not in str(listed)
    with session_scope() as session:
        row = session.exec(select(IntegrationToken)).one()
        assert row.token_hash == sha256_hex(created["token"])
        assert created["token"] not in row.model_dump_json()


def test_token_reaches_integration_routes_only(probe_client):
    admin = signup(probe_client)
    secret = make_token(probe_client, admin["headers"])["token"]
    r = probe_client.get("/api/v1/_probe", headers=bearer(secret))
    assert r.status_code == 200
    assert r.json() == {"org_id": admin["org_id"], "kind": "integration", "site_ids": []}
    for path in ("/api/v1/sites", TOKENS, "/api/v1/auth/me", "/api/v1/org", "/elsewhere"):
        r = probe_client.get(path, headers=bearer(secret))
        assert r.status_code == 403, path
        assert r.json()["code"] == "token_scope"


def test_last_used_at_is_recorded(probe_client):
    admin = signup(probe_client)
    secret = make_token(probe_client, admin["headers"])["token"]
    assert (
        probe_client.get(TOKENS, headers=admin["headers"]).json()["data"][0]["last_used_at"] is None
    )
    probe_client.get("/api/v1/_probe", headers=bearer(secret))
    assert probe_client.get(TOKENS, headers=admin["headers"]).json()["data"][0]["last_used_at"]


def test_revoked_token_is_refused(probe_client):
    admin = signup(probe_client)
    created = make_token(probe_client, admin["headers"])
    r = probe_client.delete(f"{TOKENS}/{created['id']}", headers=admin["headers"])
    assert r.status_code == 204
    r = probe_client.get("/api/v1/_probe", headers=bearer(created["token"]))
    assert r.status_code == 401
    assert r.json()["code"] == "token_revoked"
    assert (
        probe_client.get(TOKENS, headers=admin["headers"]).json()["data"][0]["status"] == "revoked"
    )


def test_expired_token_is_refused(probe_client):
    admin = signup(probe_client)
    created = make_token(probe_client, admin["headers"], expires_in_days=1)
    with session_scope() as session:
        row = session.get(IntegrationToken, created["id"])
        row.expires_at = utcnow() - timedelta(seconds=1)
    r = probe_client.get("/api/v1/_probe", headers=bearer(created["token"]))
    assert r.status_code == 401
    assert r.json()["code"] == "token_expired"


def test_unknown_token_is_refused(probe_client):
    r = probe_client.get("/api/v1/_probe", headers=bearer("cei_int_" + "A" * 43))
    assert r.status_code == 401


def test_token_limited_to_sites_carries_its_scope(probe_client):
    admin = signup(probe_client)
    make_site(probe_client, admin["headers"], "site-22")
    make_site(probe_client, admin["headers"], "site-23")
    created = make_token(probe_client, admin["headers"], site_ids=["site-22"])
    assert created["site_ids"] == ["site-22"]
    r = probe_client.get("/api/v1/_probe", headers=bearer(created["token"]))
    assert r.json()["site_ids"] == ["site-22"]


def test_token_cannot_be_limited_to_another_orgs_site(client):
    a = signup(client, org="A")
    b = signup(client, org="B")
    make_site(client, a["headers"], "site-a")
    r = client.post(TOKENS, json={"name": "x", "site_ids": ["site-a"]}, headers=b["headers"])
    assert r.status_code == 400
    assert r.json()["code"] == "unknown_site"


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {"name": "x", "expires_in_days": 0},
        {"name": "x", "site_ids": []},
        {"name": "x", "scope": "all"},
    ],
)
def test_invalid_token_requests_are_400(client, body):
    admin = signup(client)
    assert client.post(TOKENS, json=body, headers=admin["headers"]).status_code == 400


@pytest.mark.parametrize("role", [Role.analyst, Role.viewer])
def test_only_admins_manage_tokens(client, role):
    admin = signup(client)
    created = make_token(client, admin["headers"])
    other = add_user(client, org_id=admin["org_id"], role=role)
    assert client.post(TOKENS, json={"name": "x"}, headers=other["headers"]).status_code == 403
    assert client.get(TOKENS, headers=other["headers"]).status_code == 403
    r = client.delete(f"{TOKENS}/{created['id']}", headers=other["headers"])
    assert r.status_code == 403


@pytest.mark.parametrize("token_id", ["0", "99999999999999999999", "-1"])
def test_out_of_range_token_id_is_a_client_error(client, token_id):
    admin = signup(client)
    r = client.delete(f"{TOKENS}/{token_id}", headers=admin["headers"])
    assert 400 <= r.status_code < 500


def test_revoking_another_orgs_token_is_404_and_leaves_it_working(probe_client):
    a = signup(probe_client, org="A")
    b = signup(probe_client, org="B")
    created = make_token(probe_client, a["headers"])
    assert probe_client.delete(f"{TOKENS}/{created['id']}", headers=b["headers"]).status_code == 404
    assert probe_client.get("/api/v1/_probe", headers=bearer(created["token"])).status_code == 200
