"""Analytics endpoints over the demo factory: shapes, units, scoping, too little data."""

import pandas as pd
import pytest

from core.demo import load_demo
from tests.factories import bearer, login, make_site, signup

END = pd.Timestamp("2025-11-03", tz="UTC")
RANGE = {"start": "2025-10-06T00:00:00Z", "end": "2025-11-03T00:00:00Z"}


@pytest.fixture(name="demo")
def demo_fixture(client, settings, engine):
    out = load_demo(engine, settings=settings, days=90, now=END)
    return {"headers": bearer(login(client, out["email"], out["password"]))}


def test_opportunities_rank_the_injected_waste_with_money(client, demo):
    r = client.get(
        "/api/v1/analytics/opportunities",
        params={"site_id": "site-22", **RANGE},
        headers=demo["headers"],
    )
    assert r.status_code == 200
    body = r.json()
    counted = {(o["meter_id"], o["rule"]) for o in body["opportunities"] if o["counted"]}
    where = {(o["meter_id"], o["rule"]) for o in body["opportunities"] if not o["counted"]}
    assert ("main-incomer", "night-load") in counted
    assert ("compressor-bank", "night-load") in where  # attribution inside the incomer
    money = [o["annual_money_high"] for o in body["opportunities"] if o["counted"]]
    assert money == sorted(money, reverse=True)
    first = body["opportunities"][0]
    assert first["currency"] == "EUR" and first["annual_kwh_high"] >= first["avoidable_kwh_high"]
    assert "avoidable kWh" in body["savings"]["narrative"]


def test_baseline_reports_g14_fit_band_and_a_week_of_forecast(client, demo):
    r = client.get(
        "/api/v1/analytics/baseline",
        params={"site_id": "site-22", "meter_id": "process-line", **RANGE},
        headers=demo["headers"],
    )
    body = r.json()
    assert body["ok"] and body["uses_production"]
    assert body["fit"]["ashrae_g14_hourly"]["limits"] == {"cv_rmse_pct": 30.0, "nmbe_pct": 10.0}
    assert len(body["series"]) == 28 * 24 and len(body["forecast"]) == 7 * 24
    point = body["series"][100]
    assert point["lower_kwh"] <= point["expected_kwh"] <= point["upper_kwh"]


def test_kpis_benchmark_and_anomalies_answer(client, demo):
    q = {"site_id": "site-22", "meter_id": "main-incomer", **RANGE}
    kpis = client.get("/api/v1/analytics/kpis", params=q, headers=demo["headers"]).json()
    assert kpis["unit"] == "kWh" and 0 < kpis["load_factor"] < 1
    bench = client.get("/api/v1/analytics/benchmark", params=q, headers=demo["headers"]).json()
    assert bench["indicative"] is True
    q["meter_id"] = "compressor-bank"
    events = client.get("/api/v1/analytics/anomalies", params=q, headers=demo["headers"]).json()
    assert any(e["kind"] == "sustained" and e["excess_kwh"] > 100 for e in events["events"])
    org = client.get("/api/v1/analytics/savings", headers=demo["headers"], params=RANGE).json()
    assert org["scope"] == "organisation" and len(org["sites"]) == 2


def test_too_little_history_is_a_clear_answer_not_an_error(client):
    admin = signup(client)
    make_site(client, admin["headers"], "site-new")
    r = client.get(
        "/api/v1/analytics/baseline",
        params={"site_id": "site-new", "meter_id": "main-incomer"},
        headers=admin["headers"],
    )
    assert r.status_code == 200
    assert r.json()["ok"] is False and "insufficient data" in r.json()["reason"]
    r = client.get(
        "/api/v1/analytics/opportunities", params={"site_id": "site-new"}, headers=admin["headers"]
    )
    assert r.json()["opportunities"] == [] and r.json()["meters_without_baseline"]


def test_driver_meters_are_not_analysed_as_energy(client, demo):
    r = client.get(
        "/api/v1/analytics/baseline",
        params={"site_id": "site-22", "meter_id": "outdoor-temp"},
        headers=demo["headers"],
    )
    assert r.status_code == 400


@pytest.mark.parametrize(
    "path", ["kpis", "benchmark", "baseline", "anomalies", "opportunities", "savings"]
)
def test_another_org_cannot_analyse_the_demo(client, demo, path):
    other = signup(client, org="Other")
    r = client.get(
        f"/api/v1/analytics/{path}",
        params={"site_id": "site-22", "meter_id": "main-incomer"},
        headers=other["headers"],
    )
    assert r.status_code == 404
    assert "Bologna" not in r.text


def test_kpis_of_a_driver_meter_are_refused(client, demo):
    r = client.get(
        "/api/v1/analytics/kpis",
        params={"site_id": "site-22", "meter_id": "outdoor-temp"},
        headers=demo["headers"],
    )
    assert r.status_code == 400


def test_meters_cannot_switch_between_energy_and_driver(client, demo):
    url = "/api/v1/sites/site-22/meters/outdoor-temp"
    assert client.patch(url, json={"kind": "sub_meter"}, headers=demo["headers"]).status_code == 400
    url = "/api/v1/sites/site-22/meters/chiller-01"
    r = client.patch(url, json={"kind": "main_incomer"}, headers=demo["headers"])
    assert r.status_code == 200


def test_training_window_is_configurable(client, demo):
    q = {"site_id": "site-22", "meter_id": "process-line", **RANGE}
    default = client.get("/api/v1/analytics/baseline", params=q, headers=demo["headers"]).json()
    r = client.get(
        "/api/v1/analytics/baseline", params={**q, "training_weeks": 1}, headers=demo["headers"]
    )
    assert r.status_code == 400
    # 8 weeks asked, a year allowed: the demo's 90 days give about 62 days before `start`.
    assert default["training_start_utc"] < "2025-08-10"


@pytest.mark.parametrize(
    "params, says",
    [
        # 367 days: one more than an analysis may span.
        ({"start": "2024-01-01T00:00:00Z", "end": "2025-01-02T00:00:00Z"}, "366 days"),
        # Found by the fuzzer: the default start (28 days before end) would precede the year 1.
        ({"end": "0001-01-01T02:19:17Z"}, "years 1 and 9999"),
    ],
    ids=["367-days", "before-year-1"],
)
@pytest.mark.parametrize("path", ["kpis", "anomalies", "benchmark", "baseline"])
def test_windows_too_long_or_out_of_range_are_400(client, path, params, says):
    admin = signup(client)
    make_site(client, admin["headers"], "site-w")
    r = client.get(
        f"/api/v1/analytics/{path}",
        params={"site_id": "site-w", "meter_id": "main-incomer", **params},
        headers=admin["headers"],
    )
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert says in r.json()["detail"]
