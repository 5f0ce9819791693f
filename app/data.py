"""Cached reads from core for the pages, keyed by org_id and plain parameters.

Every loader takes the org_id of the signed-in user first, so one organisation's cache entries
can never answer another's. Times are passed as ISO strings rounded to the hour, so reruns
within the hour hit the cache.

`invalidate(org_id)` after a write made in the app: each org has a generation number that is
part of every cache key of its loaders, so bumping it makes that org's next reads fresh while
every other organisation keeps its cached entries (the stale ones expire with their TTL).
Writes made elsewhere (the API, the relay, the CLI) show up when the TTL runs out.

The app's clock is `utcnow()` here (core.db's): pages take "now" from `now()`/`now_hour()`,
so one frozen clock in a test freezes the whole app.
"""

import functools
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import pandas as pd
import streamlit as st

from core import alerts, health, readings, reports, sites, tokens
from core.accounts import get_org
from core.analytics import AnalyticsService, combine_savings
from core.db import session_scope, utcnow
from core.health import floor_hour
from core.models import MeterKind

TTL = 300

_generations: dict[int, int] = {}
_generations_lock = threading.Lock()


def generation(org_id: int) -> int:
    """How many times this org's cached reads were invalidated in this process."""
    return _generations.get(org_id, 0)


def invalidate(org_id: int) -> None:
    """Make every cached read of this organisation fresh on its next call (and no other's)."""
    with _generations_lock:
        _generations[org_id] = _generations.get(org_id, 0) + 1


def org_cached(ttl: int) -> Callable:
    """st.cache_data for a loader whose first argument is the org_id, with the org's
    generation in the key (see `invalidate`)."""

    def decorate(fn: Callable) -> Callable:
        def keyed(org_id, generation, *args, **kwargs):
            return fn(org_id, *args, **kwargs)

        # st.cache_data tells functions apart by module and qualified name.
        keyed.__module__, keyed.__qualname__ = fn.__module__, f"{fn.__qualname__}.keyed"
        keyed.__name__ = fn.__name__
        cached = st.cache_data(ttl=ttl, show_spinner=False)(keyed)

        @functools.wraps(fn)
        def loader(org_id: int, *args, **kwargs):
            return cached(org_id, generation(org_id), *args, **kwargs)

        loader.clear = cached.clear
        return loader

    return decorate


def now() -> datetime:
    """The app's clock: aware UTC."""
    return utcnow()


def now_hour() -> datetime:
    return floor_hour(now())


def _t(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@org_cached(ttl=TTL)
def org_settings(org_id: int) -> dict:
    with session_scope() as session:
        org = get_org(session, org_id=org_id)
        return {
            "name": org.name,
            "currency": org.currency,
            "tariff_per_kwh": org.tariff_per_kwh,
            "sector": org.sector,
        }


@org_cached(ttl=TTL)
def site_overview(org_id: int) -> list[dict]:
    """The org's sites as plain rows (site_id, name, timezone, schedule, meter_count…)."""
    with session_scope() as session:
        return [s.model_dump() for s in sites.list_sites(session, org_id=org_id)]


@org_cached(ttl=TTL)
def site_meters(org_id: int, site_id: str) -> list[dict]:
    with session_scope() as session:
        site, meters = sites.list_meters(session, org_id=org_id, site_id=site_id)
        return [sites.meter_public(m, site).model_dump() for m in meters]


def energy_meters(org_id: int, site_id: str) -> list[dict]:
    return [m for m in site_meters(org_id, site_id) if MeterKind(m["kind"]).is_energy]


@org_cached(ttl=60)
def ingest_health(org_id: int, window_hours: int, site_id: str | None = None) -> list[dict]:
    with session_scope() as session:
        return health.ingest_health(
            session, org_id=org_id, window_hours=window_hours, site_id=site_id
        )["meters"]


@org_cached(ttl=60)
def ingest_metrics(org_id: int) -> dict:
    with session_scope() as session:
        return health.ingest_metrics(session, org_id=org_id)


@org_cached(ttl=TTL)
def completeness_matrix(org_id: int, start: str, end: str, bucket: str) -> pd.DataFrame:
    with session_scope() as session:
        rows = health.completeness_matrix(
            session, org_id=org_id, start=_t(start), end=_t(end), bucket=bucket
        )
    return pd.DataFrame(rows)


@org_cached(ttl=60)
def errors_timeline(org_id: int, since: str) -> pd.DataFrame:
    with session_scope() as session:
        rows = health.errors_timeline(session, org_id=org_id, since=_t(since))
    return pd.DataFrame(rows, columns=["day", "code", "count"])


class _FitOnce(AnalyticsService):
    """An AnalyticsService that fits each meter's baseline once per window, however many
    results (baseline, anomalies, opportunities) are built from it in one loader.

    analyse_meter also leaves the site and its driver series on the service (the forecast and
    the opportunities read them), so those are remembered with the analysis."""

    def analyse_meter(self, site_id, meter_id, start=None, end=None, *, extra_end=None):
        memo = self.__dict__.setdefault("_analyses", {})
        key = (site_id, meter_id, start, end, extra_end)
        if key not in memo:
            a = super().analyse_meter(site_id, meter_id, start, end, extra_end=extra_end)
            memo[key] = (a, self._site, self._temperature, self._production)
        a, self._site, self._temperature, self._production = memo[key]
        return a


@org_cached(ttl=TTL)
def meter_view(org_id: int, site_id: str, meter_id: str, start: str, end: str) -> dict:
    """Site view's reads of one meter from a single baseline fit: the baseline with its band
    and forecast, the anomaly events and the KPIs."""
    with session_scope() as session:
        service = _FitOnce(session, org_id=org_id)
        out = service.baseline(site_id, meter_id, _t(start), _t(end))
        events = (
            service.anomalies(site_id, meter_id, _t(start), _t(end))["events"] if out["ok"] else []
        )
        return {
            "baseline": out,
            "events": events,
            "kpis": service.compute_kpis(site_id, meter_id, _t(start), _t(end)),
        }


@org_cached(ttl=TTL)
def baseline(org_id: int, site_id: str, meter_id: str, start: str, end: str) -> dict:
    with session_scope() as session:
        return AnalyticsService(session, org_id=org_id).baseline(
            site_id, meter_id, _t(start), _t(end)
        )


@org_cached(ttl=TTL)
def series(
    org_id: int, site_id: str, meter_id: str, start: str, end: str, resolution: str
) -> list[dict]:
    with session_scope() as session:
        return readings.series(
            session,
            org_id=org_id,
            site_id=site_id,
            meter_id=meter_id,
            start=_t(start),
            end=_t(end),
            resolution=readings.Resolution(resolution),
        )["points"]


@org_cached(ttl=TTL)
def site_opportunities(org_id: int, site_id: str, start: str, end: str) -> dict:
    """core's site opportunities, plus `baselines`: the hourly baseline of each meter with a
    high-baseload finding (its evidence chart), from the same fit."""
    with session_scope() as session:
        service = _FitOnce(session, org_id=org_id)
        found = service.site_opportunities(site_id, _t(start), _t(end))
        baselines = {
            o["meter_id"]: service.baseline(site_id, o["meter_id"], _t(start), _t(end))
            for o in found["opportunities"]
            if o["rule"] == "high-baseload"
        }
        return {**found, "baselines": baselines}


def savings(org_id: int, start: str, end: str) -> dict:
    """The organisation's savings range, from the (cached) opportunities of each site."""
    per_site = [site_opportunities(org_id, s["site_id"], start, end) for s in site_overview(org_id)]
    return combine_savings(per_site, org_settings(org_id)["currency"])


@org_cached(ttl=TTL)
def last_24h(org_id: int, site_id: str, end: str) -> dict:
    """The site's last 24 h of kWh, and the baseline's expectation for the same hours.

    Totals come from the main incomer(s), else from the sub-meters (as the savings do). The
    comparison uses only the meters and hours that have a baseline, like for like."""
    meters = energy_meters(org_id, site_id)
    mains = [m for m in meters if m["kind"] == MeterKind.main_incomer]
    counted = mains or meters
    stop = _t(end)
    start = stop - timedelta(hours=24)
    actual = compared = expected = 0.0
    hours = 0
    without = []
    with session_scope() as session:
        service = AnalyticsService(session, org_id=org_id)
        for m in counted:
            points = readings.series(
                session, org_id=org_id, site_id=site_id, meter_id=m["meter_id"],
                start=start, end=stop,
            )["points"]  # fmt: skip
            actual += sum(p["kwh"] for p in points if p["kwh"] is not None)
            hours = max(hours, sum(1 for p in points if p["kwh"] is not None))
            out = service.baseline(site_id, m["meter_id"], start, stop)
            if not out["ok"]:
                without.append(m["meter_id"])
                continue
            for row in out["series"]:
                if row.get("actual_kwh") is not None:
                    compared += row["actual_kwh"]
                    expected += row["expected_kwh"]
    return {
        "actual_kwh": actual,
        "compared_kwh": compared,
        "expected_kwh": expected,
        "hours": hours,
        "meters": [m["meter_id"] for m in counted],
        "without_baseline": without,
    }


@org_cached(ttl=30)
def alert_list(
    org_id: int,
    status: str | None = None,
    site_id: str | None = None,
    rule: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> dict:
    with session_scope() as session:
        return alerts.list_alerts(
            session,
            org_id=org_id,
            status=status,
            site_id=site_id,
            rule=rule,
            limit=limit,
            offset=offset,
        )


@org_cached(ttl=30)
def open_alert_counts(org_id: int) -> dict[str, int]:
    """Open alerts per site_id, from core's total count (not the length of a page of rows)."""
    with session_scope() as session:
        return {
            s.site_id: alerts.list_alerts(
                session, org_id=org_id, status="open", site_id=s.site_id, limit=1
            )["count"]
            for s in sites.list_sites(session, org_id=org_id)
        }


def site_has_readings(org_id: int, site_id: str) -> bool:
    """Whether any meter of the site ever sent a reading (from the cached health rows)."""
    return any(r["last_reading_utc"] for r in ingest_health(org_id, 24) if r["site_id"] == site_id)


def meter_has_readings(org_id: int, site_id: str, meter_id: str) -> bool:
    return any(
        r["last_reading_utc"]
        for r in ingest_health(org_id, 24)
        if r["site_id"] == site_id and r["meter_id"] == meter_id
    )


@org_cached(ttl=30)
def alert_detail(org_id: int, alert_id: int) -> dict:
    with session_scope() as session:
        return alerts.get_alert(session, org_id=org_id, alert_id=alert_id)


@org_cached(ttl=TTL)
def weekly_report(org_id: int, week: str, site_id: str | None) -> dict:
    with session_scope() as session:
        return reports.weekly_report(session, org_id=org_id, week=week, site_id=site_id)


@org_cached(ttl=TTL)
def pilot_report(
    org_id: int, start: str | None, end: str | None, site_id: str | None, cost: float | None
) -> dict:
    with session_scope() as session:
        return reports.pilot_report(
            session, org_id=org_id, start=start, end=end, site_id=site_id, cost=cost
        )


@st.cache_data(ttl=TTL, show_spinner=False)
def report_html(report: dict) -> str:
    return reports.render_html(report)


@org_cached(ttl=60)
def token_list(org_id: int) -> list[dict]:
    with session_scope() as session:
        return [
            tokens.to_public(t).model_dump() for t in tokens.list_tokens(session, org_id=org_id)
        ]


@org_cached(ttl=TTL)
def mapping_csv(org_id: int) -> str:
    with session_scope() as session:
        return sites.mapping_csv(session, org_id=org_id)


def ago(ts: str | datetime | None, now: datetime | None = None) -> str:
    """'3 h ago' style age of a UTC timestamp at `now` (default: the app's clock, utcnow)."""
    if not ts:
        return "never"
    when = datetime.fromisoformat(ts.replace("Z", "+00:00")) if isinstance(ts, str) else ts
    seconds = ((now or utcnow()) - when).total_seconds()
    if seconds < 90:
        return "just now"
    if seconds < 3600 * 1.5:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} d ago"
