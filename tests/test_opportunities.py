"""Opportunities on synthetic plants with known waste, a clean plant, and no double counting."""

import pandas as pd
import pytest

from core.baselines import fit_baseline
from core.demo import COUNTRY, TZ, generate_plant, load_demo
from core.opportunities import Schedule, find_opportunities

END = pd.Timestamp("2025-11-03", tz="UTC")


def _opps(plant, meter, train_days=60):
    split = plant.index[train_days * 24]
    train = plant.index < split
    fit = fit_baseline(
        plant.kwh[meter][train],
        tz=TZ,
        temperature=plant.temperature,
        production=plant.production,
        country=COUNTRY,
    )
    band = fit.predict(
        plant.index[~train], temperature=plant.temperature, production=plant.production
    )
    found = find_opportunities(
        plant.kwh[meter],
        fit,
        band,
        site_id="site-22",
        meter_id=meter,
        tz=TZ,
        schedule=Schedule(),
        country=COUNTRY,
        tariff_per_kwh=0.2,
        currency="EUR",
    )
    truth = plant.waste[meter].loc[~train]
    return {o.rule: o for o in found}, truth


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
    assert {r["meter_id"] for r in rows if not r["counted"]} <= {"main-incomer"}
    counted = [r for r in rows if r["counted"]]
    assert sum(r["avoidable_kwh_high"] for r in counted) == pytest.approx(
        site["savings"]["avoidable_kwh_high"], abs=1
    )
    assert site["savings"]["avoidable_pct_high"] < 100
    assert "% avoidable kWh" in site["savings"]["narrative"]
