"""Opportunities on synthetic plants with known waste, a clean plant, and no double counting."""

import pandas as pd
import pytest

from core.analytics import analyse_series
from core.baselines import fit_baseline
from core.demo import COUNTRY, TZ, generate_plant, load_demo

END = pd.Timestamp("2025-11-03", tz="UTC")


def _opps(plant, meter, train_days=60):
    split = plant.index[train_days * 24]
    train = plant.index < split
    _, _, opportunities = analyse_series(
        plant.kwh[meter],
        analysis_start=split,
        tz=TZ,
        meter_id=meter,
        site_id="site-22",
        temperature=plant.temperature,
        production=plant.production,
        country=COUNTRY,
        tariff_per_kwh=0.2,
        currency="EUR",
    )
    truth = plant.waste[meter].loc[~train]
    return {o.rule: o for o in opportunities}, truth


@pytest.mark.parametrize(
    "meter, rule, truth_rule",
    [
        ("compressor-bank", "night-load", "night"),
        ("hvac-floor1", "weekend-load", "weekend"),
        ("process-line", "spike", "spike"),
    ],
)
def test_injected_waste_is_found_with_its_kwh(meter, rule, truth_rule):
    plant = generate_plant(3, end=END, days=102, waste_from_day=60)
    found, truth = _opps(plant, meter)
    assert rule in found
    evidence = pd.DatetimeIndex(found[rule].evidence["hours_utc"])
    true_hours = truth.index[truth[truth_rule] > 0]
    assert len(evidence.intersection(true_hours)) >= 0.9 * len(true_hours)
    # The estimate is the waste in the hours it flags (other injected waste included).
    true_kwh = float(truth.loc[evidence].to_numpy().sum())
    assert found[rule].kwh_central == pytest.approx(true_kwh, rel=0.25)
    assert found[rule].kwh_low <= found[rule].kwh_high
    assert found[rule].annual_kwh_high > found[rule].kwh_high  # 42 days scaled to a year
    assert found[rule].explanation.startswith(meter)


def test_a_clean_plant_has_no_opportunities_of_size():
    # Winter: the analysed weeks stay within the training weeks' temperatures.
    end = pd.Timestamp("2025-03-01", tz="UTC")
    plant = generate_plant(3, end=end, days=102, waste_from_day=60, inject_waste=False)
    for meter in ("compressor-bank", "hvac-floor1", "process-line", "chiller-01"):
        found, _ = _opps(plant, meter)
        window_kwh = float(plant.kwh[meter].iloc[60 * 24 :].sum())
        total = sum(o.kwh_central for o in found.values())
        assert total < 0.01 * window_kwh, (meter, {r: o.kwh_central for r, o in found.items()})


def test_site_savings_count_sub_meter_waste_inside_the_main_incomer(settings, engine):
    from core.analytics import AnalyticsService
    from core.db import session_scope

    out = load_demo(engine, settings=settings, days=90, now=END)
    with session_scope(engine) as session:
        service = AnalyticsService(session, org_id=out["org_id"])
        site = service.site_opportunities("site-22", start=END - pd.Timedelta(days=28), end=END)
    rows = site["opportunities"]
    assert site["totals_from"] == "main incomer"
    counted = [r for r in rows if r["counted"]]
    attribution = [r for r in rows if not r["counted"]]
    assert {r["meter_id"] for r in counted} == {"main-incomer"}
    assert ("compressor-bank", "night-load") in {(r["meter_id"], r["rule"]) for r in attribution}
    # Totals are the incomer's findings only: the sub-meters' kWh are not added on top.
    assert site["savings"]["avoidable_kwh_high"] == pytest.approx(
        sum(r["avoidable_kwh_high"] for r in counted), abs=1
    )
    assert site["savings"]["avoidable_kwh_high"] < sum(r["avoidable_kwh_high"] for r in rows)
    assert site["savings"]["avoidable_kwh_high"] < site["savings"]["consumption_kwh"]
    assert "% avoidable kWh" in site["savings"]["narrative"]


def _incomer_opps(plant):
    split = plant.index[60 * 24]
    _, _, found = analyse_series(
        plant.kwh["main-incomer"],
        analysis_start=split,
        tz=TZ,
        meter_id="main-incomer",
        temperature=plant.temperature,
        production=plant.production,
        country=COUNTRY,
        tariff_per_kwh=0.2,
        currency="EUR",
        baseload_benchmark=0.05,
        is_main_incomer=True,
    )
    return found, plant.index >= split


def test_high_baseload_does_not_count_night_waste_again():
    plant = generate_plant(3, end=END, days=102, waste_from_day=60)
    found, window = _incomer_opps(plant)
    truth = float(plant.waste["main-incomer"].loc[window].to_numpy().sum())
    waste_rules = sum(o.kwh_central for o in found if o.rule != "high-baseload")
    assert waste_rules == pytest.approx(truth, rel=0.25)
    # A normal baseload, judged on the expected load, is not inflated by the night waste.
    clean, _ = _incomer_opps(
        generate_plant(3, end=END, days=102, waste_from_day=60, inject_waste=False)
    )
    high = [o for o in found if o.rule == "high-baseload"]
    high_c = [o for o in clean if o.rule == "high-baseload"]
    assert len(high) == len(high_c) == 1
    assert high[0].kwh_high == pytest.approx(high_c[0].kwh_high, rel=0.1)


def test_a_meter_that_used_nothing_has_no_baseline_not_an_error():
    index = pd.date_range("2025-01-06", periods=30 * 24, freq="h", tz="UTC")
    fit = fit_baseline(pd.Series(0.0, index=index), tz=TZ)
    assert not fit.ok and "no consumption" in fit.reason
