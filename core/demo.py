"""A synthetic factory with labelled waste, and the demo organisation built from it.

`generate_plant` is deterministic for a seed: the same plant, the same noise, the same injected
inefficiencies. Alongside the meter data it returns the ground truth (which hours are waste,
of which kind, and how many kWh), so detection can be scored.

The plant (site-22, Europe/Rome, Italian public holidays):
- two shifts, Monday-Friday 06:00-22:00 local; weekends and holidays off;
- production (units/h) during shifts; a process line drawing 0.8 kWh/unit plus idle load;
- a compressor bank, a chiller driven by outdoor temperature above 18 °C, and floor HVAC;
- the main incomer is the sum of those sub-meters plus lighting and offices, so waste on a
  sub-meter is inside the main incomer, never on top of it.

Injected waste (kWh above what the plant would have used):
- night:    the compressor idles at 45 kWh instead of 8 kWh on weekday nights for 2 weeks;
- weekend:  HVAC runs at its shift level on Saturdays and Sundays 08:00-18:00 for 3 weekends;
- spike:    a handful of single hours with +150 to +250 kWh on the process line;
- baseload: the compressor's off-shift load creeps up by 0.6 kWh/h per week over the last
            five weeks (a slow leak).
Data gaps: a relay outage takes every meter of the site offline for 6 hours, and hvac-floor1
loses about 7 % of its hours at random.
"""

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

TZ = "Europe/Rome"
COUNTRY = "IT"
SHIFT_START, SHIFT_END = 6, 22
SITE_MAIN = "site-22"
SITE_WAREHOUSE = "site-23"
ENERGY_METERS = ("main-incomer", "compressor-bank", "chiller-01", "hvac-floor1", "process-line")
RULES = ("night", "weekend", "spike", "baseload")


@dataclass
class Plant:
    """Hourly series on a UTC hour-beginning index (NaN = missing) and the ground truth."""

    index: pd.DatetimeIndex
    kwh: dict[str, pd.Series]  # per energy meter, with gaps
    temperature: pd.Series  # °C
    production: pd.Series  # units/h
    waste: dict[str, pd.DataFrame]  # per meter: one column per rule, kWh of waste per hour
    warehouse: pd.Series = field(default_factory=pd.Series)  # site-23 main incomer
    events: list[dict] = field(default_factory=list)

    def true_waste_kwh(self, meter: str, rule: str | None = None) -> float:
        frame = self.waste[meter]
        return float(frame[rule].sum() if rule else frame.to_numpy().sum())


def _holidays(local: pd.DatetimeIndex) -> np.ndarray:
    import holidays

    cal = holidays.country_holidays(COUNTRY)
    return np.fromiter((d in cal for d in local.date), dtype=bool, count=len(local))


def generate_plant(
    seed: int,
    *,
    end: pd.Timestamp,
    days: int = 90,
    waste_from_day: int | None = None,
    inject_waste: bool = True,
) -> Plant:
    """The demo plant over `days` days of hours ending (exclusive) at `end` (UTC hour).

    Night and weekend waste and spikes are placed after `waste_from_day` (default: a fifth
    of the way in), so a benchmark can keep its training weeks clean.
    """
    first = days // 5 if waste_from_day is None else waste_from_day
    rng = np.random.default_rng(seed)
    end = pd.Timestamp(end).tz_convert("UTC").floor("h")
    index = pd.date_range(end - pd.Timedelta(days=days), end, freq="h", inclusive="left")
    n = len(index)
    local = index.tz_convert(TZ)
    hour = local.hour.to_numpy()
    weekday = local.day_of_week.to_numpy()
    holiday = _holidays(local)
    working_day = (weekday < 5) & ~holiday
    on_shift = working_day & (hour >= SHIFT_START) & (hour < SHIFT_END)
    weekend = (weekday >= 5) | holiday

    # Outdoor temperature: seasonal swing by day of year, a daily wave, weather noise.
    doy = local.day_of_year.to_numpy()
    seasonal = 14 - 11 * np.cos(2 * np.pi * (doy - 20) / 365)
    daily = 4 * np.sin(2 * np.pi * (hour - 9) / 24)
    weather = np.cumsum(rng.normal(0, 0.35, n))
    weather -= np.convolve(weather, np.ones(72) / 72, mode="same")
    temperature = seasonal + daily + weather

    production = np.where(on_shift, rng.normal(100, 8, n).clip(60, 140), 0.0)

    def noise(scale: float = 0.04) -> np.ndarray:
        return rng.normal(1, scale, n)

    process = (np.where(on_shift, 25 + 0.8 * production, 6.0)) * noise()
    compressor_base = np.where(on_shift, 60.0, 8.0)
    chiller = (np.maximum(temperature - 18, 0) * np.where(on_shift, 6.0, 2.0) + 3) * noise(0.06)
    hvac = np.where(on_shift, 30 + 1.5 * np.abs(temperature - 20), 5.0) * noise(0.05)
    other = np.where(on_shift, 45.0, 12.0) * noise(0.03)

    waste = {m: pd.DataFrame(0.0, index=index, columns=list(RULES)) for m in ENERGY_METERS}
    events: list[dict] = []
    days_index = np.arange(n) // 24

    # Night: compressor idling on weekday nights for two weeks.
    night = working_day & ((hour >= SHIFT_END) | (hour < SHIFT_START))
    start_day = int(rng.integers(first, max(days - 16, first + 1)))
    in_weeks = (days_index >= start_day) & (days_index < start_day + 14)
    night_waste = np.where(night & in_weeks, 37.0, 0.0)
    waste["compressor-bank"]["night"] = night_waste
    events.append(
        {
            "rule": "night",
            "meter": "compressor-bank",
            "start": index[start_day * 24],
            "end": index[min((start_day + 14) * 24, n - 1)],
        }
    )

    # Weekend: HVAC at shift level 08:00-18:00 on three weekends.
    weekend_day_hours = weekend & (hour >= 8) & (hour < 18)
    weekend_days = np.unique(days_index[weekend_day_hours])
    candidates = weekend_days[weekend_days >= first][:-2]
    if len(candidates) == 0:
        candidates = weekend_days[-1:]
    chosen = rng.choice(candidates, size=min(6, len(candidates)), replace=False)
    on_chosen = np.isin(days_index, chosen) & weekend_day_hours
    hvac_shift_level = (30 + 1.5 * np.abs(temperature - 20)) * noise(0.05)
    weekend_waste = np.where(on_chosen, np.maximum(hvac_shift_level - hvac, 0), 0.0)
    waste["hvac-floor1"]["weekend"] = weekend_waste
    events.append(
        {"rule": "weekend", "meter": "hvac-floor1", "days": sorted(int(d) for d in chosen)}
    )

    # Spikes: single hours on the process line.
    spike_hours = rng.choice(np.arange(max(48, first * 24), n - 48), size=6, replace=False)
    spike_waste = np.zeros(n)
    spike_waste[spike_hours] = rng.uniform(150, 250, len(spike_hours))
    waste["process-line"]["spike"] = spike_waste
    events.append(
        {"rule": "spike", "meter": "process-line", "hours": [index[h] for h in sorted(spike_hours)]}
    )

    # Baseload creep: the compressor's off-shift load rises over the last five weeks.
    creep_start = max(n - 5 * 7 * 24, n // 2)
    weeks_in = np.clip((np.arange(n) - creep_start) / (7 * 24), 0, None)
    creep = np.where(~on_shift & (np.arange(n) >= creep_start), 0.6 * weeks_in * 7, 0.0)
    waste["compressor-bank"]["baseload"] = creep
    events.append({"rule": "baseload", "meter": "compressor-bank", "start": index[creep_start]})

    if not inject_waste:  # a clean plant: same noise draws, no waste
        for frame in waste.values():
            frame[:] = 0.0
        night_waste, weekend_waste, spike_waste, creep = (np.zeros(n),) * 4
        events.clear()
    compressor = (compressor_base + night_waste + creep) * noise(0.05)
    hvac = hvac + weekend_waste
    process = process + spike_waste
    # The waste is inside the sub-meters, so the incomer carries it once.
    for rule in RULES:
        waste["main-incomer"][rule] = sum(waste[m][rule] for m in ENERGY_METERS[1:])
    main = process + compressor + chiller + hvac + other

    series = {
        "main-incomer": main,
        "compressor-bank": compressor,
        "chiller-01": chiller,
        "hvac-floor1": hvac,
        "process-line": process,
    }
    kwh = {m: pd.Series(np.round(v, 3), index=index, dtype=float) for m, v in series.items()}
    # Relay outage: every meter of the site silent for 6 hours.
    outage = int(rng.integers(n // 4, 3 * n // 4))
    for s in kwh.values():
        s.iloc[outage : outage + 6] = np.nan
    events.append({"rule": "data-gap", "meter": "*", "start": index[outage], "hours": 6})
    # One flaky meter at ~93 % completeness.
    flaky = rng.random(n) < 0.07
    kwh["hvac-floor1"][flaky] = np.nan

    warehouse_hvac = np.where(working_day & (hour >= 7) & (hour < 19), 18.0, 4.0)
    warehouse = pd.Series(np.round(warehouse_hvac * noise(0.05), 3), index=index)
    return Plant(
        index=index,
        kwh=kwh,
        temperature=pd.Series(np.round(temperature, 2), index=index),
        production=pd.Series(np.round(production, 1), index=index),
        waste=waste,
        warehouse=warehouse,
        events=events,
    )


# --- the demo organisation -------------------------------------------------------------------

DEMO_ORG = "CEI Demo Factory"
DEMO_EMAIL = "demo@cei.local"
DEMO_SEED = 22
DEMO_METERS = {
    SITE_MAIN: [
        ("main-incomer", "Main incomer MCC", "main_incomer"),
        ("compressor-bank", "Compressor bank", "sub_meter"),
        ("chiller-01", "Chiller 1", "sub_meter"),
        ("hvac-floor1", "HVAC floor 1", "sub_meter"),
        ("process-line", "Process line 1", "sub_meter"),
        ("outdoor-temp", "Outdoor temperature", "temperature"),
        ("production", "Production counter", "production"),
    ],
    SITE_WAREHOUSE: [("main-incomer", "Warehouse incomer", "main_incomer")],
}


def plant_records(plant: Plant) -> Iterator[dict]:
    """The plant as ingest records (missing hours are simply not sent)."""
    stamps = plant.index.strftime("%Y-%m-%dT%H:%M:%SZ")
    series = [(SITE_MAIN, m, s, "kWh") for m, s in plant.kwh.items()]
    series += [
        (SITE_MAIN, "outdoor-temp", plant.temperature, "°C"),
        (SITE_MAIN, "production", plant.production, "units/h"),
        (SITE_WAREHOUSE, "main-incomer", plant.warehouse, "kWh"),
    ]
    for site_id, meter_id, values, unit in series:
        for stamp, value in zip(stamps, values.to_numpy(), strict=True):
            if not np.isnan(value):
                yield {
                    "site_id": site_id,
                    "meter_id": meter_id,
                    "timestamp_utc": stamp,
                    "value": float(value),
                    "unit": unit,
                }


def load_demo(
    engine,
    *,
    settings,
    reset: bool = False,
    days: int = 90,
    now: pd.Timestamp | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Create the demo organisation with 90 days of data up to the current hour.

    Runs through the same ingestion path as the API. Returns {created, email, password,
    org_id, records}; when the demo exists already and `reset` is False nothing changes
    (password None).
    """
    from sqlmodel import select

    from core import accounts, sites
    from core.db import session_scope
    from core.ingestion import ingest_records
    from core.models import MeterCreate, Organization, Role, SiteCreate, User

    with session_scope(engine) as session:
        # The demo is the organisation of the demo user (names are not unique; emails are).
        demo_user = session.exec(select(User).where(User.email == DEMO_EMAIL)).first()
        if demo_user is not None and not reset:
            return {
                "created": False,
                "email": DEMO_EMAIL,
                "password": None,
                "org_id": demo_user.org_id,
                "records": 0,
            }
        if demo_user is not None:
            # The database cascades to users, sites, meters and readings.
            session.delete(session.get(Organization, demo_user.org_id))
    password = secrets.token_urlsafe(9)
    with session_scope(engine) as session:
        user, org = accounts.signup(
            session,
            email=DEMO_EMAIL,
            password=password,
            organization_name=DEMO_ORG,
            settings=settings,
        )
        org.tariff_per_kwh, org.currency, org.sector = 0.21, "EUR", "food_and_beverage"
        for site_id, name, tz, country in (
            (SITE_MAIN, "Bologna Plant - Main", TZ, COUNTRY),
            (SITE_WAREHOUSE, "Warehouse A", TZ, COUNTRY),
        ):
            sites.create_site(
                session,
                org_id=org.id,
                data=SiteCreate(site_id=site_id, name=name, timezone=tz, country=country),
            )
            for meter_id, meter_name, kind in DEMO_METERS[site_id]:
                sites.create_meter(
                    session,
                    org_id=org.id,
                    site_id=site_id,
                    data=MeterCreate(meter_id=meter_id, name=meter_name, kind=kind),
                )
        principal = accounts.Principal(org_id=org.id, role=Role.admin, kind="user", user_id=user.id)
        org_id = org.id
    end = (now or pd.Timestamp.now(tz="UTC")).floor("h")
    plant = generate_plant(DEMO_SEED, end=end, days=days)
    batch: list[dict] = []
    total = 0
    for record in plant_records(plant):
        batch.append(record)
        if len(batch) == 5000:
            total += _ingest(engine, principal, batch, ingest_records, session_scope)
            if progress:
                progress(len(batch))
            batch = []
    if batch:
        total += _ingest(engine, principal, batch, ingest_records, session_scope)
        if progress:
            progress(len(batch))
    return {
        "created": True,
        "email": DEMO_EMAIL,
        "password": password,
        "org_id": org_id,
        "records": total,
    }


def _ingest(engine, principal, batch, ingest_records, session_scope) -> int:
    with session_scope(engine) as session:
        result = ingest_records(session, principal=principal, records=batch)
    if result.failed:
        raise RuntimeError(f"demo data refused: {result.errors[:3]}")
    return result.ingested


def demo_record_count(days: int = 90) -> int:
    """Roughly how many records load_demo sends (for a progress bar)."""
    return days * 24 * 8


def triage_demo(engine, *, org_id: int) -> None:
    """Triage two of the demo's alerts as an analyst would, so the review shows the loop:
    the compressor's night idling resolved with its cause and fix, the weekend HVAC run
    acknowledged."""
    from datetime import timedelta

    from sqlmodel import select

    from core.alerts import update_alert
    from core.db import session_scope
    from core.models import Alert, AlertStatus, AlertUpdate, Meter, User

    steps = (
        (
            "compressor-bank",
            "night-load",
            AlertUpdate(
                status=AlertStatus.resolved,
                root_cause="Compressor bank left idling overnight after the line stopped",
                action="Night shutdown added to the compressor controller schedule",
            ),
        ),
        (
            "hvac-floor1",
            "weekend-load",
            AlertUpdate(
                status=AlertStatus.acknowledged,
                root_cause="HVAC weekend schedule overridden by hand",
                notes="Facility team to restore the weekend schedule",
            ),
        ),
    )
    with session_scope(engine) as session:
        user = session.exec(select(User).where(User.email == DEMO_EMAIL)).one()
        for meter_id, rule, update in steps:
            alert = session.exec(
                select(Alert)
                .join(Meter, Meter.id == Alert.meter_pk)
                .where(Alert.org_id == org_id, Meter.meter_id == meter_id, Alert.rule == rule)
                .order_by(Alert.wasted_kwh.desc())
            ).first()
            if alert is not None:
                # Triaged the day after the finding ended, as a weekly review would have.
                update_alert(
                    session,
                    org_id=org_id,
                    alert_id=alert.id,
                    data=update,
                    user_id=user.id,
                    now=alert.end + timedelta(days=1),
                )
