"""Reading back: summary, series with gaps and DST-aware days, export, ingest health, metrics."""

from datetime import UTC, datetime, timedelta

import pytest

from core.health import floor_hour
from tests.factories import bearer, hourly_records, make_site, make_token, signup

BATCH = "/api/v1/timeseries/batch"
SERIES = "/api/v1/timeseries/series"


@pytest.fixture(name="org")
def org_fixture(client):
    admin = signup(client, org="Reader")
    make_site(
        client, admin["headers"], "site-r", meters=("main-incomer", "compressor-bank", "chiller-01")
    )
    return admin


def _post(client, headers, records):
    r = client.post(BATCH, json=records, headers=headers)
    assert r.json()["failed"] == 0, r.text
    return r.json()


def test_hourly_series_shows_missing_hours_as_nulls(client, org):
    t0 = datetime(2025, 12, 1, tzinfo=UTC)
    _post(client, org["headers"], hourly_records("site-r", "main-incomer", t0, 6, skip={2, 3}))
    r = client.get(
        SERIES,
        params={
            "site_id": "site-r",
            "meter_id": "main-incomer",
            "start": "2025-12-01T00:00:00Z",
            "end": "2025-12-01T06:00:00Z",
        },
        headers=org["headers"],
    )
    assert r.status_code == 200
    points = r.json()["points"]
    assert [p["kwh"] for p in points] == [100.0, 101.0, None, None, 104.0, 105.0]
    assert points[0]["timestamp_utc"] == "2025-12-01T00:00:00Z"


def test_daily_series_counts_local_hours_across_dst(client, org):
    # Europe/Rome leaves summer time on 2025-10-26: that local day has 25 hours.
    start = datetime(2025, 10, 24, 22, tzinfo=UTC)  # 2025-10-25 00:00 local (+02:00)
    _post(
        client,
        org["headers"],
        hourly_records("site-r", "main-incomer", start, 49, value=lambda i: 1.0, skip={30}),
    )
    r = client.get(
        SERIES,
        params={
            "site_id": "site-r",
            "meter_id": "main-incomer",
            "start": "2025-10-25T00:00:00+02:00",
            "end": "2025-10-27T00:00:00+01:00",
            "resolution": "day",
        },
        headers=org["headers"],
    )
    days = r.json()["points"]
    assert [
        (d["start_local"][:10], d["expected_hours"], d["hours"], d["complete"], d["kwh"])
        for d in days
    ] == [("2025-10-25", 24, 24, True, 24.0), ("2025-10-26", 25, 24, False, 24.0)]


def test_weekly_series_buckets_iso_weeks(client, org):
    start = datetime(2025, 12, 1, tzinfo=UTC) - timedelta(hours=1)  # Monday 00:00 Rome
    _post(
        client,
        org["headers"],
        hourly_records("site-r", "main-incomer", start, 168, value=lambda i: 2.0),
    )
    r = client.get(
        SERIES,
        params={
            "site_id": "site-r",
            "meter_id": "main-incomer",
            "start": "2025-12-02T00:00:00Z",
            "end": "2025-12-03T00:00:00Z",
            "resolution": "week",
        },
        headers=org["headers"],
    )
    (week,) = r.json()["points"]
    assert (week["start_local"][:10], week["hours"], week["expected_hours"]) == (
        "2025-12-01",
        168,
        168,
    )
    assert week["kwh"] == 336.0 and week["complete"]


@pytest.mark.parametrize(
    "params, status",
    [
        ({"start": "2025-12-01T00:00:00", "end": "2025-12-02T00:00:00Z"}, 400),
        ({"start": "2025-12-02T00:00:00Z", "end": "2025-12-01T00:00:00Z"}, 400),
        ({"start": "2024-01-01T00:00:00Z", "end": "2025-12-01T00:00:00Z"}, 400),
        ({"start": "2025-12-01T00:00:00Z", "end": "2025-12-02T00:00:00Z", "meter_id": "nope"}, 404),
    ],
)
def test_bad_series_requests_are_client_errors(client, org, params, status):
    query = {"site_id": "site-r", "meter_id": "main-incomer", **params}
    assert client.get(SERIES, params=query, headers=org["headers"]).status_code == status


def test_summary_gives_points_and_kwh_statistics_per_meter(client, org):
    end = floor_hour(datetime.now(UTC))
    _post(
        client,
        org["headers"],
        hourly_records(
            "site-r", "main-incomer", end - timedelta(hours=24), 24, value=lambda i: float(i)
        ),
    )
    r = client.get(
        "/api/v1/timeseries/summary",
        params={"site_id": "site-r", "window_hours": 24},
        headers=org["headers"],
    )
    rows = {m["meter_id"]: m for m in r.json()["meters"]}
    main = rows["main-incomer"]
    assert (main["points"], main["expected_points"], main["total_kwh"]) == (24, 24, 276.0)
    assert (main["min_kwh"], main["max_kwh"], main["mean_kwh"]) == (0.0, 23.0, 11.5)
    assert main["last_timestamp_utc"] == (end - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert rows["chiller-01"]["points"] == 0 and rows["chiller-01"]["total_kwh"] is None


def test_ingest_health_shows_silent_partial_and_complete_meters(client, org):
    end = floor_hour(datetime.now(UTC))
    start = end - timedelta(hours=24)
    _post(client, org["headers"], hourly_records("site-r", "main-incomer", start, 24))
    _post(
        client,
        org["headers"],
        hourly_records("site-r", "compressor-bank", start, 24, skip=set(range(0, 24, 4))),
    )  # 18 of 24
    token = bearer(make_token(client, org["headers"])["token"])
    r = client.get("/api/v1/timeseries/ingest_health?window_hours=24", headers=token)
    assert r.status_code == 200
    body = r.json()
    assert body["window_hours"] == 24
    rows = {m["meter_id"]: m for m in body["meters"]}
    assert set(rows) == {"main-incomer", "compressor-bank", "chiller-01"}
    assert (rows["main-incomer"]["actual_points"], rows["main-incomer"]["completeness_pct"]) == (
        24,
        100.0,
    )
    assert (
        rows["compressor-bank"]["actual_points"],
        rows["compressor-bank"]["completeness_pct"],
    ) == (18, 75.0)
    assert rows["chiller-01"] == {
        "site_id": "site-r",
        "meter_id": "chiller-01",
        "window_hours": 24,
        "expected_points": 24,
        "actual_points": 0,
        "completeness_pct": 0.0,
        "last_seen": None,
        "last_reading_utc": None,
    }
    assert rows["main-incomer"]["last_seen"].endswith("Z")


def test_ingest_health_completeness_is_rounded_to_one_decimal(client, org):
    end = floor_hour(datetime.now(UTC))
    _post(
        client,
        org["headers"],
        hourly_records("site-r", "main-incomer", end - timedelta(hours=24), 23),
    )
    r = client.get(
        "/api/v1/timeseries/ingest_health",
        params={"window_hours": 24, "site_id": "site-r"},
        headers=org["headers"],
    )
    rows = {m["meter_id"]: m for m in r.json()["meters"]}
    assert rows["main-incomer"]["completeness_pct"] == 95.8


def test_tokens_read_ingest_health_but_not_series(client, org):
    token = bearer(make_token(client, org["headers"])["token"])
    assert client.get("/api/v1/timeseries/ingest_health", headers=token).status_code == 200
    assert client.get("/api/v1/timeseries/summary?site_id=site-r", headers=token).status_code == 403
    assert client.get("/api/v1/analytics/ingest-metrics", headers=token).status_code == 403


def test_ingest_metrics_reports_gaps_and_errors_per_meter(client, org):
    end = floor_hour(datetime.now(UTC))
    start = end - timedelta(hours=168)
    skip = set(range(10, 15)) | {100}
    _post(client, org["headers"], hourly_records("site-r", "main-incomer", start, 168, skip=skip))
    bad = hourly_records("site-r", "main-incomer", start, 2)
    bad[0]["value"], bad[1]["unit"] = -1, "Wh"
    client.post(BATCH, json=bad, headers=org["headers"])
    body = client.get("/api/v1/analytics/ingest-metrics", headers=org["headers"]).json()
    rows = {m["meter_id"]: m for m in body["meters"]}
    main = rows["main-incomer"]
    assert (main["missing_hours_7d"], main["longest_gap_hours_7d"]) == (6, 5)
    assert main["completeness_7d_pct"] == round(100 * 162 / 168, 1)
    assert main["completeness_24h_pct"] == 100.0
    assert main["errors_7d"] == {"INVALID_UNIT": 1, "INVALID_VALUE": 1}
    assert body["errors_by_code_7d"] == {"INVALID_UNIT": 1, "INVALID_VALUE": 1}
    assert (rows["chiller-01"]["missing_hours_7d"], rows["chiller-01"]["last_seen"]) == (168, None)


def test_export_can_be_limited_to_a_meter_and_range(client, org):
    t0 = datetime(2025, 12, 1, tzinfo=UTC)
    _post(
        client,
        org["headers"],
        hourly_records("site-r", "main-incomer", t0, 10)
        + hourly_records("site-r", "chiller-01", t0, 10),
    )
    r = client.get(
        "/api/v1/timeseries/export",
        params={
            "site_id": "site-r",
            "meter_id": "chiller-01",
            "start": "2025-12-01T02:00:00Z",
            "end": "2025-12-01T05:00:00Z",
        },
        headers=org["headers"],
    )
    lines = r.text.strip().splitlines()
    assert len(lines) == 4
    assert lines[1].startswith("site-r,chiller-01,2025-12-01T02:00:00Z,102.0,kWh,")
    assert (
        client.get("/api/v1/timeseries/export?site_id=nope", headers=org["headers"]).status_code
        == 404
    )


def _site(client, org, site_id, tz):
    make_site(client, org["headers"], site_id, meters=("main-incomer",), timezone=tz)


def _daily(client, org, site_id, start, end, resolution="day"):
    r = client.get(
        SERIES,
        params={
            "site_id": site_id,
            "meter_id": "main-incomer",
            "start": start,
            "end": end,
            "resolution": resolution,
        },
        headers=org["headers"],
    )
    assert r.status_code == 200, r.text
    return [
        (p["start_local"][:10], p["expected_hours"], p["hours"], p["complete"])
        for p in r.json()["points"]
    ]


def test_dst_days_keep_their_23_or_25_hours_whatever_the_bounds(client, org):
    _site(client, org, "site-be", "Europe/Berlin")
    # 2025-03-29 00:00 Berlin (+01:00) = 03-28 23:00Z; through 2025-03-31 00:00 (+02:00).
    _post(
        client,
        org["headers"],
        hourly_records("site-be", "main-incomer", datetime(2025, 3, 28, 23, tzinfo=UTC), 47),
    )
    assert _daily(client, org, "site-be", "2025-03-29T10:00:00Z", "2025-03-30T12:00:00Z") == [
        ("2025-03-29", 24, 24, True),
        ("2025-03-30", 23, 23, True),
    ]
    # Autumn: 2025-10-26 has 25 hours; `end` falls inside that day.
    _post(
        client,
        org["headers"],
        hourly_records("site-be", "main-incomer", datetime(2025, 10, 25, 22, tzinfo=UTC), 25),
    )
    assert _daily(client, org, "site-be", "2025-10-26T03:00:00Z", "2025-10-26T12:00:00Z") == [
        ("2025-10-26", 25, 25, True)
    ]


def test_week_with_a_dst_change_has_169_hours(client, org):
    _site(client, org, "site-be", "Europe/Berlin")
    monday = datetime(2025, 10, 19, 22, tzinfo=UTC)  # Mon 2025-10-20 00:00 +02:00
    _post(client, org["headers"], hourly_records("site-be", "main-incomer", monday, 169))
    assert _daily(
        client, org, "site-be", "2025-10-22T00:00:00Z", "2025-10-23T00:00:00Z", "week"
    ) == [("2025-10-20", 169, 169, True)]


def test_day_starting_at_a_missing_local_midnight_is_not_an_error(client, org):
    # Chile springs forward at 00:00 on 2025-09-07: that day starts at 01:00 and has 23 hours.
    _site(client, org, "site-cl", "America/Santiago")
    assert _daily(client, org, "site-cl", "2025-09-07T12:00:00Z", "2025-09-07T13:00:00Z") == [
        ("2025-09-07", 23, 0, False)
    ]


def test_hourly_series_accepts_offsets_and_unaligned_bounds(client, org):
    t0 = datetime(2025, 12, 1, tzinfo=UTC)
    _post(client, org["headers"], hourly_records("site-r", "main-incomer", t0, 4))
    r = client.get(
        SERIES,
        params={
            "site_id": "site-r",
            "meter_id": "main-incomer",
            "start": "2025-12-01T01:30:00+01:00",
            "end": "2025-12-01T03:00:00Z",
        },
        headers=org["headers"],
    )
    assert r.status_code == 200
    assert [(p["timestamp_utc"][11:13], p["kwh"]) for p in r.json()["points"]] == [
        ("01", 101.0),
        ("02", 102.0),
    ]


def test_an_upload_failing_half_way_still_scans_what_it_stored(client, org, engine, monkeypatch):
    """CSV chunks commit one by one: when a later chunk fails (503), the readings already
    stored still go to the alert scan."""
    import sqlite3
    from functools import partial

    from sqlalchemy import func, select
    from sqlalchemy.exc import OperationalError

    import api.routes.timeseries as routes
    import core.ingestion
    from core.alerts import IngestScanScheduler
    from core.models import Reading

    # The real scheduler, not started: what it was handed waits in its queue.
    scans = IngestScanScheduler("sqlite://", delay=3600)
    client.app.state.alert_scans = scans
    monkeypatch.setattr(routes, "ingest_csv", partial(core.ingestion.ingest_csv, chunk_rows=10))
    real, calls = core.ingestion.ingest_records, []

    def second_chunk_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
        return real(*args, **kwargs)

    monkeypatch.setattr(core.ingestion, "ingest_records", second_chunk_fails)
    t0 = datetime(2025, 12, 1, tzinfo=UTC)
    rows = "".join(
        f"site-r,main-incomer,{(t0 + timedelta(hours=h)).strftime('%Y-%m-%dT%H:%M:%SZ')},5\n"
        for h in range(25)
    )
    r = client.post(
        "/api/v1/timeseries/upload",
        content="site_id,meter_id,timestamp_utc,value\n" + rows,
        headers={**org["headers"], "Content-Type": "text/csv"},
    )
    assert r.status_code == 503, r.text
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Reading)).scalar_one() == 10
    assert list(scans._pending) == [org["org_id"]]
    assert list(scans._pending[org["org_id"]].values()) == [(t0, t0 + timedelta(hours=9))]
