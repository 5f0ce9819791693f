"""Ingestion through the real API: idempotency, every error code, CSV, limits, concurrency."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from core.db import session_scope
from core.health import floor_hour
from core.models import IngestBatch, Reading, ReadingRevision, Role
from tests.factories import add_user, bearer, hourly_records, make_site, make_token, signup

BATCH = "/api/v1/timeseries/batch"
UPLOAD = "/api/v1/timeseries/upload"
T0 = datetime(2025, 12, 1, tzinfo=UTC)


def _stored(engine) -> int:
    with Session(engine) as s:
        return s.execute(select(func.count()).select_from(Reading)).scalar_one()


@pytest.fixture(name="org")
def org_fixture(client):
    admin = signup(client, org="Bologna Works")
    make_site(client, admin["headers"], "site-22", meters=("main-incomer", "compressor-bank"))
    token = make_token(client, admin["headers"], name="scada")
    return {**admin, "token": bearer(token["token"]), "token_row": token}


def test_happy_path_stores_every_record_once(client, org, engine):
    recs = hourly_records("site-22", "main-incomer", T0, 24)
    r = client.post(BATCH, json=recs, headers=org["token"])
    assert r.status_code == 200
    assert r.json() == {"ingested": 24, "skipped_duplicate": 0, "failed": 0, "errors": []}
    assert _stored(engine) == 24


def test_records_wrapper_and_omitted_unit_and_key_are_accepted(client, org, engine):
    recs = [
        {
            "site_id": "site-22",
            "meter_id": "main-incomer",
            "timestamp_utc": "2025-12-05T13:00:00Z",
            "value": 152.3,
        }
    ]
    r = client.post(BATCH, json={"records": recs}, headers=org["headers"])
    assert r.json()["ingested"] == 1
    with Session(engine) as s:
        row = s.execute(select(Reading)).scalar_one()
    assert row.idempotency_key == "site-22-main-incomer-2025-12-05T13:00:00Z"
    assert row.ts == datetime(2025, 12, 5, 13, tzinfo=UTC)
    assert row.value == 152.3
    assert row.source == "api"


def test_retrying_a_whole_batch_is_all_skipped_duplicate(client, org, engine):
    recs = hourly_records("site-22", "main-incomer", T0, 48)
    client.post(BATCH, json=recs, headers=org["token"])
    r = client.post(BATCH, json=recs, headers=org["token"])
    assert r.json() == {"ingested": 0, "skipped_duplicate": 48, "failed": 0, "errors": []}
    assert _stored(engine) == 48


def test_partial_success_keeps_the_good_records(client, org, engine):
    recs = hourly_records("site-22", "main-incomer", T0, 5)
    recs[1]["value"] = -3
    recs[3]["timestamp_utc"] = "2025-12-01 03:00"
    r = client.post(BATCH, json=recs, headers=org["token"])
    body = r.json()
    assert (body["ingested"], body["failed"]) == (3, 2)
    assert [(e["index"], e["code"], e["field"]) for e in body["errors"]] == [
        (1, "INVALID_VALUE", "value"),
        (3, "INVALID_TIMESTAMP", "timestamp_utc"),
    ]
    assert _stored(engine) == 3


def _one(**overrides) -> dict:
    rec = {
        "site_id": "site-22",
        "meter_id": "main-incomer",
        "timestamp_utc": "2025-12-05T13:00:00Z",
        "value": 10.0,
        "unit": "kWh",
    }
    rec.update(overrides)
    return {k: v for k, v in rec.items() if v is not ...}


FUTURE = (floor_hour(datetime.now(UTC)) + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    "record, code, field, says",
    [
        (_one(value=...), "MISSING_FIELD", "value", "value is required"),
        (_one(site_id=...), "MISSING_FIELD", "site_id", "site_id is required"),
        (
            _one(timestamp_utc="2025-12-05T13:00:00+00:00"),
            "INVALID_TIMESTAMP",
            "timestamp_utc",
            "with Z",
        ),
        (
            _one(timestamp_utc="2025-02-30T13:00:00Z"),
            "INVALID_TIMESTAMP",
            "timestamp_utc",
            "real date",
        ),
        (
            _one(timestamp_utc="2025-12-05T13:15:00Z"),
            "TIMESTAMP_NOT_HOUR_ALIGNED",
            "timestamp_utc",
            "2025-12-05T13:00:00Z",
        ),
        (_one(timestamp_utc=FUTURE), "TIMESTAMP_IN_FUTURE", "timestamp_utc", "future"),
        (_one(value="12.5"), "INVALID_VALUE", "value", "not a number"),
        (_one(value=True), "INVALID_VALUE", "value", "not a number"),
        (_one(value=-0.5), "INVALID_VALUE", "value", "negative"),
        (_one(unit="MWh"), "INVALID_UNIT", "unit", "kWh"),
        (_one(site_id="site-404"), "UNKNOWN_SITE", "site_id", "mapping table"),
        (_one(meter_id="chiller-9"), "UNKNOWN_METER", "meter_id", "compressor-bank, main-incomer"),
        (_one(idempotency_key="k" * 201), "INVALID_FIELD", "idempotency_key", "200"),
        ("not an object", "INVALID_RECORD", None, "JSON object"),
    ],
)
def test_each_error_code_is_structured_and_says_what_was_expected(
    client, org, engine, record, code, field, says
):
    r = client.post(BATCH, json=[record], headers=org["token"])
    assert r.status_code == 200
    body = r.json()
    assert (body["ingested"], body["failed"]) == (0, 1)
    (err,) = body["errors"]
    assert (err["index"], err["code"], err["field"]) == (0, code, field)
    assert says in err["message"]
    assert _stored(engine) == 0


def test_nan_and_infinity_literals_are_invalid_values(client, org, engine):
    body = (
        b'[{"site_id":"site-22","meter_id":"main-incomer","timestamp_utc":"2025-12-05T13:00:00Z","value":NaN},'
        b'{"site_id":"site-22","meter_id":"main-incomer","timestamp_utc":"2025-12-05T14:00:00Z","value":Infinity}]'
    )
    r = client.post(
        BATCH, content=body, headers={**org["token"], "content-type": "application/json"}
    )
    assert [e["code"] for e in r.json()["errors"]] == ["INVALID_VALUE", "INVALID_VALUE"]


def test_org_mismatch_from_another_orgs_token_stores_nothing(client, org, engine):
    other = signup(client, org="Other")
    make_site(client, other["headers"], "site-99")
    foreign = bearer(make_token(client, other["headers"])["token"])
    r = client.post(BATCH, json=hourly_records("site-22", "main-incomer", T0, 3), headers=foreign)
    body = r.json()
    assert (body["ingested"], body["failed"]) == (0, 3)
    assert {e["code"] for e in body["errors"]} == {"ORG_MISMATCH"}
    assert _stored(engine) == 0


def test_token_limited_to_a_site_cannot_write_elsewhere(client, org, engine):
    make_site(client, org["headers"], "site-23")
    narrow = bearer(make_token(client, org["headers"], site_ids=["site-23"])["token"])
    recs = hourly_records("site-22", "main-incomer", T0, 1) + hourly_records(
        "site-23", "main-incomer", T0, 1
    )
    body = client.post(BATCH, json=recs, headers=narrow).json()
    assert body["ingested"] == 1
    assert body["errors"][0]["code"] == "SITE_NOT_IN_TOKEN_SCOPE"


def test_duplicates_inside_one_batch_are_refused_after_the_first(client, org, engine):
    rec = hourly_records("site-22", "main-incomer", T0, 1)[0]
    same_key = dict(rec, timestamp_utc="2025-12-01T05:00:00Z")
    body = client.post(BATCH, json=[rec, dict(rec), same_key], headers=org["token"]).json()
    assert body["ingested"] == 1
    assert [(e["index"], e["code"], e["field"]) for e in body["errors"]] == [
        (1, "DUPLICATE_IN_BATCH", "timestamp_utc"),
        (2, "DUPLICATE_IN_BATCH", "idempotency_key"),
    ]


def test_same_key_with_a_different_value_is_idempotency_conflict(client, org, engine):
    rec = hourly_records("site-22", "main-incomer", T0, 1)[0]
    client.post(BATCH, json=[rec], headers=org["token"])
    body = client.post(BATCH, json=[dict(rec, value=999.0)], headers=org["token"]).json()
    assert body["errors"][0]["code"] == "IDEMPOTENCY_CONFLICT"
    assert "mode=revise" in body["errors"][0]["message"]
    # A key reused for another hour is the same kind of conflict.
    moved = dict(rec, timestamp_utc="2025-12-01T07:00:00Z")
    body = client.post(BATCH, json=[moved], headers=org["token"]).json()
    assert body["errors"][0]["code"] == "IDEMPOTENCY_CONFLICT"
    with Session(engine) as s:
        assert s.execute(select(Reading.value)).scalar_one() == rec["value"]


def test_another_value_for_a_stored_hour_is_value_conflict(client, org, engine):
    rec = hourly_records("site-22", "main-incomer", T0, 1)[0]
    client.post(BATCH, json=[rec], headers=org["token"])
    body = client.post(
        BATCH, json=[dict(rec, value=1.0, idempotency_key="other-key")], headers=org["token"]
    ).json()
    assert body["errors"][0]["code"] == "VALUE_CONFLICT"
    assert "stored with value 100.0" in body["errors"][0]["message"]
    # The same value under another key is a harmless retry.
    body = client.post(
        BATCH, json=[dict(rec, idempotency_key="other-key")], headers=org["token"]
    ).json()
    assert body["skipped_duplicate"] == 1


def test_revision_replaces_the_value_and_keeps_history(client, org, engine):
    rec = hourly_records("site-22", "main-incomer", T0, 1)[0]
    client.post(BATCH, json=[rec], headers=org["token"])
    r = client.post(f"{BATCH}?mode=revise", json=[dict(rec, value=42.0)], headers=org["token"])
    assert r.json() == {
        "ingested": 0,
        "skipped_duplicate": 0,
        "failed": 0,
        "errors": [],
        "revised": 1,
    }
    with Session(engine) as s:
        assert s.execute(select(Reading.value)).scalar_one() == 42.0
        rev = s.execute(select(ReadingRevision)).scalar_one()
    assert (rev.old_value, rev.new_value) == (100.0, 42.0)
    # Revising to the stored value changes nothing.
    r = client.post(f"{BATCH}?mode=revise", json=[dict(rec, value=42.0)], headers=org["token"])
    assert r.json()["skipped_duplicate"] == 1


def test_viewers_cannot_ingest(client, org):
    viewer = add_user(client, org_id=org["org_id"], role=Role.viewer)
    r = client.post(
        BATCH, json=hourly_records("site-22", "main-incomer", T0, 1), headers=viewer["headers"]
    )
    assert r.status_code == 403


def test_unknown_meter_is_registered_when_the_site_opts_in(client, org, engine):
    client.patch(
        "/api/v1/sites/site-22", json={"auto_register_meters": True}, headers=org["headers"]
    )
    body = client.post(
        BATCH, json=hourly_records("site-22", "chiller-01", T0, 2), headers=org["token"]
    ).json()
    assert body["ingested"] == 2
    meters = client.get("/api/v1/sites/site-22/meters", headers=org["headers"]).json()
    assert "chiller-01" in [m["meter_id"] for m in meters["data"]]


@pytest.mark.parametrize(
    "limit, records, says",
    [
        ({"max_batch_records": 10}, 11, "limit of 10"),  # too many records
        ({"max_body_bytes": 4096}, 100, "larger than this server accepts"),  # too many bytes
    ],
)
def test_oversized_batches_are_413_and_store_nothing(settings, engine, limit, records, says):
    from litestar.testing import TestClient

    from api.main import create_app

    with TestClient(app=create_app(settings.model_copy(update=limit))) as client:
        admin = signup(client)
        make_site(client, admin["headers"], "site-1")
        r = client.post(
            BATCH,
            json=hourly_records("site-1", "main-incomer", T0, records),
            headers=admin["headers"],
        )
    assert r.status_code == 413
    assert r.headers["content-type"].startswith("application/problem+json")
    assert says in r.json()["detail"]
    assert _stored(engine) == 0


@pytest.mark.parametrize("body", [b"[{bad json", b'{"records": 5}', b'"just a string"', b""])
def test_malformed_bodies_are_400_problems(client, org, body):
    r = client.post(
        BATCH, content=body, headers={**org["token"], "content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/problem+json")


def test_every_batch_is_audited_with_errors_by_code(client, org, engine):
    recs = [*hourly_records("site-22", "main-incomer", T0, 3), _one(unit="W"), _one(value=-1)]
    client.post(BATCH, json=recs, headers=org["token"])
    with Session(engine) as s:
        audit = s.execute(select(IngestBatch)).scalar_one()
    assert (audit.total, audit.ingested, audit.failed) == (5, 3, 2)
    assert audit.errors_by_code == {"INVALID_UNIT": 1, "INVALID_VALUE": 1}
    assert audit.errors_by_meter == {
        "site-22/main-incomer": {"INVALID_UNIT": 1, "INVALID_VALUE": 1}
    }
    assert audit.token_id == org["token_row"]["id"]


def test_accepted_token_call_updates_last_used(client, org):
    client.post(BATCH, json=hourly_records("site-22", "main-incomer", T0, 1), headers=org["token"])
    tokens = client.get("/api/v1/integration-tokens", headers=org["headers"]).json()["data"]
    assert tokens[0]["last_used_at"] is not None


# --- CSV --------------------------------------------------------------------------------------

CSV_HEADER = "site_id,meter_id,timestamp_utc,value,unit\n"


def test_csv_upload_reports_errors_by_line(client, org, engine):
    body = (
        CSV_HEADER
        + "site-22,main-incomer,2025-12-01T00:00:00Z,10.5,kWh\n"
        + "\n"
        + "site-22,main-incomer,2025-12-01T01:00:00Z,abc,kWh\n"
        + "site-22,main-incomer,2025-12-01T02:00:00Z,12,Wh\n"
        + "site-22,main-incomer,2025-12-01T03:00:00Z,13,\n"
    )
    r = client.post(
        UPLOAD, content=body.encode(), headers={**org["token"], "content-type": "text/csv"}
    )
    assert r.status_code == 200
    out = r.json()
    assert (out["ingested"], out["failed"]) == (2, 2)
    assert [(e["line"], e["code"]) for e in out["errors"]] == [
        (4, "INVALID_VALUE"),
        (5, "INVALID_UNIT"),
    ]
    with Session(engine) as s:
        assert set(s.execute(select(Reading.source)).scalars()) == {"csv"}


def test_csv_multipart_upload_and_site_from_query(client, org, engine):
    body = "meter_id,timestamp_utc,value\nmain-incomer,2025-12-01T00:00:00Z,1\n"
    r = client.post(
        f"{UPLOAD}?site_id=site-22",
        files={"file": ("h.csv", body.encode(), "text/csv")},
        headers=org["headers"],
    )
    assert r.json()["ingested"] == 1


def test_csv_with_missing_columns_is_a_400(client, org):
    r = client.post(
        UPLOAD,
        content=b"site,meter,time,kwh\nx,y,z,1\n",
        headers={**org["headers"], "content-type": "text/csv"},
    )
    assert r.status_code == 400
    assert "missing site_id, meter_id, timestamp_utc, value" in r.json()["detail"]


def test_export_then_upload_round_trips_to_zero_changes(client, org, engine):
    recs = hourly_records("site-22", "main-incomer", T0, 30, value=lambda i: i / 3)
    recs += hourly_records("site-22", "compressor-bank", T0, 5, value=lambda i: 0.1 * i)
    client.post(BATCH, json=recs, headers=org["token"])
    exported = client.get("/api/v1/timeseries/export?site_id=site-22", headers=org["headers"])
    assert exported.status_code == 200
    assert (
        exported.text.splitlines()[0] == "site_id,meter_id,timestamp_utc,value,unit,idempotency_key"
    )
    assert len(exported.text.splitlines()) == 36
    r = client.post(
        UPLOAD, content=exported.content, headers={**org["headers"], "content-type": "text/csv"}
    )
    assert r.json() == {"ingested": 0, "skipped_duplicate": 35, "failed": 0, "errors": []}
    with Session(engine) as s:
        assert s.execute(select(func.count()).select_from(ReadingRevision)).scalar_one() == 0


# --- concurrency --------------------------------------------------------------------------------


def test_two_threads_posting_the_same_batch_store_it_once(client, org, engine):
    recs = hourly_records("site-22", "main-incomer", T0, 500)
    results, barrier = [], threading.Barrier(2)

    def post():
        barrier.wait()
        results.append(client.post(BATCH, json=recs, headers=org["token"]))

    threads = [threading.Thread(target=post) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [200, 200]
    bodies = [r.json() for r in results]
    assert sum(b["ingested"] for b in bodies) == 500
    assert sum(b["skipped_duplicate"] for b in bodies) == 500
    assert all(b["failed"] == 0 for b in bodies)
    assert _stored(engine) == 500


@pytest.mark.postgres
def test_concurrent_transactions_race_on_postgres_and_classify_the_losers(org, engine, settings):
    """Two open transactions insert the same hours: the second waits, then skips them."""
    from core import accounts
    from core.ingestion import ingest_records

    recs = hourly_records("site-22", "main-incomer", T0, 50)
    principal = accounts.Principal(org_id=org["org_id"], role=Role.admin, kind="user")
    first = Session(engine)
    r1 = ingest_records(first, principal=principal, records=recs)  # not committed yet
    out = {}

    def second():
        with session_scope(engine) as s:
            out["r"] = ingest_records(s, principal=principal, records=recs)

    t = threading.Thread(target=second)
    t.start()
    t.join(timeout=1)
    assert t.is_alive()  # blocked on the uncommitted rows of the first transaction
    first.commit()
    first.close()
    t.join(timeout=30)
    assert (r1.ingested, out["r"].ingested, out["r"].skipped_duplicate) == (50, 0, 50)
    assert _stored(engine) == 50


def test_mixed_revision_batch_counts_every_record_once(client, org, engine):
    stored = hourly_records("site-22", "main-incomer", T0, 3)
    client.post(BATCH, json=stored, headers=org["token"])
    other_key = dict(
        hourly_records("site-22", "compressor-bank", T0, 1)[0],
        idempotency_key=stored[2]["idempotency_key"],
    )
    batch = [
        stored[0],  # same value: duplicate
        dict(stored[1], value=7.0),  # new value: revised
        other_key,  # key of another hour: conflict
        *hourly_records("site-22", "main-incomer", T0 + timedelta(hours=3), 2),  # new
        _one(value=-1),  # invalid
    ]
    body = client.post(f"{BATCH}?mode=revise", json=batch, headers=org["token"]).json()
    assert (body["ingested"], body["skipped_duplicate"], body["revised"], body["failed"]) == (
        2,
        1,
        1,
        2,
    )
    assert sum(
        (body["ingested"], body["skipped_duplicate"], body["revised"], body["failed"])
    ) == len(batch)
    assert [e["code"] for e in body["errors"]] == ["IDEMPOTENCY_CONFLICT", "INVALID_VALUE"]
    assert _stored(engine) == 5


def test_same_value_under_another_hours_key_is_a_conflict_not_a_duplicate(client, org):
    a, b = hourly_records("site-22", "main-incomer", T0, 2, value=lambda i: 5.0)
    client.post(BATCH, json=[a, b], headers=org["token"])
    stolen = dict(b, idempotency_key=a["idempotency_key"])
    body = client.post(BATCH, json=[stolen], headers=org["token"]).json()
    assert body["errors"][0]["code"] == "IDEMPOTENCY_CONFLICT"


def test_auto_registration_refuses_ids_that_are_not_slugs(client, org, engine):
    client.patch(
        "/api/v1/sites/site-22", json={"auto_register_meters": True}, headers=org["headers"]
    )
    body = client.post(
        BATCH, json=[_one(meter_id="Bad Meter/../" + "x" * 100)], headers=org["token"]
    ).json()
    assert body["errors"][0]["code"] == "INVALID_FIELD"
    assert _stored(engine) == 0


def test_huge_integer_and_deep_nesting_are_client_errors(client, org):
    r = client.post(
        BATCH,
        content=b'[{"site_id":"site-22","meter_id":"main-incomer",'
        b'"timestamp_utc":"2025-12-05T13:00:00Z","value":1' + b"0" * 400 + b"}]",
        headers={**org["token"], "content-type": "application/json"},
    )
    assert r.status_code == 200 and r.json()["errors"][0]["code"] == "INVALID_VALUE"
    r = client.post(
        BATCH, content=b"[" * 100_000, headers={**org["token"], "content-type": "application/json"}
    )
    assert r.status_code == 400


def test_errors_list_is_capped_at_the_lowest_indexes(client, org):
    recs = [
        _one(value=-1, timestamp_utc=f"2025-11-{1 + i // 24:02d}T{i % 24:02d}:00:00Z")
        for i in range(600)
    ]
    recs += [
        _one(site_id="nowhere", timestamp_utc=f"2025-10-{1 + i // 24:02d}T{i % 24:02d}:00:00Z")
        for i in range(600)
    ]
    body = client.post(BATCH, json=recs, headers=org["token"]).json()
    assert body["failed"] == 1200
    assert [e["index"] for e in body["errors"]] == list(range(1000))


def test_csv_duplicate_rows_in_different_chunks_are_duplicates_in_batch(org, engine):
    import io

    from core import accounts
    from core.ingestion import IngestMode, ingest_csv

    principal = accounts.Principal(org_id=org["org_id"], role=Role.admin, kind="user")
    rows = ["site_id,meter_id,timestamp_utc,value"]
    rows += [f"site-22,main-incomer,2025-12-01T{h:02d}:00:00Z,{h}" for h in range(6)]
    rows += ["site-22,main-incomer,2025-12-01T01:00:00Z,99"]  # line 8, a later chunk
    for mode in (IngestMode.insert, IngestMode.revise):
        result = ingest_csv(
            engine,
            principal=principal,
            stream=io.StringIO("\n".join(rows)),
            chunk_rows=3,
            mode=mode,
        )
        if mode == IngestMode.insert:
            assert result.ingested == 6
            assert [(e.line, e.code) for e in result.errors] == [(8, "DUPLICATE_IN_BATCH")]
    with Session(engine) as s:
        assert s.execute(select(func.count()).select_from(ReadingRevision)).scalar_one() == 1


def test_upload_that_is_not_utf8_stores_nothing(client, org, engine):
    body = (
        CSV_HEADER + "site-22,main-incomer,2025-12-01T00:00:00Z,1,kWh\n"
    ).encode() + b"\xff\xfe\n"
    r = client.post(UPLOAD, content=body, headers={**org["token"], "content-type": "text/csv"})
    assert r.status_code == 400
    assert "UTF-8" in r.json()["detail"]
    assert _stored(engine) == 0


def test_keys_with_tabs_backslashes_and_newlines_are_stored_verbatim(client, org, engine):
    odd = "relay\t7\\batch\nline\r" + "é"
    client.post(BATCH, json=[_one(idempotency_key=odd)], headers=org["token"])
    with Session(engine) as s:
        assert s.execute(select(Reading.idempotency_key)).scalar_one() == odd
    again = client.post(BATCH, json=[_one(idempotency_key=odd)], headers=org["token"]).json()
    assert again["skipped_duplicate"] == 1


def test_driver_meters_take_their_own_units_and_signs(client, org, engine):
    site = "/api/v1/sites/site-22/meters"
    client.post(
        site,
        json={"meter_id": "outdoor-temp", "name": "Outdoor", "kind": "temperature"},
        headers=org["headers"],
    )
    client.post(
        site,
        json={"meter_id": "production", "name": "Counter", "kind": "production"},
        headers=org["headers"],
    )
    recs = [
        _one(meter_id="outdoor-temp", value=-4.5, unit="°C"),
        _one(meter_id="outdoor-temp", value=12.0, unit=None, timestamp_utc="2025-12-05T14:00:00Z"),
        _one(meter_id="production", value=120.0, unit="units/h"),
        _one(meter_id="outdoor-temp", value=3.0, unit="kWh", timestamp_utc="2025-12-05T15:00:00Z"),
        _one(
            meter_id="production", value=-1.0, unit="units/h", timestamp_utc="2025-12-05T14:00:00Z"
        ),
        _one(value=5.0, unit="°C", timestamp_utc="2025-12-05T16:00:00Z"),
    ]
    body = client.post(BATCH, json=recs, headers=org["token"]).json()
    assert body["ingested"] == 3
    assert [(e["index"], e["code"]) for e in body["errors"]] == [
        (3, "INVALID_UNIT"),
        (4, "INVALID_VALUE"),
        (5, "INVALID_UNIT"),
    ]
    assert "°C" in body["errors"][0]["message"]
