"""Fuzzing the API from its own OpenAPI schema with valid credentials, and thousands of
malformed ingest records: no 5xx, responses as documented, every 4xx in the problem shape,
nothing stored from bad records.

Two passes over every operation: positive (requests the schema allows) and negative (requests
it forbids: wrong types, missing or out-of-range fields, bodies that do not match). CI runs a
bounded number of cases per operation (25 positive, 10 negative), each within a deadline;
`make fuzz` is the long mode (CEI_FUZZ_EXAMPLES=1000 CEI_FUZZ_NEGATIVE_EXAMPLES=1000, for a
nightly job): hypothesis is re-run for an operation until it has sent that many cases, and the
cases and answers per operation are printed.
"""

import json
import logging
import math
import os
import random
import time
from collections import Counter
from datetime import timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
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
NEGATIVE_EXAMPLES = int(os.environ.get("CEI_FUZZ_NEGATIVE_EXAMPLES", "10"))
PROBLEM_FIELDS = {"status", "title", "detail", "code"}


def _app():
    # Generous limits: the fuzzer is not the subject of rate limiting here (tests/api/
    # test_limits.py is), and a long run must not turn into a run of 429s.
    base = get_settings().model_copy(
        update={
            "rate_limit_user_per_minute": 10**7,
            "rate_limit_token_per_minute": 10**7,
            "rate_limit_anonymous_per_minute": 10**7,
            "login_max_failures": 100,
            "login_lockout_seconds": 0.001,
            "login_lockout_max_seconds": 0.001,
            "login_max_failures_per_email": 10**7,
        }
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


def fuzz_operation(
    strategy, label: str, seen: dict[str, Counter], credentials: dict, checks: list, target: int
) -> None:
    """Send at least `target` generated cases. Hypothesis stops early when an operation's
    inputs are few (or exhausted), so it is run again, with fresh randomness, until the count is
    reached; each run sends at least one case, so `target` runs are always enough. An operation
    whose schema allows no invalid request (only free-text path parameters) sends none in the
    negative pass."""
    statuses = seen.setdefault(label, Counter())

    for _ in range(target):
        sent = statuses.total()
        if sent >= target:
            return

        @given(case=strategy)
        @hsettings(
            max_examples=target - sent,
            deadline=timedelta(seconds=10),  # a request slower than this is a finding too
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def fuzz(case):
            response = case.call_and_validate(headers=credentials, checks=checks)
            statuses[response.status_code] += 1

        try:
            fuzz()
        except Unsatisfiable:
            if statuses.total() == sent:  # no case can be generated: nothing more to send
                return


def test_every_operation_survives_generated_requests(settings, engine, credentials, caplog):
    caplog.set_level(logging.WARNING, logger="httpx")  # a line per request drowns the report
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
    seen: dict[str, Counter] = {}
    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    # Deletions last: a generated DELETE may revoke the fuzzer's own integration token.
    operations.sort(key=lambda op: op.method.upper() == "DELETE")
    for operation in operations:
        name = f"{operation.method.upper()} {operation.path}"
        who = [("", credentials["user"])]
        if operation.path in token_paths:
            who.append((" (token)", credentials["token"]))
        modes = [(GenerationMode.POSITIVE, EXAMPLES), (GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES)]
        for mode, target in modes:
            strategy = operation.as_strategy(generation_mode=mode)
            for suffix, headers in who:
                label = f"{name}{suffix} [{mode.value}]"
                fuzz_operation(strategy, label, seen, headers, checks, target)

    counts = {label: statuses.total() for label, statuses in seen.items()}
    report = "\n".join(
        f"  {counts[label]:6d}  {label}  {dict(sorted(seen[label].items()))}"
        for label in sorted(seen)
    )
    print(  # noqa: T201
        f"\nfuzzed {sum(counts.values())} cases over {len(counts)} operation passes "
        f"in {time.monotonic() - started:.0f} s:\n{report}"
    )
    positive = [label for label in counts if label.endswith("[positive]")]
    negative = [label for label in counts if label.endswith("[negative]") and counts[label]]
    # Without a query or a body, a request with free-text path parameters cannot be invalid.
    assert len(positive) >= 45 and len(negative) >= 30, sorted(counts)
    assert sum("(token)" in label for label in positive) >= 4, sorted(counts)
    assert all(counts[label] >= EXAMPLES for label in positive), counts
    assert all(counts[label] >= NEGATIVE_EXAMPLES for label in negative), counts
    # The answers are the API's own, not the rate limiter's.
    limited = {label: s[429] for label, s in seen.items() if s[429] > counts[label] // 20}
    assert not limited, limited
    # With bodies documented, the ingest routes get bodies, and some of them are accepted.
    for label in (
        "POST /api/v1/timeseries/batch [positive]",
        "POST /api/v1/timeseries/upload [positive]",
    ):
        assert label in seen, sorted(seen)
    assert seen["POST /api/v1/timeseries/batch [positive]"][200] > 0
    # The token is fuzzed while valid: its routes answer it.
    assert seen["POST /api/v1/timeseries/batch (token) [positive]"][200] > 0
    assert seen["GET /api/v1/timeseries/ingest_health (token) [positive]"][200] > 0


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
