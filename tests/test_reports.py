"""Reports: weekly numbers equal the readings' (DST weeks included), the scorecard's thresholds,
the pilot report's figures, and HTML that needs no network."""

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from sqlmodel import select

from core import reports
from core.accounts import Principal
from core.alerts import scan_org, update_alert
from core.db import session_scope
from core.ingestion import ingest_records
from core.models import Alert, AlertStatus, AlertUpdate, Meter, Role
from tests.factories import PLANT_END as END
from tests.factories import ingest_series, make_site, plant_org, plant_series, signup

TZ = "Europe/Rome"


def _records(site_id, meter_id, index, values):
    return [
        {
            "site_id": site_id,
            "meter_id": meter_id,
            "timestamp_utc": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "value": float(v),
        }
        for ts, v in zip(index, values, strict=True)
    ]


def _ingest(engine, org_id, records):
    with session_scope(engine) as session:
        out = ingest_records(
            session,
            principal=Principal(org_id=org_id, role=Role.admin, kind="user"),
            records=records,
        )
    return out


@pytest.mark.parametrize(
    ("week", "monday", "hours"),
    [
        ("2026-W43", "2026-10-19", 169),  # clocks go back on Sunday 25 October
        ("2026-W13", "2026-03-23", 167),  # clocks go forward on Sunday 29 March
        ("2026-W45", "2026-11-02", 168),
    ],
)
def test_weekly_numbers_equal_the_readings(client, engine, week, monday, hours):
    a = signup(client, org="Weekly Org")
    # "spare" was registered today and never reported: past weeks expect nothing of it.
    make_site(client, a["headers"], "rome", meters=("main-incomer", "compressor-bank", "spare"))
    zone = ZoneInfo(TZ)
    start = datetime.fromisoformat(monday).replace(tzinfo=zone).astimezone(UTC)
    # A day either side, so the week's edges are tested too.
    index = pd.date_range(start - timedelta(days=1), periods=(9 * 24), freq="h")
    rng = np.random.default_rng(3)
    main = rng.uniform(50, 150, len(index)).round(3)
    comp = rng.uniform(5, 25, len(index)).round(3)
    missing = set(rng.choice(len(index), 20, replace=False))
    keep = [i for i in range(len(index)) if i not in missing]
    _ingest(engine, a["org_id"], _records("rome", "main-incomer", index[keep], main[keep]))
    _ingest(engine, a["org_id"], _records("rome", "compressor-bank", index, comp))

    with session_scope(engine) as session:
        report = reports.weekly_report(
            session,
            org_id=a["org_id"],
            week=week,
            site_id="rome",
            now=datetime(2026, 12, 1, tzinfo=UTC),
        )
    [period] = report["periods"]
    assert period["hours"] == hours
    assert period["start_local"].startswith(f"{monday}T00:00:00")
    # Directly from the readings: the local week is [Monday 00:00, next Monday 00:00).
    end = (datetime.fromisoformat(monday) + timedelta(days=7)).replace(tzinfo=zone).astimezone(UTC)
    in_week = (index >= start) & (index < end)
    rows = {r["meter_id"]: r for r in report["completeness"]["meters"]}
    assert set(rows) == {"main-incomer", "compressor-bank"}
    kept_in_week = sum(1 for i in keep if in_week[i])
    assert rows["main-incomer"]["expected_points"] == hours
    assert rows["main-incomer"]["actual_points"] == kept_in_week
    assert rows["main-incomer"]["completeness_pct"] == round(100 * kept_in_week / hours, 1)
    assert rows["compressor-bank"]["actual_points"] == hours
    assert rows["main-incomer"]["kwh"] == pytest.approx(
        sum(main[i] for i in keep if in_week[i]), abs=0.05
    )
    # kWh per local day: seven days, the DST Sunday with its 23 or 25 hours.
    local = index.tz_convert(TZ)
    days = {d["date"]: d["kwh"] for d in report["daily_kwh"] if d["meter_id"] == "compressor-bank"}
    assert len(days) == 7
    for day, kwh in days.items():
        assert kwh == pytest.approx(comp[(local.date.astype(str) == day)].sum(), abs=0.05)
    sunday = (datetime.fromisoformat(monday) + timedelta(days=6)).date().isoformat()
    assert sum(1 for d in local.date.astype(str) if d == sunday) == 24 + hours - 168


def test_weekly_report_collects_errors_alerts_confirmations_and_avoided_energy(client, engine):
    a = signup(client, org="Review Org")
    make_site(client, a["headers"], "rome", meters=("main-incomer",))
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    week = f"{now.isocalendar()[0]}-W{now.isocalendar()[1]:02d}"
    start, _ = reports.week_bounds(week, TZ)
    # Ingest errors this week: two bad records next to good ones.
    records = _records(
        "rome",
        "main-incomer",
        pd.date_range(start - timedelta(days=3), periods=2, freq="h"),
        [1, 2],
    )
    bad = [dict(records[0], value=-5), dict(records[1], unit="MWh")]
    r = client.post("/api/v1/timeseries/batch", json=records + bad, headers=a["headers"])
    assert r.json()["failed"] == 2
    # The meter then falls silent: a data-gap alert, acknowledged this week with its cause.
    scan_org(engine, org_id=a["org_id"], now=now)
    with session_scope(engine) as session:
        alert_id = session.exec(select(Alert.id).where(Alert.org_id == a["org_id"])).one()
        update_alert(
            session,
            org_id=a["org_id"],
            alert_id=alert_id,
            data=AlertUpdate(status=AlertStatus.acknowledged, root_cause="relay PC rebooted"),
            user_id=None,
            now=start + timedelta(hours=1),
        )
    with session_scope(engine) as session:
        report = reports.weekly_report(session, org_id=a["org_id"], week=week, now=now)
    assert report["errors_by_code"] == {"INVALID_UNIT": 1, "INVALID_VALUE": 1}
    assert {(e["meter_id"], e["code"]) for e in report["errors_by_meter"]} == {
        ("main-incomer", "INVALID_UNIT"),
        ("main-incomer", "INVALID_VALUE"),
    }
    assert [c["root_cause"] for c in report["confirmed_issues"]] == ["relay PC rebooted"]
    assert report["avoided"]["kwh"] == 0  # a data gap saves nothing


def test_avoided_energy_from_a_resolved_waste_alert(client, engine):
    a = plant_org(client, engine, "Fix Org")
    scan_org(engine, org_id=a["org_id"], now=END)
    week = "2026-W49"  # Monday 30 November
    start, end = reports.week_bounds(week, TZ)
    with session_scope(engine) as session:
        alert = session.exec(select(Alert).where(Alert.rule == "night-load")).first()
        update_alert(
            session,
            org_id=a["org_id"],
            alert_id=alert.id,
            data=AlertUpdate(
                status=AlertStatus.resolved, action="night shutdown", impact_kwh_per_week=168
            ),
            user_id=None,
            now=start + timedelta(hours=24),
        )
    with session_scope(engine) as session:
        report = reports.weekly_report(
            session, org_id=a["org_id"], week=week, now=end + timedelta(days=1)
        )
    # 168 kWh a week = 1 kWh an hour, over the 168 - 24 hours after the fix.
    assert report["avoided"]["kwh"] == 144.0
    assert report["avoided"]["money"] == pytest.approx(144 * 0.20)
    assert report["confirmed_issues"][0]["action"] == "night shutdown"

    # The idling comes back on Wednesday night: what it wastes is not saved. The alert holding
    # it is labelled weekend-load as a whole (it runs on past the week, and those hours are
    # another period's), each hour keeps its rule; a dismissed alert's hours do not count.
    def hours(first: datetime, n: int, kwh: float, rule: str) -> dict:
        return {
            (first + timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ"): [kwh + 7.5, 7.5, rule]
            for h in range(n)
        }

    back = start + timedelta(days=2, hours=22)
    with session_scope(engine) as session:
        for rule, status, hourly in (
            (
                "weekend-load",
                AlertStatus.open,
                hours(back, 8, 10.0, "night-load")
                | hours(end - timedelta(hours=2), 6, 10.0, "night-load")
                | hours(end + timedelta(hours=10), 4, 9.0, "weekend-load"),
            ),
            ("night-load", AlertStatus.dismissed, hours(back, 8, 40.0, "night-load")),
        ):
            first, last = min(hourly), max(hourly)
            session.add(
                Alert(
                    org_id=a["org_id"],
                    site_pk=alert.site_pk,
                    meter_pk=alert.meter_pk,
                    rule=rule,
                    status=status,
                    fingerprint=f"recurrence-{status}",
                    start=datetime.fromisoformat(first),
                    end=datetime.fromisoformat(last) + timedelta(hours=1),
                    hours=len(hourly),
                    wasted_kwh=sum(x - y for x, y, _ in hourly.values()),
                    evidence={"hourly": hourly},
                )
            )
    with session_scope(engine) as session:
        report = reports.weekly_report(
            session, org_id=a["org_id"], week=week, now=end + timedelta(days=1)
        )
    [item] = report["avoided"]["alerts"]
    # 8 h x 10 kWh on Wednesday night and the week's last 2 h x 10 kWh: 100 kWh.
    assert (item["estimated_kwh"], item["recurred_kwh"], item["avoided_kwh"]) == (144, 100, 44)


def test_weekly_review_keeps_open_alerts_in_view_and_drops_dismissed_focus(client, engine):
    a = plant_org(client, engine, "Carry Org")
    scan_org(engine, org_id=a["org_id"], now=END)
    week, now = "2026-W49", END + timedelta(days=7)  # the week after the data

    def review() -> dict:
        with session_scope(engine) as session:
            return reports.weekly_report(session, org_id=a["org_id"], week=week, now=now)

    with session_scope(engine) as session:
        open_ids = set(session.exec(select(Alert.id).where(Alert.org_id == a["org_id"])).all())
    first = review()
    assert first["new_alerts"] == [] and {x["id"] for x in first["still_open"]} == open_ids
    focus = {(o["meter_id"], o["rule"]) for o in first["next_week_focus"]}
    assert ("compressor-bank", "night-load") in focus
    with session_scope(engine) as session:
        night = session.exec(
            select(Alert)
            .join(Meter, Meter.id == Alert.meter_pk)
            .where(Meter.meter_id == "compressor-bank", Alert.rule == "night-load")
        ).one()
        update_alert(
            session,
            org_id=a["org_id"],
            alert_id=night.id,
            data=AlertUpdate(status=AlertStatus.dismissed, notes="planned test run"),
            user_id=None,
        )
    second = review()
    assert night.id not in {x["id"] for x in second["still_open"]}
    assert ("compressor-bank", "night-load") not in {
        (o["meter_id"], o["rule"]) for o in second["next_week_focus"]
    }
    assert "Still open from earlier weeks" in reports.render_markdown(second)


@pytest.mark.parametrize(
    ("coverage", "gap", "actionable", "high", "expected"),
    [
        (95.0, 1.0, 3, 10.0, [False, True, True, True]),
        (95.01, 1.0, 3, 10.0, [True, True, True, True]),
        (99.0, 2.0, 3, 10.0, [True, False, True, True]),
        (99.0, 1.99, 2, 10.0, [True, True, False, True]),
        (99.0, 1.99, 3, 0.0, [True, True, True, False]),
    ],
)
def test_scorecard_thresholds(coverage, gap, actionable, high, expected):
    card = reports.evaluate_scorecard(
        coverage_pct=coverage,
        gap_pct=gap,
        actionable=actionable,
        savings={"avoidable_kwh_high": high, "headline": "1–2 % avoidable kWh"},
    )
    assert [m["passed"] for m in card["metrics"]] == expected
    assert card["passed"] is all(expected)


@pytest.mark.parametrize(
    ("coverage", "gap", "shown"),
    [
        (94.96, 1.96, ["94.96 %", "1.96 %"]),  # not "95.0 %" failing, "2.0 %" passing
        (95.004, 2.0004, ["95.004 %", "2.0004 %"]),
        (98.25, 0.2, ["98.2 %", "0.2 %"]),
        (95.0, 2.0, ["95.0 %", "2.0 %"]),  # at the target: a fail, and it says so
    ],
)
def test_scorecard_values_read_on_the_side_of_their_target(coverage, gap, shown):
    card = reports.evaluate_scorecard(
        coverage_pct=coverage, gap_pct=gap, actionable=3, savings={"avoidable_kwh_high": 0}
    )
    assert [m["display"] for m in card["metrics"][:2]] == shown
    assert card["metrics"][3]["display"] == "none"


def test_pilot_report_figures_and_payback(client, engine):

    a = signup(client, org="Pilot Org")
    make_site(client, a["headers"], "plant", meters=("main-incomer", "compressor-bank"))
    index, series, _ = plant_series()
    skip = set(range(len(index) - 50, len(index) - 40))  # 10 hours missing in the last week
    for meter_id, values in series.items():
        ingest_series(
            engine,
            a["org_id"],
            "plant",
            meter_id,
            index,
            values,
            skip=skip if meter_id == "compressor-bank" else (),
        )
    scan_org(engine, org_id=a["org_id"], now=END)
    with session_scope(engine) as session:
        report = reports.pilot_report(
            session, org_id=a["org_id"], start=index[0].date(), end=END.date(), cost=1000, now=END
        )
    cov = report["coverage"]
    assert cov["expected_points"] == 2 * len(index)
    assert cov["actual_points"] == 2 * len(index) - 10
    assert cov["coverage_pct"] == round(100 * (2 * len(index) - 10) / (2 * len(index)), 2)
    assert cov["data_gap_alarm_hours"] == 10  # one 10-hour alarm on the compressor
    assert cov["data_gap_pct"] == round(100 * 10 / (2 * len(index)), 2)
    # Six weeks without history before: the first two train the baseline.
    assert report["analysis_from_utc"] == "2026-11-02T00:00:00Z"
    assert report["savings"]["avoidable_kwh_high"] > 0
    money_low, money_high = (
        report["savings"]["annual_money_low"],
        report["savings"]["annual_money_high"],
    )
    assert report["payback"]["years_best"] == round(1000 / money_high, 2)
    assert report["payback"]["years_worst"] == round(1000 / money_low, 2)
    scorecard = {m["metric"]: m for m in report["scorecard"]["metrics"]}
    assert scorecard["coverage"]["passed"] and scorecard["data_gap_hours"]["passed"]
    assert scorecard["actionable_inefficiencies"]["value"] == report["actionable_count"]
    assert any(k["rule"] == "night-load" for k in report["key_anomalies"])


def test_html_report_is_self_contained_with_its_charts(client, engine):

    a = plant_org(client, engine, "Html Org")
    with session_scope(engine) as session:
        report = reports.pilot_report(session, org_id=a["org_id"], cost=500, now=END)
    page = reports.render_html(report)
    # Nothing fetched from elsewhere: no script, stylesheet or image URLs.
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"<link[^>]+href=", page)
    markup = re.sub(r"<script[^>]*>.*?</script>", "", page, flags=re.DOTALL)
    assert "http://" not in markup and "https://" not in markup
    # plotly.js inlined once, and each chart drawn by it.
    assert page.count("Plotly.newPlot") == 3
    assert len(re.findall(r"<script", page)) >= 4
    card = {m["metric"]: m for m in report["scorecard"]["metrics"]}
    verdict = "PASS" if card["coverage"]["passed"] else "FAIL"
    coverage_row = re.search(r"<tr><td>Expected hourly points ingested</td>(.*?)</tr>", page)
    assert coverage_row, "the scorecard's coverage row"
    assert card["coverage"]["display"] in coverage_row[1] and verdict in coverage_row[1]
    md = reports.render_markdown(report)
    assert "| Metric | Value | Target | Result |" in md
    assert "## Data coverage" in md


def test_report_api_formats_and_errors(client, engine):

    a = plant_org(client, engine, "Api Org")
    h = a["headers"]
    r = client.get(
        "/api/v1/reports/weekly", params={"week": "2026-W48", "site_id": "plant"}, headers=h
    )
    assert r.status_code == 200 and r.json()["week"] == "2026-W48"
    r = client.get(
        "/api/v1/reports/weekly", params={"week": "2026-W48", "format": "html"}, headers=h
    )
    assert r.headers["content-type"].startswith("text/html")
    assert "script-src 'unsafe-inline'" in r.headers["content-security-policy"]
    assert "Weekly review 2026-W48" in r.text
    r = client.get("/api/v1/reports/weekly", params={"week": "2026-W48", "format": "md"}, headers=h)
    assert r.headers["content-type"].startswith("text/markdown") and r.text.startswith("# Weekly")
    for bad in ("2026-48", "2026-W54", "9999-W52"):
        r = client.get("/api/v1/reports/weekly", params={"week": bad}, headers=h)
        assert r.status_code == 400, bad
    r = client.get(
        "/api/v1/reports/scorecard", params={"start": "2026-10-19", "end": "2026-11-30"}, headers=h
    )
    assert r.status_code == 200
    assert [m["metric"] for m in r.json()["metrics"]] == [
        "coverage",
        "data_gap_hours",
        "actionable_inefficiencies",
        "savings_range",
    ]
    r = client.get(
        "/api/v1/reports/pilot", params={"start": "2026-11-30", "end": "2026-11-01"}, headers=h
    )
    assert r.status_code == 400
    r = client.get("/api/v1/reports/pilot", params={"start": "yesterday"}, headers=h)
    assert r.status_code == 400 and r.json()["code"] == "bad_date"
    r = client.get(
        "/api/v1/reports/pilot", params={"start": "0001-01-01T00:00:00+01:00"}, headers=h
    )
    assert r.status_code == 400
    r = client.get("/api/v1/reports/pilot", params={"cost": -1}, headers=h)
    assert r.status_code == 400
