"""Fuzzing the API from its own OpenAPI schema with valid credentials, and thousands of
malformed ingest records: no 5xx, responses as documented, every 4xx in the problem shape,
nothing stored from bad records.

CI runs a bounded number of examples per operation (25), each within a deadline;
`make fuzz` is the long mode (CEI_FUZZ_EXAMPLES=1000), for a nightly job.
"""

import json
import math
import os
import random
import time
from datetime import timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from schemathesis.checks import CheckContext
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)
from sqlmodel import select

from api.main import create_app
from core import accounts, tokens
from core.db import session_scope
from core.models import IntegrationTokenCreate, Reading
from core.settings import get_settings
from tests.factories import bearer, make_site, make_token, signup

EXAMPLES = int(os.environ.get("CEI_FUZZ_EXAMPLES", "25"))
PROBLEM_FIELDS = {"status", "title", "detail", "code"}


def _app():
    # Generous limits: the fuzzer is not the subject of rate limiting here.
    base = get_settings().model_copy(
        update={"rate_limit_user_per_minute": 10**6, "rate_limit_token_per_minute": 10**6}
    )
    return create_app(base)


@pytest.fixture(name="credentials")
def credentials_fixture(settings, engine):
    """An admin signed in and an integration token of one organisation."""
    with session_scope(engine) as session:
        _user, org = accounts.signup(
            session,
            email="fuzz@plant.example",
            password="fuzzing-password-1",
            organization_name="Fuzz Works",
            settings=settings,
        )
        org_id = org.id
    with session_scope(engine) as session:
        pair = accounts.login(
            session, email="fuzz@plant.example", password="fuzzing-password-1", settings=settings
        )
        created = tokens.create_token(
            session, org_id=org_id, data=IntegrationTokenCreate(name="fuzz relay"), created_by=None
        )
    return {
        "user": {"Authorization": f"Bearer {pair.access_token}"},
        "token": {"Authorization": f"Bearer {created.token}"},
    }


def not_a_server_error(ctx: CheckContext, response, case) -> bool | None:
    if response.status_code >= 500:
        raise AssertionError(
            f"{case.method} {case.path} -> {response.status_code}: {response.text[:300]}"
        )
    return True


def errors_are_problems(ctx: CheckContext, response, case) -> bool | None:
    if 400 <= response.status_code < 500:
        assert response.headers.get("content-type", [""])[0].startswith(
            "application/problem+json"
        ), f"{case.method} {case.path} -> {response.status_code} is not problem+json"
        body = response.json()
        assert set(body) >= PROBLEM_FIELDS, f"{case.method} {case.path}: {body}"
        assert body["status"] == response.status_code
    return True


def fuzz_operation(strategy, label: str, cases: dict, credentials: dict, checks: list) -> None:
    @given(case=strategy)
    @hsettings(
        max_examples=EXAMPLES,
        deadline=timedelta(seconds=10),  # a request slower than this is a finding too
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case):
        cases[label] += 1
        case.call_and_validate(headers=credentials, checks=checks)

    fuzz()


def test_every_operation_survives_generated_requests(settings, engine, credentials):
    app = _app()
    schema = schemathesis.openapi.from_asgi("/api/docs/openapi.json", app)
    # The routes an integration token may call are fuzzed with the token as well.
    token_paths = {
        route.path
        for route in app.routes
        for handler in getattr(route, "route_handlers", ())
        if handler.opt.get("integration_token")
    }
    checks = [
        not_a_server_error,
        errors_are_problems,
        response_schema_conformance,
        content_type_conformance,
    ]
    cases: dict[str, int] = {}
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        cases[label] = 0
        fuzz_operation(operation.as_strategy(), label, cases, credentials["user"], checks)
        if operation.path in token_paths:
            cases[f"{label} (token)"] = 0
            fuzz_operation(
                operation.as_strategy(), f"{label} (token)", cases, credentials["token"], checks
            )
    assert len(cases) >= 35, sorted(cases)
    assert sum("(token)" in label for label in cases) >= 4, sorted(cases)
    assert all(n > 0 for n in cases.values()), cases
    print(  # noqa: T201
        f"fuzzed {sum(cases.values())} cases over {len(cases)} operations "
        f"in {time.monotonic() - started:.0f} s (most per operation: {max(cases.values())})"
    )


def _malformed_records(n: int, seed: int = 7) -> list:
    """Records each broken in one or two ways, none of them storable."""
    rng = random.Random(seed)
    good = {
        "site_id": "fuzz-site",
        "meter_id": "main-incomer",
        "timestamp_utc": "2025-11-01T00:00:00Z",
        "value": 10.0,
        "unit": "kWh",
    }
    breakers = [
        lambda r: r.pop(rng.choice(["site_id", "meter_id", "timestamp_utc", "value"])),
        lambda r: r.update(
            value=rng.choice([-1, -1e-9, "ten", None, [], {}, True, "NaN", math.nan])
        ),
        lambda r: r.update(value=rng.choice([math.inf, -math.inf, 1e400])),
        lambda r: r.update(timestamp_utc=rng.choice(
            ["2025-11-01 00:00:00", "2025-11-01T00:30:00Z", "2025-13-01T00:00:00Z", "yesterday",
             "2025-11-01T00:00:00+01:00", "", 1730419200, None, "2099-01-01T00:00:00Z"])),
        lambda r: r.update(unit=rng.choice(["MWh", "W", 3, "kWh/h"])),
        lambda r: r.update(site_id=rng.choice(["no-such-site", "", 42, "X" * 300])),
        lambda r: r.update(meter_id=rng.choice(["no-such-meter", "", None, "Ünïcode"])),
        lambda r: r.update(idempotency_key=rng.choice(["k" * 201, 5, ["k"]])),
    ]  # fmt: skip
    out: list = []
    for i in range(n):
        if i % 50 == 0:
            out.append(rng.choice(["a string", 3, None, [good], []]))  # not an object
            continue
        record = dict(good, timestamp_utc=f"2025-11-{1 + i % 28:02d}T{i % 24:02d}:00:00Z")
        for breaker in rng.sample(breakers, rng.choice([1, 2])):
            breaker(record)
        out.append(record)
    return out


def test_two_thousand_malformed_records_store_nothing(client, engine):
    user = signup(client, org="Malformed Works")
    make_site(client, user["headers"], "fuzz-site")
    token = bearer(make_token(client, user["headers"])["token"])
    records = _malformed_records(2000)
    codes: dict[str, int] = {}
    for i in range(0, len(records), 500):
        chunk = records[i : i + 500]
        # NaN and Infinity go out as the literals a careless relay would send.
        body_text = json.dumps(chunk)
        r = client.post(
            "/api/v1/timeseries/batch",
            content=body_text,
            headers={**token, "Content-Type": "application/json"},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["ingested"], body["failed"]) == (0, len(chunk))
        for e in body["errors"]:
            assert {"index", "code", "field", "message"} <= set(e) and e["message"]
            codes[e["code"]] = codes.get(e["code"], 0) + 1
        assert sorted(e["index"] for e in body["errors"]) == list(range(len(chunk)))
    with session_scope(engine) as session:
        assert session.exec(select(Reading)).all() == []
    assert len(codes) >= 9, codes  # broken in many different ways, each named
