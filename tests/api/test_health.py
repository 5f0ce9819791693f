"""Health endpoints, the one error shape, limits and headers."""

import pytest
from litestar import get
from litestar.testing import TestClient

from api.main import create_app
from tests.factories import signup

PROBLEM = "application/problem+json"


def test_health_needs_no_auth_and_no_database(settings, tmp_path):
    dead = settings.model_copy(update={"database_url": "postgresql+psycopg://nobody@127.0.0.1:1/x"})
    with TestClient(app=create_app(dead)) as client:
        r = client.get("/api/v1/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_health_db_is_200_when_the_database_answers(client, settings):
    r = client.get("/api/v1/health/db")
    assert r.status_code == 200
    assert r.json()["database"] == ("postgresql" if settings.is_postgres else "sqlite")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://nobody@127.0.0.1:1/nowhere",
        "sqlite:////proc/cei-cannot-be-here/cei.db",
    ],
)
def test_health_db_is_503_with_a_reason_when_unreachable(settings, url):
    dead = settings.model_copy(update={"database_url": url})
    with TestClient(app=create_app(dead)) as client:
        r = client.get("/api/v1/health/db")
    assert r.status_code == 503
    assert r.headers["content-type"].startswith(PROBLEM)
    assert r.headers["retry-after"]
    body = r.json()
    assert body["code"] == "database_unavailable"
    reason = body["detail"].split("unreachable: ")[1]
    assert reason in ("connection refused", "database file cannot be opened")
    assert "127.0.0.1" not in r.text and "nobody" not in r.text


def test_routes_needing_the_database_are_503_not_500_when_it_is_down(settings):
    dead = settings.model_copy(update={"database_url": "postgresql+psycopg://nobody@127.0.0.1:1/x"})
    with TestClient(app=create_app(dead)) as client:
        r = client.post("/api/v1/auth/login", json={"email": "a@b.c", "password": "whatever-pw"})
    assert r.status_code == 503
    assert r.json()["code"] == "database_unavailable"


def test_unexpected_error_is_a_500_problem_without_internals(settings, engine):
    @get("/api/v1/_boom", exclude_from_auth=True, sync_to_thread=False)
    def boom() -> None:
        raise RuntimeError("secret internals at /srv/cei/core.py line 42")

    app = create_app(settings)
    app.register(boom)
    with TestClient(app=app, raise_server_exceptions=False) as client:
        r = client.get("/api/v1/_boom")
    assert r.status_code == 500
    assert r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["code"] == "internal_error"
    assert "secret internals" not in r.text and "Traceback" not in r.text


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("GET", "/api/v1/no-such-route", 404),
        ("DELETE", "/api/v1/health", 405),
    ],
)
def test_framework_errors_use_the_same_shape(client, method, path, status):
    r = client.request(method, path)
    assert r.status_code == status
    assert r.headers["content-type"].startswith(PROBLEM)
    assert {"status", "title", "detail", "code"} <= set(r.json())


def test_malformed_json_is_400_problem(client):
    r = client.post(
        "/api/v1/auth/login", content=b'{"email": ', headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.headers["content-type"].startswith(PROBLEM)


def test_oversized_body_is_413_problem(settings, engine):
    small = settings.model_copy(update={"max_body_bytes": 2048})
    with TestClient(app=create_app(small)) as client:
        r = client.post("/api/v1/auth/login", json={"email": "a@b.c", "password": "x" * 5000})
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large"
    assert "larger than this server accepts" in r.json()["detail"]


@pytest.mark.parametrize("path", ["/api/v1/health", "/api/v1/sites", "/api/v1/nope"])
def test_security_headers_on_every_response_and_no_cors_by_default(client, path):
    r = client.get(path, headers={"Origin": "https://evil.example"})
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["cache-control"] == "no-store"
    assert "access-control-allow-origin" not in r.headers


def test_openapi_documents_the_routes(client):
    spec = client.get("/api/docs/openapi.json").json()
    for path in (
        "/api/v1/health",
        "/api/v1/health/db",
        "/api/v1/auth/login",
        "/api/v1/integration-tokens",
        "/api/v1/sites/{site_id}/meters",
        "/api/v1/sites/mapping.csv",
    ):
        assert path in spec["paths"], path
    assert client.get("/api/docs/swagger").status_code == 200


@pytest.mark.parametrize(
    "path", ["/api/v1/timeseries/summary?site_id=%00%C2%90", "/api/v1/sites/site%00x/meters"]
)
def test_nul_characters_in_a_request_are_a_4xx_problem_on_every_database(client, path):
    """PostgreSQL refuses NUL in text: found by the fuzzer as a 500 on /timeseries/summary."""
    user = signup(client)
    r = client.get(path, headers=user["headers"])
    assert 400 <= r.status_code < 500, r.text
    assert r.headers["content-type"].startswith(PROBLEM)


def test_nul_characters_in_a_body_are_never_a_500(client):
    user = signup(client)
    r = client.post(
        "/api/v1/sites",
        json={"site_id": "site-nul", "name": "Plant\u0000A", "timezone": "Europe/Rome"},
        headers=user["headers"],
    )
    assert r.status_code in (201, 400), r.text
    if r.status_code == 400:
        assert r.json()["code"] == "invalid_value"
