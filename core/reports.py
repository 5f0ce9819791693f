"""Reports built from the data: the weekly review, the pilot close-out and the pilot scorecard.

Builders return plain dicts (the JSON the API serves); `render_markdown` and `render_html`
turn one into a document. The HTML is self-contained: plotly.js is inlined once, so the file
opens offline and prints to PDF.

Weeks are ISO weeks in each site's local time (Monday 00:00 to Monday 00:00), so a week with
a daylight-saving change has 167 or 169 hours. Pilot ranges are UTC dates, end exclusive.
"""

import html
import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import func
from sqlmodel import Session, select

from core.accounts import get_org
from core.alerts import WASTE_RULES, alert_public, effective_impact, gap_hours
from core.analytics import AnalyticsService, combine_savings
from core.db import utcnow
from core.errors import InvalidInput
from core.health import HOUR, completeness, floor_hour, gap_stats, iso_z
from core.models import (
    Alert,
    AlertEvent,
    AlertRule,
    AlertStatus,
    IngestBatch,
    Meter,
    MeterKind,
    Reading,
    Site,
)
from core.opportunities import percent_range
from core.sites import get_site

WEEK_RE = re.compile(r"^(\d{4})-W(\d{2})$")
COVERAGE_TARGET = 95.0  # % of expected points ingested, strictly above
GAP_TARGET = 2.0  # % of meter-hours inside data-gap alarms, strictly below
INEFFICIENCIES_TARGET = 3  # actionable inefficiencies, at least
FOCUS_ITEMS = 5
MAX_PILOT_DAYS = 366
MIN_TRAINING = timedelta(days=14)
MATERIAL_SHARE = 0.001  # an inefficiency worth reporting: >= 0.1 % of the site's kWh


# --- periods --------------------------------------------------------------------------------


def parse_week(week: str) -> tuple[int, int]:
    m = WEEK_RE.match(week or "")
    if not m:
        raise InvalidInput(f"week must look like 2026-W48, not {week!r}", code="bad_week")
    year, number = int(m.group(1)), int(m.group(2))
    try:
        date.fromisocalendar(year, number, 1)
    except ValueError:
        raise InvalidInput(f"{year} has no ISO week {number}", code="bad_week") from None
    return year, number


def current_week(now: datetime | None = None, tz: str = "UTC") -> str:
    """The last complete ISO week in a time zone (the one a Monday meeting reviews)."""
    local = (now or utcnow()).astimezone(ZoneInfo(tz))
    y, w, _ = (local - timedelta(days=7)).isocalendar()
    return f"{y}-W{w:02d}"


def week_bounds(week: str, tz: str) -> tuple[datetime, datetime]:
    """[start, end) in UTC of an ISO week in a time zone's local time."""
    year, number = parse_week(week)
    monday = date.fromisocalendar(year, number, 1)
    zone = ZoneInfo(tz)
    try:
        start = datetime(monday.year, monday.month, monday.day, tzinfo=zone)
        nxt = monday + timedelta(days=7)
        end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone)
        return start.astimezone(UTC), end.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidInput(f"week {week} is out of range", code="bad_week") from None


def _hours(start: datetime, end: datetime) -> int:
    return max(int((end - start) / HOUR), 0)


def _sites(session: Session, org_id: int, site_id: str | None) -> list[Site]:
    if site_id:
        return [get_site(session, org_id=org_id, site_id=site_id)]
    return list(session.exec(select(Site).where(Site.org_id == org_id).order_by(Site.site_id)))


def _meters(session: Session, site: Site) -> list[Meter]:
    return list(
        session.exec(select(Meter).where(Meter.site_pk == site.id).order_by(Meter.meter_id))
    )


def _readings(session: Session, pks: list[int], start: datetime, end: datetime) -> pd.DataFrame:
    rows = session.execute(
        select(Reading.meter_pk, Reading.ts, Reading.value).where(
            Reading.meter_pk.in_(pks), Reading.ts >= start, Reading.ts < end
        )
    ).all()
    frame = pd.DataFrame(rows, columns=["meter_pk", "ts", "value"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


# --- building blocks ------------------------------------------------------------------------


def completeness_rows(
    session: Session, site: Site, start: datetime, end: datetime, *, readings: pd.DataFrame
) -> list[dict]:
    """Per meter: expected vs ingested hourly points, missing hours and the longest gap.

    A meter is expected to report from when it was registered, or from its first reading if
    history was backfilled from before that; a meter not yet registered has no row."""
    meters = _meters(session, site)
    first = dict(
        session.execute(
            select(Reading.meter_pk, func.min(Reading.ts))
            .where(Reading.meter_pk.in_([m.id for m in meters]))
            .group_by(Reading.meter_pk)
        ).all()
    )
    out = []
    for meter in meters:
        since = floor_hour(min(meter.created_at, first.get(meter.id) or meter.created_at))
        lo = max(start, since)
        if lo >= end:
            continue
        expected = _hours(lo, end)
        mine = readings[
            (readings["meter_pk"] == meter.id) & (readings["ts"] >= lo) & (readings["ts"] < end)
        ]
        present = {t.to_pydatetime() for t in mine["ts"]}
        missing, longest = gap_stats(present, lo, end)
        out.append(
            {
                "site_id": site.site_id,
                "meter_id": meter.meter_id,
                "kind": meter.kind,
                "expected_points": expected,
                "actual_points": len(present),
                "completeness_pct": completeness(len(present), expected),
                "missing_hours": missing,
                "longest_gap_hours": longest,
                "kwh": round(float(mine["value"].sum()), 1)
                if MeterKind(meter.kind).is_energy
                else None,
            }
        )
    return out


def daily_kwh(session: Session, site: Site, readings: pd.DataFrame) -> list[dict]:
    """kWh per energy meter per local calendar day of the site."""
    energy = {m.id: m.meter_id for m in _meters(session, site) if MeterKind(m.kind).is_energy}
    frame = readings[readings["meter_pk"].isin(list(energy))]
    if frame.empty:
        return []
    local_day = frame["ts"].dt.tz_convert(site.timezone).dt.date
    sums = frame.groupby([frame["meter_pk"], local_day])["value"].sum()
    return [
        {
            "site_id": site.site_id,
            "meter_id": energy[pk],
            "date": day.isoformat(),
            "kwh": round(float(kwh), 1),
        }
        for (pk, day), kwh in sums.items()
    ]


def errors_in(
    session: Session, org_id: int, sites: list[Site], start: datetime, end: datetime
) -> tuple[dict, list[dict]]:
    """Ingest errors by code (batches received in [start, end)) and per meter of the sites."""
    by_code: Counter[str] = Counter()
    per_meter: Counter[tuple[str, str, str]] = Counter()
    wanted = {s.site_id for s in sites}
    rows = session.execute(
        select(IngestBatch.errors_by_meter).where(
            IngestBatch.org_id == org_id,
            IngestBatch.received_at >= start,
            IngestBatch.received_at < end,
        )
    )
    for (by_meter,) in rows:
        for where, counts in (by_meter or {}).items():
            site_id, _, meter_id = where.partition("/")
            if site_id not in wanted:
                continue
            for code, n in counts.items():
                by_code[code] += n
                per_meter[(site_id, meter_id, code)] += n
    return dict(sorted(by_code.items())), [
        {"site_id": s, "meter_id": m, "code": c, "count": n}
        for (s, m, c), n in sorted(per_meter.items())
    ]


def _site_alerts(
    session: Session, org_id: int, sites: list[Site], *where, order_by
) -> list[tuple[Alert, Site, Meter]]:
    return list(
        session.exec(
            select(Alert, Site, Meter)
            .join(Site, Site.id == Alert.site_pk)
            .join(Meter, Meter.id == Alert.meter_pk)
            .where(Alert.org_id == org_id, Alert.site_pk.in_([s.id for s in sites]), *where)
            .order_by(*order_by)
        ).all()
    )


def _alerts_in(
    session: Session, org_id: int, sites: list[Site], start: datetime, end: datetime
) -> list[tuple[Alert, Site, Meter]]:
    """Alerts whose span starts in [start, end)."""
    return _site_alerts(
        session, org_id, sites, Alert.start >= start, Alert.start < end, order_by=[Alert.start]
    )


def _still_open(
    session: Session, org_id: int, sites: list[Site], start: datetime
) -> list[tuple[Alert, Site, Meter]]:
    """Alerts raised before `start` that nobody has resolved or dismissed yet."""
    return _site_alerts(
        session,
        org_id,
        sites,
        Alert.start < start,
        Alert.status.in_([AlertStatus.open, AlertStatus.acknowledged]),
        order_by=[Alert.wasted_money.desc(), Alert.start],
    )


def _dismissed_findings(session: Session, site: Site) -> set[tuple[str, str]]:
    """(meter_id, rule) pairs of a site whose latest alert was dismissed as not a problem."""
    latest: dict[tuple[str, str], Alert] = {}
    rows = session.exec(
        select(Alert, Meter)
        .join(Meter, Meter.id == Alert.meter_pk)
        .where(Alert.site_pk == site.id)
        .order_by(Alert.start, Alert.id)
    ).all()
    for alert, meter in rows:
        # The opportunity of a baseload alert is called high-baseload.
        rule = "high-baseload" if alert.rule == AlertRule.baseload else str(alert.rule)
        latest[(meter.meter_id, rule)] = alert
    return {k for k, a in latest.items() if a.status == AlertStatus.dismissed}


def confirmed_in(
    session: Session, org_id: int, sites: list[Site], start: datetime, end: datetime
) -> list[dict]:
    """Alerts a person acknowledged or resolved in [start, end), with cause and action."""
    rows = session.exec(
        select(AlertEvent, Alert, Site, Meter)
        .join(Alert, Alert.id == AlertEvent.alert_id)
        .join(Site, Site.id == Alert.site_pk)
        .join(Meter, Meter.id == Alert.meter_pk)
        .where(
            AlertEvent.org_id == org_id,
            Alert.site_pk.in_([s.id for s in sites]),
            AlertEvent.kind == "status",
            AlertEvent.at >= start,
            AlertEvent.at < end,
        )
        .order_by(AlertEvent.at)
    ).all()
    seen: dict[int, dict] = {}
    for event, alert, site, meter in rows:
        new = (event.changes.get("status") or [None, None])[1]
        if new in (AlertStatus.acknowledged, AlertStatus.resolved):
            seen[alert.id] = {**alert_public(alert, site, meter), "confirmed_by": event.actor}
    return list(seen.values())


def avoided_energy(
    session: Session,
    org_id: int,
    sites: list[Site],
    start: datetime,
    end: datetime,
    tariff: float,
) -> dict:
    """kWh avoided in [start, end) by the fixes behind resolved alerts, net of recurrence.

    Each resolved waste alert saves its estimated impact (kWh a week: the analyst's figure,
    else the waste rate measured against the baseline while it lasted) from its resolution on,
    less the waste of the same kind found on that meter in the period since (the fix did not
    hold, or only partly; see `_recurred_kwh`), never below zero.
    """
    waste_rules = [str(r) for r in WASTE_RULES] + ["baseload"]
    rows = session.exec(
        select(Alert, Site, Meter)
        .join(Site, Site.id == Alert.site_pk)
        .join(Meter, Meter.id == Alert.meter_pk)
        .where(
            Alert.org_id == org_id,
            Alert.site_pk.in_([s.id for s in sites]),
            Alert.status == AlertStatus.resolved,
            Alert.rule.in_(waste_rules),
            Alert.resolved_at < end,
        )
    ).all()
    items, total = [], 0.0
    for alert, site, meter in rows:
        from_ = max(alert.resolved_at, start)
        estimated = effective_impact(alert) * _hours(from_, end) / 168
        recurred = _recurred_kwh(session, alert, from_, end)
        kwh = max(estimated - float(recurred), 0.0)
        if estimated <= 0:
            continue
        total += kwh
        items.append(
            {
                "alert_id": alert.id,
                "site_id": site.site_id,
                "meter_id": meter.meter_id,
                "rule": alert.rule,
                "resolved_at": iso_z(alert.resolved_at),
                "action": alert.action,
                "impact_kwh_per_week": round(effective_impact(alert), 1),
                "estimated_kwh": round(estimated, 1),
                "recurred_kwh": round(float(recurred), 1),
                "avoided_kwh": round(kwh, 1),
                "avoided_money": round(kwh * tariff, 2),
            }
        )
    return {"kwh": round(total, 1), "money": round(total * tariff, 2), "alerts": items}


def _recurred_kwh(session: Session, fixed: Alert, start: datetime, end: datetime) -> float:
    """Waste of the fixed alert's kind on its meter in [start, end): the hours of any alert
    that is not dismissed (whatever rule labels the alert as a whole, each hour keeps the
    rule that claimed it), so recurrence is counted once, inside the period only."""
    others = session.exec(
        select(Alert).where(
            Alert.meter_pk == fixed.meter_pk,
            Alert.status != AlertStatus.dismissed,
            Alert.start < end,
            Alert.end > start,
        )
    ).all()
    total = 0.0
    for other in others:
        if fixed.rule == AlertRule.baseload:
            if other.rule == AlertRule.baseload:
                hours = (min(other.end, end) - max(other.start, start)) / HOUR
                total += (other.evidence or {}).get("excess_kwh_per_hour", 0.0) * hours
            continue
        for ts, (actual, expected, rule) in (other.evidence or {}).get("hourly", {}).items():
            if (rule or other.rule) == fixed.rule and start <= datetime.fromisoformat(ts) < end:
                total += actual - expected
    return total


# --- weekly review --------------------------------------------------------------------------


def weekly_report(
    session: Session,
    *,
    org_id: int,
    week: str | None = None,
    site_id: str | None = None,
    now: datetime | None = None,
) -> dict:
    """The weekly review of one site (or every site) for an ISO week in local time."""
    now = now or utcnow()
    org = get_org(session, org_id=org_id)
    sites = _sites(session, org_id, site_id)
    week = week or current_week(now, sites[0].timezone if sites else "UTC")
    parse_week(week)
    periods, rows, days, new_alerts, still_open = [], [], [], [], []
    confirmed: dict[int, dict] = {}
    errors: Counter[str] = Counter()
    error_rows: list[dict] = []
    focus: list[dict] = []
    avoided = {"kwh": 0.0, "money": 0.0, "alerts": []}
    service = AnalyticsService(session, org_id=org_id)
    for site in sites:
        start, end = week_bounds(week, site.timezone)
        until = min(end, floor_hour(now))  # a week in progress counts up to the current hour
        local = ZoneInfo(site.timezone)
        periods.append(
            {
                "site_id": site.site_id,
                "name": site.name,
                "timezone": site.timezone,
                "start_local": start.astimezone(local).isoformat(),
                "end_local": end.astimezone(local).isoformat(),
                "start_utc": iso_z(start),
                "end_utc": iso_z(end),
                "hours": _hours(start, end),
                "hours_elapsed": _hours(start, until),
            }
        )
        meters = _meters(session, site)
        readings = _readings(session, [m.id for m in meters], start, end)
        if until > start:
            rows += completeness_rows(session, site, start, until, readings=readings)
        days += daily_kwh(session, site, readings)
        by_code, per_meter = errors_in(session, org_id, [site], start, end)
        errors.update(by_code)
        error_rows += per_meter
        found = _alerts_in(session, org_id, [site], start, end)
        new_alerts += [alert_public(a, s, m) for a, s, m in found]
        still_open += [
            alert_public(a, s, m) for a, s, m in _still_open(session, org_id, [site], start)
        ]
        confirmed.update({c["id"]: c for c in confirmed_in(session, org_id, [site], start, end)})
        saved = avoided_energy(session, org_id, [site], start, until, org.tariff_per_kwh)
        avoided["kwh"] += saved["kwh"]
        avoided["money"] += saved["money"]
        avoided["alerts"] += saved["alerts"]
        if until > start and any(MeterKind(m.kind).is_energy for m in meters):
            opps = service.site_opportunities(site.site_id, end - timedelta(days=28), until)
            dismissed = _dismissed_findings(session, site)
            focus += [
                o
                for o in opps["opportunities"]
                if o["annual_money_high"] > 0 and (o["meter_id"], o["rule"]) not in dismissed
            ]
    focus.sort(key=lambda o: -o["annual_money_high"])
    expected = sum(r["expected_points"] for r in rows)
    actual = sum(r["actual_points"] for r in rows)
    report = {
        "kind": "weekly",
        "title": f"Weekly review {week}",
        "organization": org.name,
        "scope": site_id or "organisation",
        "week": week,
        "generated_at": iso_z(now),
        "currency": org.currency,
        "tariff_per_kwh": org.tariff_per_kwh,
        "periods": periods,
        "completeness": {
            "expected_points": expected,
            "actual_points": actual,
            "completeness_pct": completeness(actual, expected),
            "meters": rows,
        },
        "errors_by_code": dict(sorted(errors.items())),
        "errors_by_meter": error_rows,
        "daily_kwh": days,
        "new_alerts": new_alerts,
        "still_open": still_open,
        "confirmed_issues": list(confirmed.values()),
        "avoided": {
            "kwh": round(avoided["kwh"], 1),
            "money": round(avoided["money"], 2),
            "alerts": avoided["alerts"],
            "method": "each resolved waste alert saves its estimated kWh a week from its "
            "resolution on (the analyst's estimate, else the waste rate it measured "
            "against the baseline), less the waste of the same kind found on that meter "
            "in the period since (the fix did not hold, or only partly)",
        },
        "next_week_focus": focus[:FOCUS_ITEMS],
    }
    report["summary"] = _weekly_summary(report)
    return report


def _weekly_summary(r: dict) -> list[str]:
    c = r["completeness"]
    lines = [
        f"Data completeness {c['completeness_pct']:.1f} % ({c['actual_points']:,} of "
        f"{c['expected_points']:,} expected hourly points).",
        f"{sum(r['errors_by_code'].values()):,} ingest errors"
        + (
            " (" + ", ".join(f"{k} {v}" for k, v in r["errors_by_code"].items()) + ")."
            if r["errors_by_code"]
            else "."
        ),
        f"{len(r['new_alerts'])} new alerts, {len(r['still_open'])} still open from earlier "
        f"weeks, {len(r['confirmed_issues'])} confirmed issues.",
        f"Estimated avoided energy from changes made: {r['avoided']['kwh']:,.0f} kWh "
        f"({r['currency']} {r['avoided']['money']:,.0f}).",
    ]
    if r["next_week_focus"]:
        top = r["next_week_focus"][0]
        lines.append(
            f"Next week's focus: {top['meter_id']} {top['rule']}, worth {top['currency']} "
            f"{top['annual_money_low']:,}–{top['annual_money_high']:,} a year."
        )
    return lines


# --- pilot close-out and scorecard ----------------------------------------------------------


def pilot_period(
    session: Session,
    sites: list[Site],
    start: datetime | date | str | None,
    end: datetime | date | str | None,
    now: datetime,
) -> tuple[datetime, datetime]:
    """[start, end) in UTC; by default from the day of the first reading to tomorrow."""

    def as_utc(value) -> datetime:
        if isinstance(value, str):
            try:
                value = (
                    date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
                )
            except ValueError:
                raise InvalidInput(
                    f"{value!r} is not a date (YYYY-MM-DD) or an ISO 8601 time", code="bad_date"
                ) from None
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise InvalidInput("start and end need a time zone, or give dates (UTC)")
            return floor_hour(value.astimezone(UTC))
        return datetime(value.year, value.month, value.day, tzinfo=UTC)

    if start is None:
        first = _first_reading(session, sites)
        start = (first or now).date()
    if end is None:
        end = now.date() + timedelta(days=1)
    try:
        lo, hi = as_utc(start), as_utc(end)
    except OverflowError:
        raise InvalidInput("start or end is out of range", code="bad_date") from None
    if hi <= lo:
        raise InvalidInput("end must be after start")
    if hi - lo > timedelta(days=MAX_PILOT_DAYS):
        raise InvalidInput(f"a pilot report covers at most {MAX_PILOT_DAYS} days")
    return lo, hi


def evaluate_scorecard(
    *, coverage_pct: float, gap_pct: float, actionable: int, savings: dict
) -> dict:
    """The pilot's success metrics, each with value, target and pass/fail."""
    has_range = savings.get("avoidable_kwh_high", 0) > 0
    metrics = [
        {
            "metric": "coverage",
            "label": "Expected hourly points ingested",
            "value": round(coverage_pct, 4),
            "unit": "%",
            "display": f"{_beside(coverage_pct, COVERAGE_TARGET)} %",
            "target": f"> {COVERAGE_TARGET:g} %",
            "passed": coverage_pct > COVERAGE_TARGET,
        },
        {
            "metric": "data_gap_hours",
            "label": "Meter-hours inside data-gap alarms",
            "value": round(gap_pct, 4),
            "unit": "%",
            "display": f"{_beside(gap_pct, GAP_TARGET)} %",
            "target": f"< {GAP_TARGET:g} %",
            "passed": gap_pct < GAP_TARGET,
        },
        {
            "metric": "actionable_inefficiencies",
            "label": "Actionable inefficiencies found",
            "value": actionable,
            "unit": "",
            "display": str(actionable),
            "target": f">= {INEFFICIENCIES_TARGET}",
            "passed": actionable >= INEFFICIENCIES_TARGET,
        },
        {
            "metric": "savings_range",
            "label": "Savings range stated",
            "value": savings.get("headline") if has_range else None,
            "unit": "",
            "display": savings.get("headline") if has_range else "none",
            "target": "X–Y % avoidable kWh, A–B per year",
            "passed": has_range,
        },
    ]
    return {"metrics": metrics, "passed": all(m["passed"] for m in metrics)}


def _beside(value: float, target: float) -> str:
    """The value with as few decimals (1 to 4) as show it on the right side of its target:
    94.996 % is "94.996", not a "95.0" that reads as a pass."""
    for digits in range(1, 5):
        shown = round(value, digits)
        if value == target or (shown != target and (shown > target) == (value > target)):
            break
    return f"{shown:,.{digits}f}"


def actionable_findings(opportunities: list[dict], savings: dict | None) -> list[dict]:
    """Distinct, material inefficiencies among a period's opportunities.

    Material: medium or high confidence, and even the low end of its kWh is at least 0.1 %
    of the site's consumption. Distinct: a sub-meter finding says where the waste is, so the
    main incomer's finding of the same rule at that site is the same inefficiency seen from
    above and is counted only when no sub-meter explains it.
    """
    consumption = {s["site_id"]: s["consumption_kwh"] for s in (savings or {}).get("sites", [])}
    material = [
        o
        for o in opportunities
        if o["confidence"] in ("medium", "high")
        and o["avoidable_kwh_low"] >= MATERIAL_SHARE * consumption.get(o["site_id"], 0.0)
        and o["avoidable_kwh_low"] > 0
    ]
    below = {(o["site_id"], o["rule"]) for o in material if not o.get("counted", True)}
    return [
        o for o in material if not o.get("counted", True) or (o["site_id"], o["rule"]) not in below
    ]


def _first_reading(session: Session, sites: list[Site]) -> datetime | None:
    pks = [m.id for s in sites for m in _meters(session, s)]
    if not pks:
        return None
    return session.execute(select(func.min(Reading.ts)).where(Reading.meter_pk.in_(pks))).scalar()


def _analysis_start(session: Session, sites: list[Site], start: datetime) -> datetime:
    """Where the pilot's opportunities are analysed from: the start, when there are two weeks
    of history before it to train on; else two weeks into the data."""
    first = _first_reading(session, sites)
    if first is None or start - first >= MIN_TRAINING:
        return start
    return floor_hour(first + MIN_TRAINING)


def pilot_report(
    session: Session,
    *,
    org_id: int,
    start: datetime | date | str | None = None,
    end: datetime | date | str | None = None,
    site_id: str | None = None,
    cost: float | None = None,
    now: datetime | None = None,
) -> dict:
    """The pilot close-out: coverage vs the success metrics, key anomalies, recommended and
    implemented changes, the savings range and the simple payback of a given cost."""
    now = now or utcnow()
    org = get_org(session, org_id=org_id)
    sites = _sites(session, org_id, site_id)
    lo, hi = pilot_period(session, sites, start, end, now)
    until = min(hi, floor_hour(now))
    if until <= lo:
        raise InvalidInput("the pilot period has not started yet")
    rows, days = [], []
    for site in sites:
        readings = _readings(session, [m.id for m in _meters(session, site)], lo, until)
        rows += completeness_rows(session, site, lo, until, readings=readings)
        days += daily_kwh(session, site, readings)
    expected = sum(r["expected_points"] for r in rows)
    actual = sum(r["actual_points"] for r in rows)
    coverage = 100.0 * actual / expected if expected else 0.0
    gaps = sum(
        gap_hours(session, org_id=org_id, start=lo, end=until, site_pk=s.id, now=now) for s in sites
    )
    gap_pct = 100.0 * gaps / expected if expected else 0.0
    analysis_from = _analysis_start(session, sites, lo)
    service = AnalyticsService(session, org_id=org_id)
    opportunities, savings = [], None
    if analysis_from < until - timedelta(days=1):
        per_site = [service.site_opportunities(s.site_id, analysis_from, until) for s in sites]
        savings = combine_savings(per_site, org.currency, scope=site_id or "organisation")
        opportunities = [o for p in per_site for o in p["opportunities"]]
    opportunities.sort(key=lambda o: -o["annual_money_high"])
    actionable = actionable_findings(opportunities, savings)
    savings = savings or {"avoidable_kwh_high": 0, "narrative": "Not enough data to analyse."}
    if savings.get("avoidable_kwh_high", 0) > 0:
        savings["headline"] = (
            f"{percent_range(savings['avoidable_pct_low'], savings['avoidable_pct_high'])} % "
            f"avoidable kWh, {org.currency} {savings['annual_money_low']:,.0f}–"
            f"{savings['annual_money_high']:,.0f} per year"
        )
    alerts = _alerts_in(session, org_id, sites, lo, until)
    waste = sorted((x for x in alerts if x[0].rule != "data-gap"), key=lambda x: -x[0].wasted_kwh)
    implemented = [
        alert_public(a, s, m)
        for a, s, m in alerts
        if a.status == AlertStatus.resolved and a.action and a.rule != "data-gap"
    ]
    saved = avoided_energy(session, org_id, sites, lo, until, org.tariff_per_kwh)
    payback = None
    if cost is not None:
        if cost < 0:
            raise InvalidInput("cost must be zero or more")
        low, high = savings.get("annual_money_low", 0), savings.get("annual_money_high", 0)
        payback = {
            "cost": cost,
            "currency": org.currency,
            "years_best": round(cost / high, 2) if high else None,
            "years_worst": round(cost / low, 2) if low else None,
        }
    report = {
        "kind": "pilot",
        "title": "Pilot close-out report",
        "organization": org.name,
        "scope": site_id or "organisation",
        "start_utc": iso_z(lo),
        "end_utc": iso_z(hi),
        "data_until_utc": iso_z(until),
        "analysis_from_utc": iso_z(analysis_from),
        "generated_at": iso_z(now),
        "currency": org.currency,
        "tariff_per_kwh": org.tariff_per_kwh,
        "coverage": {
            "expected_points": expected,
            "actual_points": actual,
            "coverage_pct": round(coverage, 2),
            "data_gap_alarm_hours": gaps,
            "data_gap_pct": round(gap_pct, 2),
            "meters": rows,
        },
        "daily_kwh": days,
        "opportunities": opportunities,
        "actionable_count": len(actionable),
        "savings": savings,
        "key_anomalies": [alert_public(a, s, m) for a, s, m in waste[:10]],
        "recommended": [
            {
                "site_id": o["site_id"],
                "meter_id": o["meter_id"],
                "rule": o["rule"],
                "action": o["explanation"],
                "annual_money_low": o["annual_money_low"],
                "annual_money_high": o["annual_money_high"],
            }
            for o in actionable
        ],
        "implemented": implemented,
        "avoided_so_far": saved,
        "payback": payback,
        "scorecard": evaluate_scorecard(
            coverage_pct=coverage,
            gap_pct=gap_pct,
            actionable=len(actionable),
            savings=savings,
        ),
    }
    return report


def scorecard(
    session: Session,
    *,
    org_id: int,
    start: datetime | date | str | None = None,
    end: datetime | date | str | None = None,
    site_id: str | None = None,
    now: datetime | None = None,
) -> dict:
    data = pilot_report(session, org_id=org_id, start=start, end=end, site_id=site_id, now=now)
    return {
        "organization": data["organization"],
        "scope": data["scope"],
        "start_utc": data["start_utc"],
        "end_utc": data["end_utc"],
        **data["scorecard"],
    }


# --- rendering ------------------------------------------------------------------------------


def _table(
    columns: list[tuple[str, str]], rows: list[dict], currency: str = ""
) -> tuple[list[str], list[list]]:
    header = [c[1].replace("{cur}", currency) for c in columns]
    return header, [[r.get(c[0]) for c in columns] for r in rows]


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


COMPLETENESS_COLS = [
    ("site_id", "Site"),
    ("meter_id", "Meter"),
    ("expected_points", "Expected"),
    ("actual_points", "Ingested"),
    ("completeness_pct", "Complete %"),
    ("missing_hours", "Missing h"),
    ("longest_gap_hours", "Longest gap h"),
    ("kwh", "kWh"),
]
ALERT_COLS = [
    ("site_id", "Site"),
    ("meter_id", "Meter"),
    ("rule", "Rule"),
    ("start_utc", "Start (UTC)"),
    ("hours", "Hours"),
    ("wasted_kwh", "Wasted kWh"),
    ("wasted_money", "Wasted {cur}"),
    ("severity", "Severity"),
    ("status", "Status"),
]
CONFIRMED_COLS = [
    ("site_id", "Site"),
    ("meter_id", "Meter"),
    ("rule", "Rule"),
    ("status", "Status"),
    ("root_cause", "Root cause"),
    ("action", "Action"),
    ("estimated_impact_kwh_per_week", "kWh/week saved"),
]
OPP_COLS = [
    ("site_id", "Site"),
    ("meter_id", "Meter"),
    ("rule", "Rule"),
    ("avoidable_kwh_low", "kWh low"),
    ("avoidable_kwh_high", "kWh high"),
    ("annual_money_low", "{cur}/year low"),
    ("annual_money_high", "{cur}/year high"),
    ("confidence", "Confidence"),
    ("counted", "In site total"),
]
SCORE_COLS = [("label", "Metric"), ("value", "Value"), ("target", "Target"), ("result", "Result")]


def sections(report: dict) -> list[dict]:
    """The report as titled sections of paragraphs and tables (shared by both renderers)."""
    cur = report["currency"]
    out: list[dict] = []
    if report["kind"] == "weekly":
        out.append({"title": "Summary", "paragraphs": report["summary"]})
        errs = report["errors_by_code"]
        out.append(
            {
                "title": "Ingestion",
                "paragraphs": [
                    "Errors by code: "
                    + (", ".join(f"{k} {v}" for k, v in errs.items()) if errs else "none")
                ],
                "tables": [_table(COMPLETENESS_COLS, report["completeness"]["meters"])],
                "charts": ["completeness", "daily"],
            }
        )
        out.append(
            {
                "title": "New alerts",
                "tables": [_table(ALERT_COLS, report["new_alerts"], cur)],
                "empty": "No new alerts this week.",
            }
        )
        out.append(
            {
                "title": "Still open from earlier weeks",
                "tables": [_table(ALERT_COLS, report["still_open"], cur)],
                "empty": "Every earlier alert is resolved or dismissed.",
            }
        )
        out.append(
            {
                "title": "Confirmed issues and actions",
                "tables": [_table(CONFIRMED_COLS, report["confirmed_issues"])],
                "empty": "No issues confirmed this week.",
            }
        )
        av = report["avoided"]
        out.append(
            {
                "title": "Impact of changes made",
                "paragraphs": [
                    f"Estimated avoided energy this week: {av['kwh']:,.0f} kWh "
                    f"({cur} {av['money']:,.0f}). Method: {av['method']}."
                ],
            }
        )
        out.append(
            {
                "title": "Next week's focus",
                "tables": [_table(OPP_COLS, report["next_week_focus"], cur)],
                "empty": "No open opportunities.",
            }
        )
        return out
    cov = report["coverage"]
    card = [
        {
            **m,
            "value": m["display"],
            "result": "PASS" if m["passed"] else "FAIL",
        }
        for m in report["scorecard"]["metrics"]
    ]
    out.append(
        {
            "title": "Pilot scorecard",
            "paragraphs": [
                "Overall: "
                + (
                    "all success metrics met."
                    if report["scorecard"]["passed"]
                    else "not every success metric is met."
                )
            ],
            "tables": [_table(SCORE_COLS, card)],
        }
    )
    out.append(
        {
            "title": "Data coverage",
            "paragraphs": [
                f"{cov['coverage_pct']:.1f} % of expected hourly points ingested "
                f"({cov['actual_points']:,} of {cov['expected_points']:,}); "
                f"{cov['data_gap_alarm_hours']:,} meter-hours inside data-gap alarms "
                f"({cov['data_gap_pct']:.2f} %)."
            ],
            "tables": [_table(COMPLETENESS_COLS, cov["meters"])],
            "charts": ["completeness", "daily"],
        }
    )
    sv = report["savings"]
    out.append(
        {
            "title": "Savings potential",
            "paragraphs": [
                sv.get("narrative", ""),
                f"Opportunities analysed from {report['analysis_from_utc']} "
                f"({report['actionable_count']} actionable: distinct, medium or high "
                "confidence, at least 0.1 % of the site's consumption).",
            ]
            + (
                [
                    f"Simple payback of {cur} {report['payback']['cost']:,.0f}: "
                    f"{_fmt(report['payback']['years_best'])}–"
                    f"{_fmt(report['payback']['years_worst'])} years."
                ]
                if report.get("payback")
                else []
            ),
            "tables": [_table(OPP_COLS, report["opportunities"], cur)],
            "charts": ["opportunities"],
        }
    )
    out.append(
        {
            "title": "Key anomalies",
            "tables": [_table(ALERT_COLS, report["key_anomalies"], cur)],
            "empty": "No waste alerts in the period.",
        }
    )
    out.append(
        {
            "title": "Recommended changes",
            "paragraphs": [
                f"{r['meter_id']} ({r['rule']}): {r['action']} Worth {cur} "
                f"{r['annual_money_low']:,}–{r['annual_money_high']:,} a year."
                for r in report["recommended"]
            ]
            or ["No actionable change found."],
        }
    )
    out.append(
        {
            "title": "Implemented changes",
            "tables": [_table(CONFIRMED_COLS, report["implemented"])],
            "empty": "No alert resolved with an action yet.",
            "paragraphs": [
                f"Estimated avoided so far: {report['avoided_so_far']['kwh']:,.0f} kWh "
                f"({cur} {report['avoided_so_far']['money']:,.0f})."
            ],
        }
    )
    return out


def _subtitle(report: dict) -> str:
    if report["kind"] == "weekly":
        # Monday to Sunday inclusive, in each site's local time (end_local is the next Monday).
        def days(p: dict) -> str:
            last = date.fromisoformat(p["end_local"][:10]) - timedelta(days=1)
            return f"{p['start_local'][:10]} to {last.isoformat()} ({p['timezone']})"

        if [p["site_id"] for p in report["periods"]] == [report["scope"]]:
            periods = days(report["periods"][0])
        else:
            periods = "; ".join(f"{p['site_id']}: {days(p)}" for p in report["periods"])
        return f"{report['organization']} · {report['scope']} · {periods}"
    return (
        f"{report['organization']} · {report['scope']} · {report['start_utc'][:10]} to "
        f"{report['end_utc'][:10]} (UTC)"
    )


def render_markdown(report: dict) -> str:
    lines = [f"# {report['title']}", "", _subtitle(report), ""]
    for sec in sections(report):
        lines += [f"## {sec['title']}", ""]
        for p in sec.get("paragraphs", []):
            lines += [p, ""]
        for header, rows in sec.get("tables", []):
            if not rows:
                lines += [sec.get("empty", "None."), ""]
                continue
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "|".join("---" for _ in header) + "|")
            for row in rows:
                cells = (_fmt(v).replace("|", "\\|").replace("\n", " ") for v in row)
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    lines.append(f"Generated {report['generated_at']} by CEI.")
    return "\n".join(lines) + "\n"


def _charts(report: dict) -> dict[str, str]:
    """Plotly figures as HTML fragments; plotly.js inlined in the first one only."""
    import plotly.graph_objects as go
    import plotly.io as pio

    figs = {}
    block = report["completeness"] if report["kind"] == "weekly" else report["coverage"]
    meters = block["meters"]
    if meters:
        pct = [m["completeness_pct"] for m in meters]
        colours = ["#2e7d32" if p >= 95 else "#f9a825" if p >= 90 else "#c62828" for p in pct]
        fig = go.Figure(
            go.Bar(
                x=[f"{m['site_id']}/{m['meter_id']}" for m in meters],
                y=pct,
                marker_color=colours,
                text=[f"{p:.1f} %" for p in pct],
                textposition="outside",
            )
        )
        fig.update_layout(title="Completeness per meter (%)", yaxis_range=[0, 110])
        figs["completeness"] = fig
    if report["daily_kwh"]:
        frame = pd.DataFrame(report["daily_kwh"])
        fig = go.Figure()
        for (site, meter), part in frame.groupby(["site_id", "meter_id"]):
            kind = "bar" if report["kind"] == "weekly" else "line"
            trace = go.Bar if kind == "bar" else go.Scatter
            fig.add_trace(trace(x=part["date"], y=part["kwh"], name=f"{site}/{meter}"))
        fig.update_layout(title="kWh per day (site local time)", yaxis_title="kWh")
        figs["daily"] = fig
    if report["kind"] == "pilot" and report["opportunities"]:
        opps = report["opportunities"][:12]
        fig = go.Figure(
            go.Bar(
                y=[f"{o['site_id']}/{o['meter_id']} · {o['rule']}" for o in opps][::-1],
                x=[o["annual_money_high"] for o in opps][::-1],
                orientation="h",
                marker_color="#1565c0",
            )
        )
        fig.update_layout(title=f"Opportunities, up to {report['currency']} per year")
        figs["opportunities"] = fig
    out, first = {}, True
    for name, fig in figs.items():
        fig.update_layout(
            template="plotly_white", height=360, margin={"l": 60, "r": 20, "t": 50, "b": 80}
        )
        out[name] = pio.to_html(
            fig,
            include_plotlyjs=first,
            full_html=False,
            config={"displaylogo": False, "responsive": True},
        )
        first = False
    return out


CSS = """
body { font-family: -apple-system, 'Segoe UI', Roboto, Arial, sans-serif; color: #1f2933;
       max-width: 1100px; margin: 2rem auto; padding: 0 1.5rem; line-height: 1.45; }
h1 { margin-bottom: .2rem; } .sub { color: #52606d; margin-top: 0; }
h2 { border-bottom: 2px solid #e4e7eb; padding-bottom: .2rem; margin-top: 2rem; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; margin: .6rem 0 1rem; }
th, td { border: 1px solid #d9dee3; padding: .3rem .5rem; text-align: left; }
th { background: #f0f4f8; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { color: #2e7d32; font-weight: 600; } .fail { color: #c62828; font-weight: 600; }
.chart { page-break-inside: avoid; break-inside: avoid; }
footer { color: #7b8794; font-size: .8rem; margin-top: 2rem; }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; }
               table, .chart { break-inside: avoid; } }
"""


def render_html(report: dict) -> str:
    charts = _charts(report)
    esc = html.escape
    body = [
        f"<h1>{esc(report['title'])}</h1>",
        f"<p class='sub'>{esc(_subtitle(report))}</p>",
    ]
    for sec in sections(report):
        body.append(f"<h2>{esc(sec['title'])}</h2>")
        for p in sec.get("paragraphs", []):
            body.append(f"<p>{esc(p)}</p>")
        for header, rows in sec.get("tables", []):
            if not rows:
                body.append(f"<p><em>{esc(sec.get('empty', 'None.'))}</em></p>")
                continue
            head = "".join(f"<th>{esc(h)}</th>" for h in header)
            trs = []
            for row in rows:
                cells = []
                for v in row:
                    cls = (
                        " class='num'"
                        if isinstance(v, int | float) and not isinstance(v, bool)
                        else " class='pass'"
                        if v == "PASS"
                        else " class='fail'"
                        if v == "FAIL"
                        else ""
                    )
                    cells.append(f"<td{cls}>{esc(_fmt(v))}</td>")
                trs.append("<tr>" + "".join(cells) + "</tr>")
            rows_html = "".join(trs)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table>")
        for name in sec.get("charts", []):
            if name in charts:
                body.append(f"<div class='chart'>{charts[name]}</div>")
    body.append(f"<footer>Generated {esc(report['generated_at'])} by CEI.</footer>")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{esc(report['title'])} · {esc(report['organization'])}</title>"
        f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>"
    )
