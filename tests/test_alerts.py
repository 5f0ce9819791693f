"""Alerts: the scan raises once per finding, extends ongoing ones, opens and closes data-gap
alarms; triage keeps a history and refuses illegal transitions; orgs see only their own."""

import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sqlmodel import select

from api.main import create_app
from core.alerts import WASTE_RULES, apply_findings, gap_hours, scan_org
from core.db import session_scope
from core.demo import load_demo
from core.models import Alert, AlertEvent, Meter, Role
from tests.factories import (
    PLANT_END as END,
)
from tests.factories import (
    add_user,
    hourly_records,
    ingest_series,
    make_site,
    plant_org,
    plant_series,
    signup,
)


@pytest.fixture(name="plant")
def plant_fixture(client, engine):
    return plant_org(client, engine, "Plant Org")


def _alerts(client, headers, **params) -> list[dict]:
    r = client.get("/api/v1/alerts", headers=headers, params={"limit": 500, **params})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_scan_raises_one_alert_per_recurring_finding_and_is_idempotent(client, engine, plant):
    first = scan_org(engine, org_id=plant["org_id"], now=END)
    assert first.failed == [] and first.meters == 2 and first.raised >= 1
    alerts = _alerts(client, plant["headers"], site_id="plant")
    nights = [a for a in alerts if a["meter_id"] == "compressor-bank" and a["rule"] == "night-load"]
    # Three nights of idling in a row are one recurring problem, one alert.
    assert len(nights) == 1
    night = nights[0]
    assert night["start_utc"] == "2026-11-24T21:00:00Z"  # Tuesday 22:00 in Rome
    assert night["end_utc"] == "2026-11-27T05:00:00Z"  # Friday 06:00 in Rome
    assert night["hours"] == 24
    assert night["wasted_kwh"] == pytest.approx(plant["injected"], rel=0.1)
    assert night["wasted_money"] == pytest.approx(night["wasted_kwh"] * 0.20, abs=0.01)
    assert night["status"] == "open"

    again = scan_org(engine, org_id=plant["org_id"], now=END)
    assert (again.raised, again.updated, again.closed) == (0, 0, 0)
    assert _alerts(client, plant["headers"], site_id="plant") == alerts
    with session_scope(engine) as session:
        kinds = session.exec(
            select(AlertEvent.kind).where(AlertEvent.alert_id == night["id"])
        ).all()
    assert kinds == ["raised"]


def test_an_ongoing_finding_extends_its_alert(client, engine, plant):
    # After the first night only...
    first_night_end = datetime(2026, 11, 25, 5, tzinfo=UTC)
    scan_org(engine, org_id=plant["org_id"], now=first_night_end)
    early = [
        a
        for a in _alerts(client, plant["headers"])
        if a["meter_id"] == "compressor-bank" and a["rule"] == "night-load"
    ]
    assert len(early) == 1 and early[0]["hours"] == 8
    # ...then after the third: the same alert, longer, with the extension in its history.
    scan_org(engine, org_id=plant["org_id"], now=END)
    later = [
        a
        for a in _alerts(client, plant["headers"])
        if a["meter_id"] == "compressor-bank" and a["rule"] == "night-load"
    ]
    assert [a["id"] for a in later] == [early[0]["id"]]
    assert later[0]["hours"] == 24 and later[0]["wasted_kwh"] > 2.5 * early[0]["wasted_kwh"]
    detail = client.get(f"/api/v1/alerts/{later[0]['id']}", headers=plant["headers"]).json()
    assert [h["kind"] for h in detail["history"]] == ["raised", "extended"]
    assert detail["history"][1]["changes"]["hours"] == [8, 24]
    assert len(detail["evidence"]["hours"]) == 24


def test_data_gap_alert_opens_while_silent_and_closes_when_data_returns(client, engine):
    a = signup(client, org="Gap Org")
    make_site(client, a["headers"], "gap-site", meters=("main-incomer",))
    start = datetime(2026, 11, 20, tzinfo=UTC)
    index = pd.date_range(start, periods=48, freq="h")
    # Hours 10-12 missing (3 h: not more than the 3 h threshold), hours 30-47 not sent yet.
    ingest_series(
        engine, a["org_id"], "gap-site", "main-incomer", index[:30], [50.0] * 30, skip={10, 11, 12}
    )
    now = start + timedelta(hours=36)
    scan_org(engine, org_id=a["org_id"], now=now)
    gaps = _alerts(client, a["headers"], rule="data-gap")
    assert len(gaps) == 1
    gap = gaps[0]
    assert gap["ongoing"] is True and gap["status"] == "open"
    assert gap["start_utc"] == "2026-11-21T06:00:00Z"  # the hour after the last reading
    assert gap["hours"] == 6
    with session_scope(engine) as session:
        assert gap_hours(session, org_id=a["org_id"], start=start, end=now, now=now) == 6

    # The relay catches up hours 30 to 47: the alarm closes itself, keeping the silence it saw.
    ingest_series(engine, a["org_id"], "gap-site", "main-incomer", index[30:], [50.0] * 18)
    later = start + timedelta(hours=48)
    result = scan_org(engine, org_id=a["org_id"], now=later)
    assert result.closed == 1
    closed = client.get(f"/api/v1/alerts/{gap['id']}", headers=a["headers"]).json()
    assert closed["ongoing"] is False and closed["status"] == "resolved"
    assert (closed["start_utc"], closed["end_utc"], closed["hours"]) == (
        "2026-11-21T06:00:00Z",
        "2026-11-21T12:00:00Z",
        6,
    )
    assert closed["root_cause"] == "data returned"
    assert closed["history"][-1]["actor"] == "scan"
    assert len(_alerts(client, a["headers"], rule="data-gap")) == 1  # nothing new opened


def test_data_gap_threshold_is_per_site(client, engine):
    a = signup(client, org="Patient Org")
    make_site(client, a["headers"], "slow-site", meters=("main-incomer",))
    r = client.patch("/api/v1/sites/slow-site", json={"gap_alert_hours": 6}, headers=a["headers"])
    assert r.status_code == 200 and r.json()["gap_alert_hours"] == 6
    start = datetime(2026, 11, 20, tzinfo=UTC)
    index = pd.date_range(start, periods=24, freq="h")
    ingest_series(
        engine, a["org_id"], "slow-site", "main-incomer", index, [5.0] * 24, skip=set(range(10, 15))
    )
    scan_org(engine, org_id=a["org_id"], now=start + timedelta(hours=24))
    assert _alerts(client, a["headers"], rule="data-gap") == []  # 5 silent hours < 6
    scan_org(engine, org_id=a["org_id"], now=start + timedelta(hours=31))
    [gap] = _alerts(client, a["headers"], rule="data-gap")
    assert gap["hours"] == 7 and gap["ongoing"] is True


def test_triage_lifecycle_history_and_illegal_transitions(client, engine, plant):
    scan_org(engine, org_id=plant["org_id"], now=END)
    alert_id = _alerts(client, plant["headers"], rule="night-load")[0]["id"]
    url = f"/api/v1/alerts/{alert_id}"
    h = plant["headers"]

    r = client.patch(
        url, json={"status": "acknowledged", "root_cause": "compressor idling"}, headers=h
    )
    assert r.status_code == 200 and r.json()["status"] == "acknowledged"
    r = client.patch(
        url,
        json={"status": "resolved", "action": "night shutdown", "impact_kwh_per_week": 300},
        headers=h,
    )
    body = r.json()
    assert body["status"] == "resolved" and body["resolved_at"] is not None
    assert body["estimated_impact_kwh_per_week"] == 300
    # resolved -> acknowledged is not a transition; the alert is left as it was.
    r = client.patch(url, json={"status": "acknowledged"}, headers=h)
    assert r.status_code == 409 and r.json()["code"] == "illegal_transition"
    assert "resolved" in r.json()["detail"]
    assert client.get(url, headers=h).json()["status"] == "resolved"
    # Reopen, then dismiss; dismissed -> resolved is refused.
    assert client.patch(url, json={"status": "open"}, headers=h).json()["resolved_at"] is None
    assert client.patch(url, json={"status": "dismissed"}, headers=h).status_code == 200
    assert client.patch(url, json={"status": "resolved"}, headers=h).status_code == 409
    assert client.patch(url, json={"status": "closed"}, headers=h).status_code == 400
    assert client.patch(url, json={"severity": "low"}, headers=h).status_code == 400

    history = client.get(url, headers=h).json()["history"]
    assert [e["kind"] for e in history] == ["raised", "status", "status", "status", "status"]
    assert [e["changes"]["status"] for e in history[1:]] == [
        ["open", "acknowledged"],
        ["acknowledged", "resolved"],
        ["resolved", "open"],
        ["open", "dismissed"],
    ]
    assert history[1]["changes"]["root_cause"] == [None, "compressor idling"]
    assert history[2]["changes"]["impact_kwh_per_week"] == [None, 300]
    assert {e["actor"] for e in history[1:]} == {plant["email"]}
    # A change to nothing new writes no history.
    client.patch(url, json={"root_cause": "compressor idling"}, headers=h)
    assert len(client.get(url, headers=h).json()["history"]) == 5


def test_viewers_read_alerts_but_cannot_triage(client, engine, plant):
    scan_org(engine, org_id=plant["org_id"], now=END)
    viewer = add_user(client, org_id=plant["org_id"], role=Role.viewer)
    analyst = add_user(client, org_id=plant["org_id"], role=Role.analyst)
    alert_id = _alerts(client, viewer["headers"])[0]["id"]
    url = f"/api/v1/alerts/{alert_id}"
    assert client.get(url, headers=viewer["headers"]).status_code == 200
    assert (
        client.patch(url, json={"status": "dismissed"}, headers=viewer["headers"]).status_code
        == 403
    )
    assert client.get(url, headers=viewer["headers"]).json()["status"] == "open"
    assert (
        client.patch(url, json={"status": "acknowledged"}, headers=analyst["headers"]).status_code
        == 200
    )


def test_filters_and_paging(client, engine, plant):
    scan_org(engine, org_id=plant["org_id"], now=END)
    h = plant["headers"]
    everything = _alerts(client, h)
    assert everything and all(a["site_id"] == "plant" for a in everything)
    assert {a["rule"] for a in _alerts(client, h, rule="night-load")} == {"night-load"}
    assert _alerts(client, h, status="resolved") == []
    # The idling ended on Friday at 05:00 UTC: still running at 04:00, not at 06:00.
    assert len(_alerts(client, h, since="2026-11-27T04:00:00Z")) == len(everything)
    assert _alerts(client, h, since="2026-11-27T06:00:00Z") == []
    page = client.get("/api/v1/alerts", headers=h, params={"limit": 1, "offset": 0}).json()
    assert page["count"] == len(everything) and len(page["data"]) == 1
    assert client.get("/api/v1/alerts", headers=h, params={"rule": "nightload"}).status_code == 400
    assert client.get("/api/v1/alerts", headers=h, params={"status": "new"}).status_code == 400
    assert client.get("/api/v1/alerts", headers=h, params={"site_id": "nope"}).status_code == 404


def test_another_org_cannot_see_or_triage_alerts(client, engine, plant):
    scan_org(engine, org_id=plant["org_id"], now=END)
    mine = _alerts(client, plant["headers"])
    other = signup(client, org="Other Org")
    assert _alerts(client, other["headers"]) == []
    url = f"/api/v1/alerts/{mine[0]['id']}"
    assert client.get(url, headers=other["headers"]).status_code == 404
    r = client.patch(url, json={"status": "dismissed", "notes": "x"}, headers=other["headers"])
    assert r.status_code == 404
    assert _alerts(client, plant["headers"]) == mine
    # A scan of the other org touches nothing of this one.
    assert scan_org(engine, org_id=other["org_id"], now=END).meters == 0


def test_accepted_batches_are_scanned_in_the_background(settings, engine):
    """The API schedules a scan of what a batch touched; the alert appears without a cron."""
    from litestar.testing import TestClient

    fast = settings.model_copy(
        update={"alert_scan_on_ingest": True, "alert_scan_delay_seconds": 0.2}
    )
    with TestClient(app=create_app(fast)) as client:
        a = signup(client, org="Live Org")
        make_site(client, a["headers"], "live", meters=("main-incomer",))
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        # 24 hours up to 6 hours ago: the meter has been silent for 6 hours.
        records = hourly_records("live", "main-incomer", now - timedelta(hours=30), 24)
        r = client.post("/api/v1/timeseries/batch", json=records, headers=a["headers"])
        assert r.json()["ingested"] == 24
        deadline = time.monotonic() + 90
        gaps = []
        while time.monotonic() < deadline and not gaps:
            time.sleep(0.5)
            gaps = _alerts(client, a["headers"], rule="data-gap")
        assert len(gaps) == 1, "no data-gap alert from the scan after ingest"
        assert gaps[0]["ongoing"] and gaps[0]["hours"] == 6
        # A retry of the same batch stores nothing and schedules nothing.
        scheduler = client.app.state.alert_scans
        r = client.post("/api/v1/timeseries/batch", json=records, headers=a["headers"])
        assert r.json()["skipped_duplicate"] == 24
        assert scheduler._pending == {} and scheduler._first is None
    with session_scope(engine) as session:
        assert len(session.exec(select(Alert).where(Alert.org_id == a["org_id"])).all()) == 1


def test_a_problem_back_after_its_alert_was_resolved_is_a_new_alert(client, engine, plant):
    first_night_end = datetime(2026, 11, 25, 5, tzinfo=UTC)
    scan_org(engine, org_id=plant["org_id"], now=first_night_end)
    [night] = [
        a
        for a in _alerts(client, plant["headers"], rule="night-load")
        if a["meter_id"] == "compressor-bank"
    ]
    url = f"/api/v1/alerts/{night['id']}"
    fixed = {"status": "resolved", "action": "night shutdown"}
    assert client.patch(url, json=fixed, headers=plant["headers"]).status_code == 200
    # The next two nights the compressor idles again: triage sees it as a new, open alert.
    scan_org(engine, org_id=plant["org_id"], now=END)
    nights = [
        a
        for a in _alerts(client, plant["headers"], rule="night-load")
        if a["meter_id"] == "compressor-bank"
    ]
    assert len(nights) == 2
    resolved = client.get(url, headers=plant["headers"]).json()
    assert (resolved["status"], resolved["hours"]) == ("resolved", 8)
    [again] = [a for a in nights if a["id"] != night["id"]]
    assert again["status"] == "open" and again["hours"] == 16
    assert again["start_utc"] == "2026-11-25T21:00:00Z"


def test_a_partly_backfilled_gap_stays_one_alarm(client, engine):
    a = signup(client, org="Backfill Org")
    make_site(client, a["headers"], "bf-site", meters=("main-incomer",))
    start = datetime(2026, 11, 20, tzinfo=UTC)
    index = pd.date_range(start, periods=60, freq="h")
    ingest_series(engine, a["org_id"], "bf-site", "main-incomer", index[:20], [5.0] * 20)
    scan_org(engine, org_id=a["org_id"], now=start + timedelta(hours=40))
    [gap] = _alerts(client, a["headers"], rule="data-gap")
    assert gap["ongoing"] and gap["hours"] == 20
    # The relay backfills one hour in the middle, then live data returns from hour 45.
    ingest_series(engine, a["org_id"], "bf-site", "main-incomer", index[30:31], [5.0])
    ingest_series(engine, a["org_id"], "bf-site", "main-incomer", index[45:], [5.0] * 15)
    scan_org(engine, org_id=a["org_id"], now=start + timedelta(hours=60))
    [closed] = _alerts(client, a["headers"], rule="data-gap")
    assert closed["id"] == gap["id"]
    assert (closed["ongoing"], closed["status"]) == (False, "resolved")
    assert closed["start_utc"] == "2026-11-20T20:00:00Z"
    assert closed["end_utc"] == "2026-11-21T21:00:00Z"  # hour 45, when data returned


# --- rescans: no-ops over unchanged data, whatever the window -----------------------------------

# A Sunday night: the demo's compressor has idled for weeks (night-load alerts spanning
# several days each), with spikes and deviations on the main incomer in the same days.
DEMO_NOW = datetime(2025, 12, 7, 22, tzinfo=UTC)
WIDE = timedelta(days=35)


def _waste_hours_in_two_alerts(engine, org_id: int) -> list:
    owner: dict = {}
    twice = []
    with session_scope(engine) as session:
        alerts = session.exec(
            select(Alert).where(Alert.org_id == org_id, Alert.rule.in_(WASTE_RULES))
        ).all()
        for alert in alerts:
            for ts in alert.evidence.get("hourly", {}):
                if (alert.meter_pk, ts) in owner:
                    twice.append((alert.meter_pk, ts, owner[(alert.meter_pk, ts)], alert.id))
                owner[(alert.meter_pk, ts)] = alert.id
    return twice


def _state(engine, org_id: int) -> tuple[list, list]:
    with session_scope(engine) as session:
        alerts = session.exec(select(Alert).where(Alert.org_id == org_id).order_by(Alert.id)).all()
        events = session.exec(
            select(AlertEvent).where(AlertEvent.org_id == org_id).order_by(AlertEvent.id)
        ).all()
        return (
            [a.model_dump(exclude={"updated_at"}) for a in alerts],
            [e.model_dump() for e in events],
        )


@pytest.fixture(name="demo")
def demo_fixture(engine, settings) -> int:
    return load_demo(engine, settings=settings, days=90, now=pd.Timestamp(DEMO_NOW))["org_id"]


def test_a_second_scan_of_the_demo_changes_nothing(engine, demo):
    first = scan_org(engine, org_id=demo, now=DEMO_NOW, lookback=WIDE)
    assert first.failed == [] and first.raised >= 30
    assert _waste_hours_in_two_alerts(engine, demo) == []
    before = _state(engine, demo)
    again = scan_org(engine, org_id=demo, now=DEMO_NOW, lookback=WIDE)
    assert (again.raised, again.updated, again.closed) == (0, 0, 0)
    assert _state(engine, demo) == before
    assert _waste_hours_in_two_alerts(engine, demo) == []


def test_a_narrower_scan_neither_ends_nor_rewrites_what_a_wider_one_saw(engine, demo):
    """35 days, then the cron's 7 days, then 35 days again: the later scans write nothing."""
    scan_org(engine, org_id=demo, now=DEMO_NOW, lookback=WIDE)
    before = _state(engine, demo)
    assert any(a["ongoing"] for a in before[0])
    for lookback in (timedelta(days=7), WIDE, timedelta(days=7)):
        result = scan_org(engine, org_id=demo, now=DEMO_NOW, lookback=lookback)
        assert (result.raised, result.updated, result.closed) == (0, 0, 0), lookback
        assert _state(engine, demo) == before, lookback


def test_a_spike_inside_a_multi_night_alert_stays_its_own_alert(client, engine):
    """The night-load alert of three nights spans the days between them; a spike on one of
    those days is another finding, and a rescan does not fold it into the night-load alert."""
    a = signup(client, org="Spike Org")
    make_site(client, a["headers"], "plant", meters=("main-incomer", "compressor-bank"))
    index, series, _ = plant_series()
    spike = index == pd.Timestamp("2026-11-25T10:00:00Z")  # Wednesday 11:00 in Rome
    for meter_id, values in series.items():
        ingest_series(engine, a["org_id"], "plant", meter_id, index, values + 300.0 * spike)
    scan_org(engine, org_id=a["org_id"], now=END)

    def compressor() -> dict[str, dict]:
        alerts = _alerts(client, a["headers"])
        return {x["rule"]: x for x in alerts if x["meter_id"] == "compressor-bank"}

    first = compressor()
    assert set(first) == {"night-load", "spike"}
    night, spiked = first["night-load"], first["spike"]
    assert night["start_utc"] < spiked["start_utc"] < night["end_utc"]
    assert (spiked["start_utc"], spiked["hours"]) == ("2026-11-25T10:00:00Z", 1)
    assert spiked["wasted_kwh"] == pytest.approx(300, rel=0.1)

    again = scan_org(engine, org_id=a["org_id"], now=END)
    assert (again.raised, again.updated, again.closed) == (0, 0, 0)
    assert compressor() == first
    assert _waste_hours_in_two_alerts(engine, a["org_id"]) == []


def test_history_is_appended_one_row_per_scan_that_changed_the_alert(client, engine, plant):
    nights_end = [datetime(2026, 11, d, 5, tzinfo=UTC) for d in (25, 26, 27)]
    for now in nights_end:
        scan_org(engine, org_id=plant["org_id"], now=now)
        scan_org(engine, org_id=plant["org_id"], now=now)  # the same again: no row
    [night] = [
        x
        for x in _alerts(client, plant["headers"], rule="night-load")
        if x["meter_id"] == "compressor-bank"
    ]
    history = client.get(f"/api/v1/alerts/{night['id']}", headers=plant["headers"]).json()[
        "history"
    ]
    assert [h["kind"] for h in history] == ["raised", "extended", "extended"]
    assert [h["at"] for h in history] == sorted(h["at"] for h in history)  # when it happened
    assert history[0]["changes"]["hours"] == [None, 8]
    assert history[1]["changes"]["hours"] == [8, 16]
    assert history[2]["changes"]["hours"] == [16, 24]
    assert history[2]["changes"]["end"] == ["2026-11-26T05:00:00Z", "2026-11-27T05:00:00Z"]


def test_waste_going_on_after_a_fix_is_a_new_alert_not_an_extension(client, engine, plant):
    """Resolved in the middle of a night of idling: the hours after the fix do not extend the
    resolved alert (nobody would look at it); they open a new one."""
    mid_night = datetime(2026, 11, 25, 1, tzinfo=UTC)
    scan_org(engine, org_id=plant["org_id"], now=mid_night)
    [night] = [
        a
        for a in _alerts(client, plant["headers"], rule="night-load")
        if a["meter_id"] == "compressor-bank"
    ]
    assert (night["hours"], night["ongoing"]) == (4, True)
    url = f"/api/v1/alerts/{night['id']}"
    fixed = {"status": "resolved", "action": "night shutdown"}
    assert client.patch(url, json=fixed, headers=plant["headers"]).status_code == 200
    with session_scope(engine) as session:  # resolved at the time of that scan
        alert = session.get(Alert, night["id"])
        alert.resolved_at = mid_night
        session.add(alert)
    scan_org(engine, org_id=plant["org_id"], now=END)
    resolved = client.get(url, headers=plant["headers"]).json()
    assert (resolved["status"], resolved["hours"]) == ("resolved", 4)
    assert resolved["end_utc"] == "2026-11-25T01:00:00Z"
    [again] = [
        a
        for a in _alerts(client, plant["headers"], rule="night-load")
        if a["meter_id"] == "compressor-bank" and a["id"] != night["id"]
    ]
    assert (again["status"], again["start_utc"], again["hours"]) == (
        "open",
        "2026-11-25T01:00:00Z",
        20,
    )
    again2 = scan_org(engine, org_id=plant["org_id"], now=END)
    assert (again2.raised, again2.updated, again2.closed) == (0, 0, 0)


def test_a_meter_that_never_reported_is_silent_since_it_was_registered(client, engine):
    a = signup(client, org="Quiet Org")
    make_site(client, a["headers"], "quiet-site", meters=("main-incomer",))
    registered = datetime(2026, 11, 10, 8, tzinfo=UTC)
    with session_scope(engine) as session:
        meter = session.exec(select(Meter).where(Meter.meter_id == "main-incomer")).one()
        meter.created_at = registered
        session.add(meter)
    now = registered + timedelta(days=10)
    scan_org(engine, org_id=a["org_id"], now=now)  # the hourly scan looks 7 days back
    [gap] = _alerts(client, a["headers"], rule="data-gap")
    assert (gap["start_utc"], gap["hours"], gap["ongoing"]) == ("2026-11-10T08:00:00Z", 240, True)
    # Still going on: listed for any `since`, even past the last hour a scan saw.
    later = (now + timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert [x["id"] for x in _alerts(client, a["headers"], since=later)] == [gap["id"]]
    with session_scope(engine) as session:  # the metric counts the same silence
        assert gap_hours(session, org_id=a["org_id"], start=registered, end=now, now=now) == 240


def _wait_for(condition, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_the_ingest_scheduler_coalesces_batches_and_survives_its_worker(settings, engine, client):
    from core.alerts import IngestScanScheduler

    a = signup(client, org="Burst Org")
    make_site(client, a["headers"], "burst", meters=("main-incomer", "compressor-bank"))
    with session_scope(engine) as session:
        pks = {m.meter_id: m.id for m in session.exec(select(Meter)).all()}
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    span = (now - timedelta(hours=30), now - timedelta(hours=6))
    scheduler = IngestScanScheduler(settings.effective_database_url, delay=0.5)
    scheduler.start()
    try:
        # A relay's burst: three batches, two meters, one scan of both.
        for meter_id in ("main-incomer", "compressor-bank", "main-incomer"):
            scheduler.notify(a["org_id"], {pks[meter_id]: span})
        _wait_for(lambda: len(scheduler.completed) == 1)
        time.sleep(1.0)  # nothing else comes
        [first] = scheduler.completed
        assert (first["org_id"], first["meters_scanned"], first["failed"]) == (a["org_id"], 2, [])
        # The worker process dies between scans: the next batch's scan is done by a new one.
        for process in list(scheduler._pool._processes.values()):
            process.kill()
            process.join()
        scheduler.notify(a["org_id"], {pks["compressor-bank"]: span})
        _wait_for(lambda: len(scheduler.completed) == 2, timeout=30)
        assert scheduler.completed[1]["meters_scanned"] == 1
    finally:
        scheduler.stop()


def test_a_long_alert_ends_under_the_hourly_7_day_scan(client, engine, plant):
    """An ongoing waste alert that began before the cron's 7-day window: a scan that sees its
    last day and the hours after it, with no waste in them, ends it."""
    began, last = datetime(2026, 11, 10, tzinfo=UTC), datetime(2026, 11, 24, tzinfo=UTC)
    hours = int((last - began) / timedelta(hours=1))
    hourly = {
        (began + timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ"): [48.0, 8.0, "night-load"]
        for h in range(hours)
    }
    with session_scope(engine) as session:
        meter = session.exec(select(Meter).where(Meter.meter_id == "compressor-bank")).one()
        session.add(
            Alert(
                org_id=plant["org_id"],
                site_pk=meter.site_pk,
                meter_pk=meter.id,
                rule="night-load",
                fingerprint="long",
                start=began,
                end=last,
                ongoing=True,
                hours=hours,
                wasted_kwh=40.0 * hours,
                evidence={"hourly": hourly},
            )
        )
    with session_scope(engine) as session:
        meter = session.get(Meter, meter.id)
        window = (last - timedelta(days=5), last + timedelta(days=2))  # 7 days
        counts = apply_findings(
            session, org_id=plant["org_id"], meter=meter, window=window, found=[]
        )
    assert counts["updated"] == 1
    with session_scope(engine) as session:
        alert = session.exec(select(Alert).where(Alert.fingerprint == "long")).one()
        assert (alert.ongoing, alert.end, alert.hours) == (False, last, hours)
        # A 7-day window that ends where the alert does cannot tell: it stays ongoing.
        alert.ongoing = True
        session.add(alert)
    with session_scope(engine) as session:
        counts = apply_findings(
            session,
            org_id=plant["org_id"],
            meter=session.get(Meter, meter.id),
            window=(last - timedelta(days=7), last),
            found=[],
        )
    assert counts == {"raised": 0, "updated": 0, "closed": 0}
