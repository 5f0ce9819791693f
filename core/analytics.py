"""AnalyticsService: baselines, anomalies, opportunities, KPIs and savings for one org.

A thin facade bound to (session, org_id) over the module functions, used by the API and the
app alike. Every read is scoped by the org; ids of another org are NotFound.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
from sqlmodel import Session, select

from core import kpis as kpi_module
from core.accounts import get_org
from core.anomalies import anomaly_mask, detect_anomalies
from core.baselines import (
    DEFAULT_TRAINING_WEEKS,
    MAX_TRAINING_WEEKS,
    BaselineFit,
    fit_baseline,
    training_window,
)
from core.db import utcnow
from core.errors import InvalidInput
from core.health import floor_hour, iso_z
from core.models import Meter, MeterKind
from core.opportunities import (
    Opportunity,
    Schedule,
    find_opportunities,
    percent_range,
    savings_range,
)
from core.readings import hourly_values
from core.sites import get_meter, list_meters

DEFAULT_WINDOW = timedelta(days=28)
FORECAST = timedelta(days=7)
MAX_WINDOW = timedelta(days=366)


@dataclass
class MeterAnalysis:
    site_id: str
    meter_id: str
    kind: str
    tz: str
    actual: pd.Series  # the analysed window
    fit: BaselineFit
    band: pd.DataFrame | None  # None when there is no baseline


class AnalyticsService:
    """Analytics of one organisation (`AnalyticsService(session, org_id=…)`)."""

    def __init__(
        self, session: Session, *, org_id: int, training_weeks: int = DEFAULT_TRAINING_WEEKS
    ) -> None:
        if not 2 <= training_weeks <= MAX_TRAINING_WEEKS:
            raise InvalidInput(f"training_weeks must be 2 to {MAX_TRAINING_WEEKS}")
        self.session = session
        self.org_id = org_id
        self.training_weeks = training_weeks
        self.org = get_org(session, org_id=org_id)

    # --- inputs -------------------------------------------------------------------------

    @staticmethod
    def window(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
        """[start, end) as whole UTC hours; default the last 28 days up to the current hour."""
        for bound in (start, end):
            if bound is not None and bound.tzinfo is None:
                raise InvalidInput("start and end must carry a time zone, e.g. ...T00:00:00Z")
        try:
            end = floor_hour(end or utcnow())
            start = floor_hour(start) if start else end - DEFAULT_WINDOW
        except OverflowError:  # e.g. the default start before the year 1
            raise InvalidInput("start and end must lie between the years 1 and 9999") from None
        if end <= start:
            raise InvalidInput("end must be after start")
        if end - start > MAX_WINDOW:
            raise InvalidInput("analyse at most 366 days at a time")
        return start, end

    def _drivers(self, site, start: datetime, end: datetime):
        """The site's outdoor temperature and production series, when it has such meters.

        Kept per service: every meter of a site shares them."""
        key = (site.id, start, end)
        cache = self.__dict__.setdefault("_driver_cache", {})
        if key not in cache:
            cache[key] = self._load_drivers(site, start, end)
        return cache[key]

    def _load_drivers(self, site, start: datetime, end: datetime):
        found = {}
        meters = self.session.exec(
            select(Meter).where(Meter.site_pk == site.id, Meter.org_id == self.org_id)
        ).all()
        for kind in (MeterKind.temperature, MeterKind.production):
            meter = next((m for m in meters if m.kind == kind), None)
            found[kind] = (
                hourly_values(self.session, meter_pk=meter.id, start=start, end=end)
                if meter
                else None
            )
        return found[MeterKind.temperature], found[MeterKind.production]

    def analyse_meter(
        self,
        site_id: str,
        meter_id: str,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        extra_end: datetime | None = None,
    ) -> MeterAnalysis:
        """Baseline trained on the weeks before `start` (at least `training_weeks`, up to a
        year when there is that much history), band over [start, end)."""
        start, end = self.window(start, end)
        site, meter = get_meter(
            self.session, org_id=self.org_id, site_id=site_id, meter_id=meter_id
        )
        if not MeterKind(meter.kind).is_energy:
            raise InvalidInput(f"{meter_id} is a {meter.kind} driver, not an energy meter")
        history_start = start - timedelta(weeks=52)
        data = hourly_values(self.session, meter_pk=meter.id, start=history_start, end=end)
        temperature, production = self._drivers(site, history_start, extra_end or end)
        fit, window, band = trailing_baseline(
            data,
            analysis_start=pd.Timestamp(start),
            training_weeks=self.training_weeks,
            tz=site.timezone,
            temperature=temperature,
            production=production,
            country=site.country,
        )
        self._site, self._temperature, self._production = site, temperature, production
        return MeterAnalysis(
            site.site_id, meter.meter_id, meter.kind, site.timezone, window, fit, band
        )

    # --- public surface -----------------------------------------------------------------

    def baseline(self, site_id: str, meter_id: str, start=None, end=None) -> dict:
        """Fit statistics, the window's actual vs expected with band, and a 7-day forecast."""
        start, end = self.window(start, end)
        a = self.analyse_meter(site_id, meter_id, start, end)
        out = {
            "site_id": site_id,
            "meter_id": meter_id,
            "timezone": a.tz,
            "unit": "kWh",
            "start_utc": iso_z(start),
            "end_utc": iso_z(end),
            "ok": a.fit.ok,
            "reason": a.fit.reason,
        }
        if not a.fit.ok:
            return {**out, "series": [], "forecast": []}
        forecast_index = pd.date_range(end, end + FORECAST, freq="h", inclusive="left")
        forecast = a.fit.predict(
            forecast_index, temperature=self._temperature, production=self._production
        )
        return {
            **out,
            "training_start_utc": iso_z(a.fit.training_start.to_pydatetime()),
            "training_end_utc": iso_z(a.fit.training_end.to_pydatetime()),
            "uses_temperature": a.fit.uses_temperature,
            "uses_production": a.fit.uses_production,
            "band_coverage_pct": round(100 * (1 - a.fit.alpha)),
            "fit": a.fit.stats.to_dict(),
            "series": _rows(a.band, a.actual),
            "forecast": _rows(forecast, None),
        }

    def anomalies(self, site_id: str, meter_id: str, start=None, end=None) -> dict:
        a = self.analyse_meter(site_id, meter_id, start, end)
        events = detect_anomalies(a.actual, a.band) if a.fit.ok else []
        return {
            "site_id": site_id,
            "meter_id": meter_id,
            "ok": a.fit.ok,
            "reason": a.fit.reason,
            "unit": "kWh",
            "events": [e.to_dict() for e in events],
        }

    def meter_opportunities(self, a: MeterAnalysis) -> list[Opportunity]:
        if not a.fit.ok:
            return []
        bench = (
            kpi_module._reference()["sectors"].get(self.org.sector)
            or kpi_module._reference()["sectors"]["general"]
        )
        return find_opportunities(
            a.actual,
            a.fit,
            a.band,
            site_id=a.site_id,
            meter_id=a.meter_id,
            tz=a.tz,
            schedule=Schedule.from_dict(self._site.schedule),
            country=self._site.country,
            tariff_per_kwh=self.org.tariff_per_kwh,
            currency=self.org.currency,
            baseload_benchmark=bench["baseload_ratio"][1],
            is_main_incomer=a.kind == MeterKind.main_incomer,
        )

    def site_opportunities(self, site_id: str, start=None, end=None) -> dict:
        """Opportunities of every energy meter of a site, and the site's savings range.

        Site totals come from the main incomer(s): their findings are `counted`. Findings on
        sub-meters say where inside the incomer the waste is (`counted: false`, attribution),
        so the same kWh are never added twice. A site without a main incomer with a baseline
        counts its sub-meters instead, and its consumption is then theirs.
        """
        start, end = self.window(start, end)
        site, meters = list_meters(self.session, org_id=self.org_id, site_id=site_id)
        energy = [m for m in meters if MeterKind(m.kind).is_energy]
        analyses, skipped = [], []
        for m in energy:
            a = self.analyse_meter(site_id, m.meter_id, start, end)
            analyses.append(a)
            if not a.fit.ok:
                skipped.append({"meter_id": m.meter_id, "reason": a.fit.reason})
        mains = [a for a in analyses if a.kind == MeterKind.main_incomer and a.fit.ok]
        counted_kind = MeterKind.main_incomer if mains else MeterKind.sub_meter
        consumption = sum(float(a.actual.sum()) for a in analyses if a.kind == counted_kind)
        found = [
            (o, a.kind == counted_kind)
            for a in analyses
            if a.fit.ok
            for o in self.meter_opportunities(a)
        ]
        found.sort(key=lambda pair: (not pair[1], -pair[0].annual_kwh_high))
        counted_opps = [o for o, counted in found if counted]
        return {
            "site_id": site.site_id,
            "start_utc": iso_z(start),
            "end_utc": iso_z(end),
            "totals_from": "main incomer" if mains else "sub-meters (no main incomer baseline)",
            "opportunities": [{**o.to_dict(), "counted": c} for o, c in found],
            "savings": savings_range(consumption, counted_opps, currency=self.org.currency),
            "meters_without_baseline": skipped,
        }

    def savings(self, site_id: str | None = None, start=None, end=None) -> dict:
        """The savings range of one site, or of every site of the org."""
        from core.sites import list_sites

        site_ids = (
            [site_id]
            if site_id
            else [s.site_id for s in list_sites(self.session, org_id=self.org_id)]
        )
        per_site = [self.site_opportunities(s, start, end) for s in site_ids]
        return combine_savings(per_site, self.org.currency, scope=site_id or "organisation")

    def compute_kpis(self, site_id: str, meter_id: str, start=None, end=None) -> dict:
        start, end = self.window(start, end)
        site, meter = get_meter(
            self.session, org_id=self.org_id, site_id=site_id, meter_id=meter_id
        )
        if not MeterKind(meter.kind).is_energy:
            raise InvalidInput(f"{meter_id} is a {meter.kind} driver, not an energy meter")
        data = hourly_values(self.session, meter_pk=meter.id, start=start, end=end)
        return {
            "site_id": site_id,
            "meter_id": meter_id,
            "start_utc": iso_z(start),
            "end_utc": iso_z(end),
            "unit": "kWh",
            **kpi_module.compute_kpis(
                data,
                tz=site.timezone,
                schedule=Schedule.from_dict(site.schedule),
                country=site.country,
            ),
        }

    def benchmark_against_industry(self, site_id: str, meter_id: str, start=None, end=None) -> dict:
        kpis = self.compute_kpis(site_id, meter_id, start, end)
        return {
            "site_id": site_id,
            "meter_id": meter_id,
            **kpi_module.benchmark_against_industry(kpis, self.org.sector),
        }


def combine_savings(per_site: list[dict], currency: str, *, scope: str = "organisation") -> dict:
    """The savings range of several sites from their `site_opportunities` results."""
    consumption = sum(p["savings"]["consumption_kwh"] for p in per_site)
    low = sum(p["savings"]["avoidable_kwh_low"] for p in per_site)
    high = sum(p["savings"]["avoidable_kwh_high"] for p in per_site)
    money_low = sum(p["savings"]["annual_money_low"] for p in per_site)
    money_high = sum(p["savings"]["annual_money_high"] for p in per_site)
    pct_low = 100 * low / consumption if consumption else 0.0
    pct_high = 100 * high / consumption if consumption else 0.0
    cur = currency
    return {
        "scope": scope,
        "sites": [{"site_id": p["site_id"], **p["savings"]} for p in per_site],
        "consumption_kwh": round(consumption, 1),
        "avoidable_kwh_low": round(low, 1),
        "avoidable_kwh_high": round(high, 1),
        "avoidable_pct_low": round(pct_low, 1),
        "avoidable_pct_high": round(pct_high, 1),
        "annual_money_low": money_low,
        "annual_money_high": money_high,
        "currency": cur,
        "narrative": (
            f"CEI shows {percent_range(pct_low, pct_high)} % avoidable kWh and "
            f"{cur} {money_low:,.0f}–{money_high:,.0f} per year savings potential."
            if high > 0
            else "No avoidable waste found in this period."
        ),
    }


def trailing_baseline(
    kwh: pd.Series,
    *,
    analysis_start: pd.Timestamp,
    tz: str,
    training_weeks: int = DEFAULT_TRAINING_WEEKS,
    temperature: pd.Series | None = None,
    production: pd.Series | None = None,
    country: str | None = None,
) -> tuple[BaselineFit, pd.Series, pd.DataFrame | None]:
    """Fit on the weeks before `analysis_start`; return (fit, analysed kWh, band over it).

    Past anomalies found against a first fit leave the final training, but only sustained
    ones (3+ hours): short excursions are mostly noise, and on right-skewed meter noise
    dropping them (even only those 4 sigma out) biased the reference baseline low by 6-17 %.
    Spikes are still reported; one spike moves a year-long hour-of-week level very little.
    """
    t_start, t_end = training_window(kwh, analysis_start, weeks=training_weeks)
    train = kwh[(kwh.index >= t_start) & (kwh.index < t_end)]
    drivers = {"temperature": temperature, "production": production}
    fit = fit_baseline(train, tz=tz, country=country, **drivers)
    if fit.ok:
        first = fit.predict(train.index, **drivers)
        past = [e for e in detect_anomalies(train, first) if e.kind == "sustained"]
        if past:
            fit = fit_baseline(
                train, tz=tz, country=country, **drivers, exclude=anomaly_mask(past, train.index)
            )
    window = kwh[kwh.index >= analysis_start]
    band = fit.predict(window.index, **drivers) if fit.ok else None
    return fit, window, band


def analyse_series(
    kwh: pd.Series,
    *,
    analysis_start: pd.Timestamp,
    tz: str,
    meter_id: str,
    site_id: str = "",
    training_weeks: int = DEFAULT_TRAINING_WEEKS,
    temperature: pd.Series | None = None,
    production: pd.Series | None = None,
    country: str | None = None,
    schedule: Schedule | None = None,
    tariff_per_kwh: float = 0.0,
    currency: str = "",
    baseload_benchmark: float | None = None,
    is_main_incomer: bool = False,
) -> tuple[BaselineFit, pd.DataFrame | None, list[Opportunity]]:
    """The product's analysis of one meter's series without a database: the same trailing
    baseline and rules as AnalyticsService (used by the accuracy bench and tests)."""
    fit, window, band = trailing_baseline(
        kwh,
        analysis_start=analysis_start,
        tz=tz,
        training_weeks=training_weeks,
        temperature=temperature,
        production=production,
        country=country,
    )
    if not fit.ok:
        return fit, None, []
    found = find_opportunities(
        window,
        fit,
        band,
        site_id=site_id,
        meter_id=meter_id,
        tz=tz,
        schedule=schedule or Schedule(),
        country=country,
        tariff_per_kwh=tariff_per_kwh,
        currency=currency,
        baseload_benchmark=baseload_benchmark,
        is_main_incomer=is_main_incomer,
    )
    return fit, band, found


def _rows(frame: pd.DataFrame, actual: pd.Series | None) -> list[dict]:
    out = []
    for ts, row in frame.iterrows():
        item = {
            "timestamp_utc": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "expected_kwh": round(float(row["expected"]), 3),
            "lower_kwh": round(float(row["lower"]), 3),
            "upper_kwh": round(float(row["upper"]), 3),
        }
        if actual is not None:
            value = actual.get(ts)
            item["actual_kwh"] = None if value is None or pd.isna(value) else float(value)
        out.append(item)
    return out
