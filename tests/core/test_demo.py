"""The synthetic plant and the demo organisation."""

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlmodel import Session

from core.demo import DEMO_ORG, ENERGY_METERS, RULES, generate_plant, load_demo
from core.models import Meter, Organization, Reading

END = pd.Timestamp("2025-12-01 00:00", tz="UTC")


def test_plant_is_deterministic_per_seed():
    a, b, c = (generate_plant(s, end=END) for s in (1, 1, 2))
    pd.testing.assert_series_equal(a.kwh["main-incomer"], b.kwh["main-incomer"])
    assert not a.kwh["main-incomer"].equals(c.kwh["main-incomer"])


def test_main_incomer_holds_the_sub_meters_waste_once():
    plant = generate_plant(5, end=END)
    for rule in RULES:
        subs = sum(plant.true_waste_kwh(m, rule) for m in ENERGY_METERS[1:])
        assert plant.true_waste_kwh("main-incomer", rule) == np.float64(subs)
        assert subs > 0, rule
    # The incomer is the sum of its sub-meters plus other load: never less than their sum.
    total_subs = sum(plant.kwh[m] for m in ENERGY_METERS[1:])
    assert ((plant.kwh["main-incomer"] - total_subs).dropna() >= 0).all()


def test_plant_has_the_documented_gaps():
    plant = generate_plant(7, end=END)
    hours = len(plant.index)
    completeness = plant.kwh["hvac-floor1"].notna().mean()
    assert 0.9 < completeness < 0.95
    outage = plant.kwh["main-incomer"].isna()
    assert outage.sum() == 6 and hours == 90 * 24


def test_demo_is_found_by_its_user_not_by_an_org_name(client, settings, engine):
    from tests.factories import signup

    signup(client, org=DEMO_ORG)  # somebody else's org with the same name
    out = load_demo(engine, settings=settings, days=20, now=END)
    assert out["created"]
    load_demo(engine, settings=settings, days=20, now=END, reset=True)
    with Session(engine) as s:
        names = s.execute(select(Organization.name)).scalars().all()
    assert names.count(DEMO_ORG) == 2  # the stranger's org survived the reset


def test_demo_loads_once_and_reset_rebuilds_it(settings, engine):
    first = load_demo(engine, settings=settings, days=20, now=END)
    assert first["created"] and first["records"] > 20 * 24 * 7.5
    again = load_demo(engine, settings=settings, days=20, now=END)
    assert not again["created"] and again["records"] == 0
    with Session(engine) as s:
        assert (
            s.execute(
                select(func.count()).select_from(Organization).where(Organization.name == DEMO_ORG)
            ).scalar_one()
            == 1
        )
        kinds = set(s.execute(select(Meter.kind)).scalars())
        assert kinds == {"main_incomer", "sub_meter", "temperature", "production"}
    rebuilt = load_demo(engine, settings=settings, days=20, now=END, reset=True)
    assert rebuilt["created"] and rebuilt["password"] != first["password"]
    with Session(engine) as s:
        assert (
            s.execute(select(func.count()).select_from(Reading)).scalar_one() == rebuilt["records"]
        )
