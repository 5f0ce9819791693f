"""Every page of the app with AppTest: demo data, an empty organisation, roles, the writes."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlmodel import select

from core import health
from core.analytics import AnalyticsService
from core.db import session_scope
from core.health import floor_hour
from core.models import Alert, AlertEvent, IntegrationToken, Meter, Reading, Role, Site
from core.tokens import resolve_token
from tests.app.conftest import PAGES, open_page, sign_in
from tests.factories import PASSWORD, add_user, ingest_series, make_site, signup

pytestmark = pytest.mark.usefixtures("client")


@pytest.fixture(name="admin")
def admin_fixture(clock, at, demo):
    # The app runs on the frozen `clock`: every window a test recomputes comes from clock.now.
    return sign_in(at, demo["email"], demo["password"])


def test_every_page_renders_on_demo_data(admin):
    for title in PAGES:
        open_page(admin, title)
        assert admin.title[0].value == ("Opportunities & savings" if "Opp" in title else title)
        assert not admin.error, f"{title}: {[e.value for e in admin.error]}"


def test_dashboard_health_widget_equals_core(admin, demo, engine):
    with session_scope(engine) as session:
        core_rows = health.ingest_health(session, org_id=demo["org_id"], window_hours=24)["meters"]
    widget = admin.dataframe[0].value
    assert widget["meter_id"].tolist() == [r["meter_id"] for r in core_rows]
    assert widget["completeness_pct"].tolist() == [r["completeness_pct"] for r in core_rows]
    assert widget["actual_points"].tolist() == [r["actual_points"] for r in core_rows]
    # hvac-floor1 loses hours at random in the demo: its row says so in the status column.
    statuses = dict(zip(widget["meter_id"], widget["status"], strict=True))
    pct = dict(zip(widget["meter_id"], widget["completeness_pct"], strict=True))
    for meter, value in pct.items():
        assert statuses[meter] == ("good" if value >= 95 else "degraded" if value >= 90 else "poor")
    # The 7-day window is the same widget over 168 hours.
    admin.radio(key="dashboard-health-window").set_value("7 d").run()
    assert set(admin.dataframe[0].value["expected_points"]) == {168}


def test_dashboard_last_24h_against_the_baseline(clock, admin, demo, engine):
    end = floor_hour(clock.now)  # the app's clock, not a second reading of the real one
    with session_scope(engine) as session:
        out = AnalyticsService(session, org_id=demo["org_id"]).baseline(
            "site-22", "main-incomer", end - timedelta(hours=24), end
        )
    actual = sum(r["actual_kwh"] for r in out["series"] if r["actual_kwh"] is not None)
    first_site = next(m for m in admin.metric if m.label == "Last 24 h")  # site-22 comes first
    assert first_site.value == f"{actual:,.0f} kWh"
    with session_scope(engine) as session:
        opened = session.exec(
            select(Alert).where(Alert.org_id == demo["org_id"], Alert.status == "open")
        ).all()
    per_site = [m.value for m in admin.metric if m.label == "Open alerts"]
    assert sum(int(v) for v in per_site) == len(opened) > 0


def test_site_view_numbers_are_core_numbers(clock, admin, demo, engine):
    open_page(admin, "Site view")
    metrics = {m.label: m.value for m in admin.metric}
    first, last = admin.date_input(key="site-view-range").value
    zone = ZoneInfo("Europe/Rome")
    assert last == clock.now.astimezone(zone).date()  # "today" on the site's clock
    assert (last - first).days == 27
    # The page's range: local midnights in Rome, up to the app's current hour.
    start = datetime.combine(first, time(0), zone).astimezone(UTC)
    end = min(
        datetime.combine(last + timedelta(days=1), time(0), zone).astimezone(UTC),
        floor_hour(clock.now),
    )
    with session_scope(engine) as session:
        service = AnalyticsService(session, org_id=demo["org_id"])
        fit = service.baseline("site-22", "main-incomer", start, end)["fit"]
        kpis = service.compute_kpis("site-22", "main-incomer", start, end)
    assert metrics["CV(RMSE)"] == f"{fit['cv_rmse_pct']:.1f} %"
    assert metrics["Total"] == f"{kpis['total_kwh']:,.0f} kWh"
    assert metrics["Completeness"] == f"{kpis['completeness_pct']:.1f} %"
    # Daily and weekly resolutions render the same meter without error.
    for resolution in ("day", "week"):
        admin.selectbox(key="site-view-resolution").set_value(resolution).run()
        assert not admin.exception


def test_alert_triage_from_the_app_is_recorded_with_its_author(at, demo, engine, client):
    analyst = add_user(client, org_id=demo["org_id"], role=Role.analyst)
    sign_in(at, analyst["email"], PASSWORD)
    open_page(at, "Alerts")
    chosen = at.selectbox(key="alerts-chosen").value
    at.selectbox(key=f"triage-status-{chosen['id']}").set_value("acknowledged")
    at.text_input[0].input("compressor left idling")
    at.form_submit_button[0].click().run()
    assert not at.exception
    with session_scope(engine) as session:
        alert = session.get(Alert, chosen["id"])
        events = session.exec(
            select(AlertEvent).where(AlertEvent.alert_id == alert.id).order_by(AlertEvent.id)
        ).all()
    assert alert.status == "acknowledged" and alert.root_cause == "compressor left idling"
    assert events[-1].actor == analyst["email"]
    assert events[-1].changes["status"] == ["open", "acknowledged"]


def test_viewer_sees_no_write_controls(at, demo, client):
    viewer = add_user(client, org_id=demo["org_id"], role=Role.viewer)
    sign_in(at, viewer["email"], PASSWORD)
    assert not at.exception
    open_page(at, "Alerts")
    assert not at.form_submit_button  # no triage form
    assert any("Viewers can read alerts" in c.value for c in at.caption)
    # Settings and Upload CSV are not in a viewer's navigation at all.
    for title in ("Settings", "Upload CSV"):
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(PAGES[title])


def test_empty_org_gets_a_first_run_guide_on_every_page(at, client):
    user = signup(client, org="Empty Works")
    sign_in(at, user["email"], PASSWORD)
    for title in PAGES:
        if title == "Settings":
            continue
        open_page(at, title)
        assert any("No sites yet" in i.value for i in at.info), title
    open_page(at, "Settings")
    assert at.radio(key="settings-section").value == "Sites and meters"


def test_token_is_shown_once_and_works(admin, demo, engine):
    open_page(admin, "Settings")
    admin.text_input[0].input("line-1-relay")
    admin.form_submit_button[0].click().run()
    assert not admin.exception
    [code] = admin.code
    token = code.value
    assert token.startswith("cei_int_")
    with session_scope(engine) as session:
        principal, _ = resolve_token(session, plaintext=token)
        assert principal.org_id == demo["org_id"]
        stored = session.exec(select(IntegrationToken)).one()
        assert token not in (stored.token_hash, stored.prefix)
    listed = admin.dataframe[0].value
    assert listed["name"].tolist() == ["line-1-relay"]
    admin.run()  # any later run: the secret is gone for good
    assert not admin.code
    # Revoke it from the same page.
    admin.button(key="revoke-button").click().run()
    with session_scope(engine) as session:
        assert session.exec(select(IntegrationToken)).one().revoked_at is not None


def test_settings_adds_a_site_and_a_meter(at, client, engine):
    user = signup(client, org="New Works")
    sign_in(at, user["email"], PASSWORD)
    open_page(at, "Settings")
    at.text_input[0].input("plant-7")
    at.text_input[1].input("Plant 7")
    at.form_submit_button[0].click().run()
    assert not at.exception and not at.error
    assert at.dataframe[0].value["site_id"].tolist() == ["plant-7"]
    # Then its main incomer.
    next(t for t in at.text_input if t.label == "Meter ID").input("main-incomer")
    next(s for s in at.selectbox if s.label == "Kind").set_value("main_incomer")
    next(b for b in at.form_submit_button if b.label == "Add meter").click().run()
    assert not at.exception and not at.error
    assert at.dataframe[1].value["meter_id"].tolist() == ["main-incomer"]


def test_upload_csv_previews_ingests_and_reports_bad_lines(admin, demo, engine):
    open_page(admin, "Upload CSV")
    rows = ["site_id,meter_id,timestamp_utc,value,unit"]
    rows += [
        f"site-23,main-incomer,2025-01-0{d}T0{h}:00:00Z,{10 + h},kWh"
        for d in (1, 2)
        for h in range(5)
    ]
    rows += [
        "site-23,main-incomer,2025-01-03T00:30:00Z,5,kWh",
        "site-23,nope,2025-01-03T01:00:00Z,5,kWh",
    ]
    admin.file_uploader[0].upload("backfill.csv", "\n".join(rows).encode(), "text/csv").run()
    assert not admin.exception
    preview = admin.dataframe[0].value
    assert len(preview) == 12
    assert preview["check"].tolist()[:10] == ["ok"] * 10
    assert preview["check"].iloc[-2].startswith("TIMESTAMP_NOT_HOUR_ALIGNED")
    assert preview["check"].iloc[-1].startswith("UNKNOWN_METER")
    with session_scope(engine) as session:
        before = len(session.exec(select(Reading.id)).all())
    assert before == demo["records"]
    next(b for b in admin.button if b.label.startswith("Ingest")).click().run()
    assert not admin.exception
    metrics = {m.label: m.value for m in admin.metric}
    assert (metrics["Stored"], metrics["Already stored"], metrics["Refused"]) == ("10", "0", "2")
    errors = admin.dataframe[1].value
    assert errors["line"].tolist() == [12, 13]
    assert [d.label for d in admin.download_button] == ["Download the error report (CSV)"]
    with session_scope(engine) as session:
        # The preview stored nothing: only the ingest's 10 rows are new.
        assert len(session.exec(select(Reading.id)).all()) == before + 10


def test_reports_page_sections(admin):
    open_page(admin, "Reports")
    assert admin.dataframe  # 7-day tables
    admin.radio(key="reports-section").set_value("Weekly review").run()
    assert not admin.exception
    labels = [d.label for d in admin.download_button]
    assert "HTML (prints to PDF)" in labels and "Markdown" in labels
    # The demo's alerts of earlier weeks nobody has closed stay in view.
    assert "##### Still open from earlier weeks" in [m.value for m in admin.markdown]
    # The alert tables, in order: new this week, then still open from earlier weeks.
    new, still_open = [d.value for d in admin.dataframe if "start_utc" in d.value.columns]
    assert len(still_open) > 0 and set(still_open["status"]) <= {"open", "acknowledged"}
    assert min(still_open["start_utc"]) < min(new["start_utc"])
    admin.radio(key="reports-section").set_value("Pilot report").run()
    assert not admin.exception
    card = admin.dataframe[0].value
    assert card["metric"].tolist() == [
        "Expected hourly points ingested",
        "Meter-hours inside data-gap alarms",
        "Actionable inefficiencies found",
        "Savings range stated",
    ]


def test_a_triage_choice_does_not_carry_over_to_the_next_alert(admin):
    open_page(admin, "Alerts")
    first = admin.selectbox(key="alerts-chosen").options[0]
    admin.selectbox(key=f"triage-status-{_id(first)}").set_value("dismissed").run()
    admin.selectbox(key="alerts-chosen").set_value(admin.selectbox(key="alerts-chosen").options[1])
    admin.run()
    assert not admin.exception
    chosen = admin.selectbox(key="alerts-chosen").value
    assert admin.selectbox(key=f"triage-status-{chosen['id']}").value == "open"


def _id(option: str) -> int:
    return int(option.split(" ", 1)[0].lstrip("#"))


def test_site_view_waits_for_a_whole_range(admin):
    open_page(admin, "Site view")
    today = admin.date_input(key="site-view-range").value[1]
    admin.date_input(key="site-view-range").set_value((today,)).run()
    assert not admin.exception
    assert any("first and the last day" in i.value for i in admin.info)


def test_pilot_report_explains_a_period_it_cannot_cover(admin):
    open_page(admin, "Reports")
    admin.radio(key="reports-section").set_value("Pilot report").run()
    today = admin.date_input(key="pilot-end").value - timedelta(days=1)
    admin.date_input(key="pilot-start").set_value(today - timedelta(days=730)).run()
    assert not admin.exception
    assert any("at most 366 days" in e.value for e in admin.error)


def test_data_health_of_sites_without_meters(at, client):
    user = signup(client, org="Bare Site Co")
    r = client.post(
        "/api/v1/sites",
        json={"site_id": "bare", "name": "Bare", "timezone": "Europe/Rome"},
        headers=user["headers"],
    )
    assert r.status_code == 201
    sign_in(at, user["email"], PASSWORD)
    for title in ("Dashboard", "Data health", "Site view", "Opportunities & savings", "Reports"):
        open_page(at, title)


def test_dashboard_counts_meters_that_have_no_baseline_yet(clock, at, client, engine):
    user = signup(client, org="Young Plant")
    make_site(client, user["headers"], "young", meters=("main-incomer",))
    now = floor_hour(clock.now)
    index = pd.date_range(now - timedelta(hours=72), now, freq="h", inclusive="left")
    ingest_series(engine, user["org_id"], "young", "main-incomer", index, [100.0] * len(index))
    sign_in(at, user["email"], PASSWORD)
    shown = {m.label: m.value for m in at.metric}
    assert shown["Last 24 h"] == "2,400 kWh"  # 24 hours x 100 kWh, baseline or not
    assert shown["Cost, last 24 h"] == "EUR 480"
    assert shown["Baseline, same hours"] == "–"


def test_upload_of_a_header_only_csv(admin):
    open_page(admin, "Upload CSV")
    admin.file_uploader[0].upload(
        "empty.csv", b"site_id,meter_id,timestamp_utc,value\n", "text/csv"
    )
    admin.run()
    assert not admin.exception
    assert any("no rows below its header" in i.value for i in admin.info)
    assert not [b for b in admin.button if b.label.startswith("Ingest")]


def _many_alerts(engine, org_id: int, n: int, *, acknowledged: int = 0) -> list[int]:
    """`n` data-gap alerts on one meter, one a day going back from today; ids newest first."""
    from core.alerts import fingerprint
    from core.sites import get_meter

    newest = floor_hour(datetime.now(UTC))
    with session_scope(engine) as session:
        site, meter = get_meter(session, org_id=org_id, site_id="gaps", meter_id="main-incomer")
        made = []
        for i in range(n):
            start = newest - timedelta(days=i + 1)
            alert = Alert(
                org_id=org_id, site_pk=site.id, meter_pk=meter.id, rule="data-gap",
                fingerprint=fingerprint(org_id, meter.id, "data-gap", start), start=start,
                end=start + timedelta(hours=4), hours=4, severity="low",
                status="acknowledged" if i < acknowledged else "open",
                evidence={"missing_hours": 4},
            )  # fmt: skip
            session.add(alert)
            session.flush()
            made.append(alert.id)
    return made


def test_alerts_page_through_more_than_a_hundred(at, client, engine):
    user = signup(client, org="Many Alerts")
    make_site(client, user["headers"], "gaps", meters=("main-incomer",))
    ids = _many_alerts(engine, user["org_id"], 130, acknowledged=20)
    sign_in(at, user["email"], PASSWORD)
    open_page(at, "Alerts")
    at.selectbox(key="alerts-status").set_value("all").run()
    assert not at.exception
    assert any("alerts 1–100 of 130" in c.value for c in at.caption)
    assert at.number_input(key="alerts-page").max == 2
    table = at.dataframe[0].value
    assert table["id"].tolist() == ids[:100]  # newest first
    assert len(at.selectbox(key="alerts-chosen").options) == 100
    # The second page holds the 30 oldest.
    at.number_input(key="alerts-page").set_value(2).run()
    assert not at.exception
    assert any("alerts 101–130 of 130" in c.value for c in at.caption)
    assert at.dataframe[0].value["id"].tolist() == ids[100:]
    assert at.selectbox(key="alerts-chosen").value["id"] == ids[100]
    # A filter with a single page of results brings the table back to its first page.
    at.selectbox(key="alerts-status").set_value("acknowledged").run()
    assert not at.exception
    assert any(c.value.startswith("20 alerts, newest first") for c in at.caption)
    assert at.dataframe[0].value["id"].tolist() == ids[:20]
    assert not [n for n in at.number_input if n.key == "alerts-page"]
    # And the open ones: 110, again over two pages, from the first.
    at.selectbox(key="alerts-status").set_value("open").run()
    assert any("alerts 1–100 of 110" in c.value for c in at.caption)
    assert at.dataframe[0].value["id"].tolist() == ids[20:120]


def test_alert_start_times_are_on_the_site_clock(admin, demo):
    """The Dashboard's and the Alerts page's start column: local time with its zone."""
    rome = ("CET", "CEST")
    latest = admin.dataframe[1].value  # the Dashboard's latest open alerts
    assert latest["start_utc"].str.endswith(rome).all()
    open_page(admin, "Alerts")
    table = admin.dataframe[0].value
    assert table["start_utc"].str.endswith(rome).all()
    assert any(
        "times and charts in the site's time zone, Europe/Rome" in c.value for c in admin.caption
    )


def test_an_upload_failing_half_way_keeps_and_scans_what_it_stored(
    admin, demo, engine, monkeypatch
):
    """Chunks of 5,000 rows commit one by one; the database fails on the second: the page
    says how many rows are stored and the stored hours are scanned for alerts."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    import core.ingestion

    real, calls = core.ingestion.ingest_records, []

    def second_chunk_fails(*args, **kwargs):
        if len(kwargs["records"]) >= 1000:  # a chunk of the ingest, not the page's preview
            calls.append(1)
        if len(calls) == 2:
            raise OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
        return real(*args, **kwargs)

    open_page(admin, "Upload CSV")
    # A new meter of site-23 (auto-registered), silent for days after its 5,000 hours.
    start = pd.Timestamp("2025-06-01T00:00:00Z")
    rows = ["site_id,meter_id,timestamp_utc,value,unit"]
    rows += [
        f"site-23,new-line,{(start + pd.Timedelta(hours=h)).strftime('%Y-%m-%dT%H:%M:%SZ')},5,kWh"
        for h in range(6000)
    ]
    with session_scope(engine) as session:
        session.exec(
            select(Site).where(Site.site_id == "site-23")
        ).one().auto_register_meters = True
    admin.file_uploader[0].upload("backfill.csv", "\n".join(rows).encode(), "text/csv").run()
    monkeypatch.setattr(core.ingestion, "ingest_records", second_chunk_fails)
    next(b for b in admin.button if b.label.startswith("Ingest")).click().run()
    assert not admin.exception, admin.exception[0].stack_trace if admin.exception else ""
    [error] = [e.value for e in admin.error]
    assert "5,000 rows were stored before it stopped" in error and "again" in error
    with session_scope(engine) as session:
        meter = session.exec(select(Meter).where(Meter.meter_id == "new-line")).one()
        stored = session.exec(select(Reading.id).where(Reading.meter_pk == meter.id)).all()
        assert len(stored) == 5000
        gaps = session.exec(
            select(Alert).where(Alert.meter_pk == meter.id, Alert.rule == "data-gap")
        ).all()
    assert len(gaps) == 1  # the scan of the stored hours saw the meter fall silent
