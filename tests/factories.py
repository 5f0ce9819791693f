"""Test data made through the real code paths: plain functions, no mocks."""

import itertools
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from litestar.testing import TestClient

from core import accounts
from core.accounts import Principal
from core.db import session_scope
from core.ingestion import ingest_records
from core.models import Role
from core.settings import get_settings

PASSWORD = "correct-horse-battery"
_counter = itertools.count(1)


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}{next(_counter)}@factory.example"


def signup(client: TestClient, *, org: str = "Org", email: str | None = None) -> dict:
    """Sign up through the API and log in; returns {email, org_id, headers, tokens}."""
    email = email or unique_email()
    r = client.post(
        "/api/v1/auth/signup",
        json={"email": email, "password": PASSWORD, "organization_name": org},
    )
    assert r.status_code == 201, r.text
    org_id = r.json()["organization"]["id"]
    tokens = login(client, email)
    return {"email": email, "org_id": org_id, "tokens": tokens, "headers": bearer(tokens)}


def login(client: TestClient, email: str, password: str = PASSWORD) -> dict:
    r = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return r.json()


def bearer(tokens_or_token: dict | str) -> dict:
    token = (
        tokens_or_token["access_token"] if isinstance(tokens_or_token, dict) else tokens_or_token
    )
    return {"Authorization": f"Bearer {token}"}


def add_user(client: TestClient, *, org_id: int, role: Role) -> dict:
    """A second user in an existing org, logged in."""
    email = unique_email(role.value)
    with session_scope() as session:
        accounts.create_user(
            session,
            org_id=org_id,
            email=email,
            password=PASSWORD,
            role=role,
            settings=get_settings(),
        )
    return {"email": email, "headers": bearer(login(client, email))}


def make_site(
    client: TestClient,
    headers: dict,
    site_id: str,
    *,
    meters=("main-incomer",),
    timezone: str = "Europe/Rome",
) -> None:
    r = client.post(
        "/api/v1/sites",
        json={"site_id": site_id, "name": f"Plant {site_id}", "timezone": timezone},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    for meter_id in meters:
        kind = "main_incomer" if meter_id == "main-incomer" else "sub_meter"
        r = client.post(
            f"/api/v1/sites/{site_id}/meters",
            json={"meter_id": meter_id, "name": meter_id.replace("-", " ").title(), "kind": kind},
            headers=headers,
        )
        assert r.status_code == 201, r.text


def make_token(client: TestClient, headers: dict, **body) -> dict:
    r = client.post("/api/v1/integration-tokens", json={"name": "relay", **body}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def hourly_records(
    site_id: str, meter_id: str, start, hours: int, value=lambda i: 100.0 + i, skip=()
) -> list[dict]:
    """Hour-beginning kWh records from `start` (aware UTC), leaving out the indexes in `skip`."""
    from datetime import timedelta

    out = []
    for i in range(hours):
        if i in skip:
            continue
        ts = (start + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        out.append(
            {
                "site_id": site_id,
                "meter_id": meter_id,
                "timestamp_utc": ts,
                "value": value(i),
                "unit": "kWh",
                "idempotency_key": f"{site_id}-{meter_id}-{ts}",
            }
        )
    return out


PLANT_TZ = "Europe/Rome"
PLANT_END = datetime(2026, 11, 30, tzinfo=UTC)  # a Monday, 01:00 in Rome
WEEKS = 6
NIGHTS = (1, 2, 3)  # Tuesday, Wednesday and Thursday nights of the last week
NIGHT_EXTRA = 40.0


def plant_series(nights=NIGHTS) -> tuple[pd.DatetimeIndex, dict[str, np.ndarray], float]:
    """Compressor and main incomer; the compressor idles at +40 kWh on some nights of the last
    week. Returns the index, the series and the injected kWh."""
    index = pd.date_range(PLANT_END - timedelta(weeks=WEEKS), PLANT_END, freq="h", inclusive="left")
    local = index.tz_convert(PLANT_TZ)
    rng = np.random.default_rng(7)
    shift = (local.day_of_week < 5) & (local.hour >= 6) & (local.hour < 22)
    compressor = np.where(shift, 50.0, 8.0) * (1 + rng.normal(0, 0.02, len(index)))
    last_week = index >= PLANT_END - timedelta(weeks=1)
    # A night belongs to the weekday it starts on: 22:00 that day to 06:00 the next.
    night_of = np.where(local.hour >= 22, local.day_of_week, (local.day_of_week - 1) % 7)
    waste = last_week & ~shift & np.isin(night_of, nights) & ((local.hour >= 22) | (local.hour < 6))
    compressor = compressor + np.where(waste, NIGHT_EXTRA, 0.0)
    main = compressor + np.where(shift, 100.0, 20.0) * (1 + rng.normal(0, 0.02, len(index)))
    return index, {"compressor-bank": compressor, "main-incomer": main}, NIGHT_EXTRA * waste.sum()


def ingest_series(engine, org_id: int, site_id: str, meter_id: str, index, values, skip=()) -> None:
    records = [
        {
            "site_id": site_id,
            "meter_id": meter_id,
            "timestamp_utc": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "value": round(float(v), 3),
        }
        for i, (ts, v) in enumerate(zip(index, values, strict=True))
        if i not in skip
    ]
    principal = Principal(org_id=org_id, role=Role.admin, kind="user")
    with session_scope(engine) as session:
        result = ingest_records(session, principal=principal, records=records)
    assert result.failed == 0


def plant_org(client, engine, org: str) -> dict:
    """A new org with the plant site, its main incomer and compressor, and `plant_series`
    stored; the signup's fields plus `injected` (the kWh of waste in the series)."""
    a = signup(client, org=org)
    make_site(client, a["headers"], "plant", meters=("main-incomer", "compressor-bank"))
    index, series, injected = plant_series()
    for meter_id, values in series.items():
        ingest_series(engine, a["org_id"], "plant", meter_id, index, values)
    return {**a, "injected": injected}
