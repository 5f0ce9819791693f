"""Every route, called by another org's user and token, reveals and changes nothing of org A.

The routes come from the application's router, so a new route is covered without editing this.
"""

import re

import pytest
from litestar.routes import HTTPRoute
from litestar.testing import TestClient

from api.main import create_app
from core.alerts import scan_org
from tests.factories import bearer, make_site, make_token, signup

# A valid body per write route, so a refusal is about ownership, not about a malformed request.
A_RECORD = {
    "site_id": "site-a",
    "meter_id": "compressor-bank",
    "timestamp_utc": "2025-12-01T00:00:00Z",
    "value": 666.0,
}
# Every route gets these; each takes the ones it declares, so org A's ids reach every reader.
QUERY = {
    "site_id": "site-a",
    "meter_id": "compressor-bank",
    "start": "2025-11-30T00:00:00Z",
    "end": "2025-12-02T00:00:00Z",
    "window_hours": "48",
}
BODIES = {
    ("POST", "/api/v1/timeseries/batch"): [A_RECORD],
    ("POST", "/api/v1/timeseries/upload"): (
        "site_id,meter_id,timestamp_utc,value\nsite-a,compressor-bank,2025-12-01T00:00:00Z,666\n"
    ),
    ("POST", "/api/v1/sites/{site_id}/meters"): {"meter_id": "leak-meter", "name": "x"},
    ("PATCH", "/api/v1/sites/{site_id}"): {"name": "hijacked"},
    ("PATCH", "/api/v1/sites/{site_id}/meters/{meter_id}"): {"name": "hijacked"},
    ("PATCH", "/api/v1/alerts/{alert_id}"): {"status": "dismissed", "notes": "hijacked"},
}


def _routes(app):
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or not route.path.startswith("/api/v1"):
            continue
        for method, entry in route.route_handler_map.items():
            if method in ("HEAD", "OPTIONS"):
                continue
            handler = entry[0] if isinstance(entry, tuple) else entry
            yield method, re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path), handler


@pytest.fixture(name="world")
def world_fixture(client):
    a = signup(client, org="Org A")
    make_site(client, a["headers"], "site-a", meters=("main-incomer", "compressor-bank"))
    a_token = make_token(client, a["headers"], name="a-relay")
    a_data = [
        dict(A_RECORD, value=4321.125, timestamp_utc=f"2025-12-01T0{h}:00:00Z") for h in range(3)
    ]
    assert (
        client.post("/api/v1/timeseries/batch", json=a_data, headers=a["headers"]).json()[
            "ingested"
        ]
        == 3
    )
    # Silent since those hours: the scan raises a data-gap alert for org A, triaged by org A.
    scan_org(client.app.state.engine, org_id=a["org_id"])
    alerts = client.get("/api/v1/alerts", headers=a["headers"]).json()["data"]
    assert [x["rule"] for x in alerts] == ["data-gap"]
    note = {"status": "acknowledged", "notes": "Org A is on it"}
    assert client.patch(
        f"/api/v1/alerts/{alerts[0]['id']}", json=note, headers=a["headers"]
    ).is_success
    b = signup(client, org="Org B")
    make_site(client, b["headers"], "site-b")
    b_token = make_token(client, b["headers"], name="b-relay")
    return {"a": a, "a_token": a_token, "b": b, "b_token": b_token, "alert_id": alerts[0]["id"]}


def _fill(path: str, world) -> str:
    values = {
        "site_id": "site-a",
        "meter_id": "compressor-bank",
        "token_id": str(world["a_token"]["id"]),
        "alert_id": str(world["alert_id"]),
    }
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values[m.group(1)], path)


def _snapshot(client: TestClient, headers) -> dict:
    return {
        "sites": client.get("/api/v1/sites", headers=headers).json(),
        "meters": client.get("/api/v1/sites/site-a/meters", headers=headers).json(),
        "tokens": client.get("/api/v1/integration-tokens", headers=headers).json(),
        "org": client.get("/api/v1/org", headers=headers).json(),
        "mapping": client.get("/api/v1/sites/mapping.csv", headers=headers).text,
        "export": client.get("/api/v1/timeseries/export?site_id=site-a", headers=headers).text,
        "health": client.get("/api/v1/timeseries/ingest_health", headers=headers).json()["meters"],
        "alerts": client.get("/api/v1/alerts", headers=headers).json(),
    }


def test_every_route_hides_org_a_from_org_b(client, world, settings):
    app = create_app(settings)
    before = _snapshot(client, world["a"]["headers"])
    # What only org A's data contains (404 messages may echo the id the caller sent).
    a_markers = [
        "Plant site-a",
        "Compressor Bank",
        "Org A",
        "4321.125",  # org A's readings: a value no timestamp or token can contain by chance
        world["a"]["email"],
        world["a_token"]["prefix"],
        "a-relay",
    ]
    callers = {"user": world["b"]["headers"], "token": bearer(world["b_token"]["token"])}
    checked = 0
    for method, template, handler in _routes(app):
        if handler.opt.get("exclude_from_auth") and "{" not in template:
            continue  # public routes (health, login, signup) hold no org data
        url = _fill(template, world)
        for who, headers in callers.items():
            body = BODIES.get((method, template))
            send = {"content": body.encode()} if isinstance(body, str) else {"json": body}
            r = client.request(method, url, headers=headers, params=QUERY, **send)
            assert r.status_code < 500, f"{who} {method} {url} -> {r.status_code}"
            leaked = [m for m in a_markers if m in r.text]
            assert not leaked, f"{who} {method} {url} leaked {leaked}: {r.text[:200]}"
            refused = r.status_code in (403, 404)
            rejected_records = (
                r.status_code == 200 and method == "POST" and r.json().get("ingested") == 0
            )
            if "{" in template or "site_id" in str(handler.parsed_fn_signature.parameters):
                assert refused or rejected_records, f"{who} {method} {url} -> {r.status_code}"
            checked += 1
    assert checked >= 20
    assert _snapshot(client, world["a"]["headers"]) == before


def test_list_routes_show_only_the_callers_own_rows(client, world):
    b = world["b"]["headers"]
    assert [s["site_id"] for s in client.get("/api/v1/sites", headers=b).json()["data"]] == [
        "site-b"
    ]
    assert [
        t["name"] for t in client.get("/api/v1/integration-tokens", headers=b).json()["data"]
    ] == ["b-relay"]
    assert "site-a" not in client.get("/api/v1/sites/mapping.csv", headers=b).text
    assert client.get("/api/v1/org", headers=b).json()["name"] == "Org B"
