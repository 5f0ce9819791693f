"""Secrets stay secret: passwords never in logs or answers, a token's plaintext only in its
creation answer, CORS only for configured origins."""

import logging
import re

from litestar.routes import HTTPRoute
from litestar.testing import TestClient

from api.main import create_app
from tests.factories import PASSWORD, make_site, make_token, signup


def test_passwords_never_reach_the_logs_or_the_answers(client, caplog):
    caplog.set_level(logging.DEBUG)
    user = signup(client, org="Quiet Works")
    answers = [
        client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD}),
        client.post(
            "/api/v1/auth/login", json={"email": user["email"], "password": "wrong-Pa55word"}
        ),
        client.get("/api/v1/auth/me", headers=user["headers"]),
    ]
    for text in [caplog.text, *(a.text for a in answers)]:
        assert PASSWORD not in text and "wrong-Pa55word" not in text
        assert not re.search(r"\$2[aby]\$\d\d\$", text)  # no bcrypt hash either


def test_a_token_plaintext_appears_only_in_its_creation_answer(client, settings):
    user = signup(client, org="Tight Works")
    make_site(client, user["headers"], "tight")
    created = make_token(client, user["headers"], name="relay")
    secret = created["token"]
    seen = []
    app = create_app(settings)
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or "{" in route.path:
            continue
        if "GET" in route.route_handler_map and route.path.startswith("/api/v1"):
            r = client.get(route.path, headers=user["headers"], params={"site_id": "tight"})
            seen.append(route.path)
            assert secret not in r.text and secret[8:] not in r.text, route.path
    assert "/api/v1/integration-tokens" in seen and len(seen) >= 10
    listed = client.get("/api/v1/integration-tokens", headers=user["headers"]).json()["data"]
    assert set(listed[0]) >= {"prefix", "status"} and "token" not in listed[0]
    assert "token_hash" not in listed[0]


def test_cors_answers_only_configured_origins(settings, engine):
    configured = settings.model_copy(update={"cors_origins": ["https://cei.example.com"]})
    with TestClient(app=create_app(configured)) as client:
        ok = client.options(
            "/api/v1/health",
            headers={"Origin": "https://cei.example.com", "Access-Control-Request-Method": "GET"},
        )
        assert ok.headers.get("access-control-allow-origin") == "https://cei.example.com"
        other = client.options(
            "/api/v1/health",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert other.headers.get("access-control-allow-origin") != "https://evil.example"
