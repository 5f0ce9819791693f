"""The analytics public surface on hand-made series: KPIs, benchmark, anomalies."""

import numpy as np
import pandas as pd
import pytest

from core.anomalies import detect_anomalies
from core.kpis import benchmark_against_industry, compute_kpis
from core.opportunities import Schedule

TZ = "Europe/Rome"


def _week(values_by_hour) -> pd.Series:
    # Monday 2025-12-01 00:00 local = 2025-11-30 23:00Z
    index = pd.date_range("2025-11-30 23:00", periods=168, freq="h", tz="UTC")
    return pd.Series([values_by_hour(t.tz_convert(TZ)) for t in index], index=index, dtype=float)


def test_compute_kpis_exact_numbers():
    # 100 kWh on weekday shifts (06-22), 10 kWh at night, 20 kWh at weekends; one hour missing.
    kwh = _week(lambda t: 20.0 if t.day_of_week >= 5 else (100.0 if 6 <= t.hour < 22 else 10.0))
    kwh.iloc[3] = np.nan  # Monday 03:00 local, a night hour
    k = compute_kpis(kwh, tz=TZ, schedule=Schedule(), country=None)
    night, shift, weekend = 5 * 8 - 1, 5 * 16, 48
    total = night * 10 + shift * 100 + weekend * 20
    assert k["hours"] == 168 and k["hours_with_data"] == 167
    assert k["completeness_pct"] == 99.4
    assert k["total_kwh"] == total == 9350
    assert k["peak_kwh"] == 100.0
    assert k["mean_kwh"] == round(total / 167, 3)
    assert k["load_factor"] == round(total / 167 / 100, 4)
    assert k["baseload_kwh"] == 10.0
    assert k["night_share"] == round(night * 10 / total, 4)
    assert k["weekend_share"] == round(weekend * 20 / total, 4)


def test_holidays_count_as_weekend_in_kpis():
    kwh = _week(lambda t: 50.0)
    with_holiday = compute_kpis(kwh, tz=TZ, country="IT")  # Monday 2025-12-08 is not in range
    kwh2 = kwh.copy()
    kwh2.index = kwh2.index + pd.Timedelta(days=7)  # the week of 8 December (Immacolata)
    k = compute_kpis(kwh2, tz=TZ, country="IT")
    assert k["weekend_share"] == pytest.approx(with_holiday["weekend_share"] + 24 / 168, abs=1e-3)


def test_benchmark_says_where_each_kpi_stands_and_that_ranges_are_indicative():
    kpis = {"baseload_ratio": 0.5, "load_factor": 0.5, "night_share": 0.01, "weekend_share": None}
    out = benchmark_against_industry(kpis, "metalworking")
    verdicts = {r["kpi"]: r["verdict"] for r in out["kpis"]}
    assert verdicts == {
        "baseload_ratio": "above",
        "load_factor": "within",
        "night_share": "below",
        "weekend_share": None,
    }
    assert out["indicative"] is True and out["source"]
    assert benchmark_against_industry(kpis, "unknown-sector")["sector"] == "general"


def test_detect_anomalies_merges_hours_into_events_with_excess():
    index = pd.date_range("2025-12-01", periods=12, freq="h", tz="UTC")
    band = pd.DataFrame({"expected": 10.0, "lower": 8.0, "upper": 12.0}, index=index)
    actual = pd.Series(10.0, index=index)
    actual.iloc[2] = 40.0  # a one-hour spike
    actual.iloc[5:9] = [15.0, 16.0, np.nan, 17.0]  # sustained, one missing hour inside
    actual.iloc[10] = 2.0  # below the band
    events = detect_anomalies(actual, band)
    assert [
        (e.start.hour, e.hours, e.direction, e.kind, e.excess_kwh, e.peak_kwh) for e in events
    ] == [
        (2, 1, "above", "spike", 30.0, 40.0),
        (5, 3, "above", "sustained", 18.0, 17.0),
        (10, 1, "below", "spike", -8.0, 2.0),
    ]
    assert events[0].severity == "high"
    assert detect_anomalies(actual, band, min_excess_kwh=20) == [events[0]]


def test_annualising_scales_from_the_hours_that_have_data():
    from core.opportunities import Opportunity

    o = Opportunity(
        rule="night-load",
        site_id="s",
        meter_id="m",
        window_hours=200,
        observed_hours=100,
        hours=10,
        kwh_low=5.0,
        kwh_high=10.0,
        currency="EUR",
        tariff_per_kwh=0.2,
        confidence="high",
        explanation="",
    )
    assert o.annual_kwh_high == 10.0 * 8760 / 100
    assert o.to_dict()["annual_money_low"] == round(5.0 * 8760 / 100 * 0.2)
