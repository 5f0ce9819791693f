"""Alerts: the waste and data-gap rules run over recent data, raised once per finding, triaged.

A scan looks at each meter's recent hours (default the last 7 days; after an ingest, back to
the first hour the batch touched, at most 35 days):

- waste rules, on energy meters with a baseline: every event above the baseline band
  (`core.anomalies`) is one finding. Its hours are assigned to rules exactly as the
  opportunities do (`core.opportunities.rule_hours`): spikes, night-load, weekend-load,
  baseline-deviation; the alert carries the rule holding most of the event's excess kWh, so a
  compressor left on from Friday night to Monday morning is one alert, not three.
- baseload, on main incomers: the baseline's baseload above the sector's benchmark.
- data-gap, on every meter: silent for more than the site's `gap_alert_hours` (default 3).
  An alert stays `ongoing` while the meter is silent and closes (resolved, by the scan) when
  data returns.

Idempotent: a finding that overlaps or touches an alert of the same meter and rule family
updates that alert (an ongoing event extends it) instead of raising another one; the unique
fingerprint (org, rule, meter, first hour) keeps two concurrent scans from raising the same
alert twice. Re-running a scan over unchanged data changes nothing.

Triage: open → acknowledged → resolved, open → resolved, open/acknowledged → dismissed, and
resolved/dismissed → open (reopen). Every change is an AlertEvent (who, when, old → new).
"""

import hashlib
import logging
import math
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import func, or_
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from core import kpis as kpi_module
from core.accounts import get_org
from core.analytics import AnalyticsService
from core.anomalies import _severity, detect_anomalies
from core.db import begin_write, session_scope, utcnow
from core.errors import Conflict, InvalidInput, NotFound
from core.health import HOUR, floor_hour, iso_z
from core.models import (
    Alert,
    AlertEvent,
    AlertRule,
    AlertStatus,
    AlertUpdate,
    Meter,
    MeterKind,
    Reading,
    Site,
    User,
)
from core.opportunities import Schedule, _high_baseload, rule_hours, time_classes
from core.sites import get_site

log = logging.getLogger("cei.alerts")

SCAN_LOOKBACK = timedelta(days=7)
MAX_SCAN_SPAN = timedelta(days=35)
CONTEXT = timedelta(hours=6)  # scanned before a batch's first hour, to see its event whole
WASTE_RULES = (
    AlertRule.night_load,
    AlertRule.weekend_load,
    AlertRule.spike,
    AlertRule.baseline_deviation,
)
# An event is worth an alert when it wastes at least one average hour of the meter's load
# and (sustained ones) at least 10 % more than expected over its hours.
MIN_SUSTAINED_EXCESS = 0.10
MIN_EXCESS_MEAN_HOURS = 1.0
# The same rule on the same meter again within a day (tonight's idling after last night's)
# extends the alert: one alert per recurring problem, not one per night.
RECUR_GAP = timedelta(hours=24)
TRANSITIONS: dict[str, set[str]] = {
    AlertStatus.open: {AlertStatus.acknowledged, AlertStatus.resolved, AlertStatus.dismissed},
    AlertStatus.acknowledged: {AlertStatus.resolved, AlertStatus.dismissed},
    AlertStatus.resolved: {AlertStatus.open},
    AlertStatus.dismissed: {AlertStatus.open},
}
SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2}
SCAN_ACTOR = "scan"


def _family(rule: str) -> str:
    return "waste" if rule in WASTE_RULES else rule


def fingerprint(org_id: int, meter_pk: int, rule: str, start: datetime) -> str:
    raw = f"{org_id}:{meter_pk}:{_family(rule)}:{iso_z(start)}"
    return hashlib.sha256(raw.encode()).hexdigest()[:40]


# --- findings ---------------------------------------------------------------------------------


@dataclass
class Finding:
    rule: str
    start: datetime
    end: datetime  # exclusive
    ongoing: bool
    hours: int = 0
    kwh: float = 0.0
    severity: str = "low"
    evidence: dict = field(default_factory=dict)


def waste_findings(
    actual: pd.Series,
    band: pd.DataFrame,
    *,
    tz: str,
    schedule: Schedule,
    country: str | None,
) -> list[Finding]:
    """One finding per event above the band that a rule claims (see module notes)."""
    index = band.index
    a = actual.reindex(index).to_numpy(dtype=float)
    expected = band["expected"].to_numpy()
    classes = time_classes(index, tz, schedule, country)
    events = [e for e in detect_anomalies(actual, band) if e.direction == "above"]
    rule_of_hour, _ = rule_hours(a, band, classes, events)
    last = index[-1] + pd.Timedelta(hours=1) if len(index) else None
    material = MIN_EXCESS_MEAN_HOURS * float(np.nanmean(expected)) if len(index) else 0.0
    out = []
    for e in events:
        span = (index >= e.start) & (index < e.end) & ~np.isnan(a)
        rules = rule_of_hour[span]
        if not (rules != "").any():
            continue  # a short excursion too small to be a spike
        if e.excess_kwh < material or (
            e.kind == "sustained" and e.excess_kwh < MIN_SUSTAINED_EXCESS * e.expected_kwh
        ):
            continue
        hourly = {
            iso_z(ts.to_pydatetime()): [round(float(v), 3), round(float(x), 3), str(r)]
            for ts, v, x, r in zip(index[span], a[span], expected[span], rules, strict=True)
        }
        out.append(
            Finding(
                rule=_dominant(hourly),
                start=e.start.to_pydatetime(),
                end=e.end.to_pydatetime(),
                ongoing=bool(last is not None and e.end >= last),
                evidence={"hourly": hourly},
            )
        )
    for f in out:
        _summarise(f)
    return out


def _dominant(hourly: dict) -> str:
    by_rule: dict[str, float] = {}
    for actual, expected, rule in hourly.values():
        if rule:
            by_rule[rule] = by_rule.get(rule, 0.0) + actual - expected
    return max(sorted(by_rule), key=by_rule.__getitem__) if by_rule else AlertRule.spike


def _summarise(f: Finding) -> None:
    """hours, kWh, rule and severity from the finding's hourly evidence."""
    hourly = f.evidence["hourly"]
    f.hours = len(hourly)
    f.kwh = float(sum(v - x for v, x, _ in hourly.values()))
    expected = float(sum(x for _, x, _ in hourly.values()))
    f.rule = _dominant(hourly)
    f.severity = _severity(f.kwh, expected, f.hours)


def baseload_finding(
    band: pd.DataFrame, actual: pd.Series, benchmark: float | None
) -> Finding | None:
    expected = band["expected"].to_numpy()
    high = _high_baseload(expected, benchmark)
    if high is None:
        return None
    excess, ratio = high
    observed = int(actual.reindex(band.index).notna().sum())
    return Finding(
        rule=AlertRule.baseload,
        start=band.index[0].to_pydatetime(),
        end=(band.index[-1] + pd.Timedelta(hours=1)).to_pydatetime(),
        ongoing=True,
        hours=observed,
        kwh=excess * observed,
        severity="medium",
        evidence={
            "excess_kwh_per_hour": round(excess, 3),
            "baseload_ratio": round(ratio, 3),
            "benchmark_high": benchmark,
        },
    )


def gap_findings(
    present: set[datetime],
    *,
    start: datetime,
    end: datetime,
    silent_since: datetime,
    threshold_hours: int,
) -> list[Finding]:
    """Runs of missing hours in [start, end) longer than the threshold.

    `silent_since` is where a run already open at `start` began (the hour after the last
    reading before the window, or when the meter was registered). A run reaching `end` is
    ongoing.
    """
    out = []
    run_start = silent_since if start not in present else None
    t = start
    while t < end:
        if t in present:
            if run_start is not None and (t - run_start) / HOUR > threshold_hours:
                out.append(_gap(run_start, t, ongoing=False))
            run_start = None
        elif run_start is None:
            run_start = t
        t += HOUR
    if run_start is not None and (end - run_start) / HOUR > threshold_hours:
        out.append(_gap(run_start, end, ongoing=True))
    return out


def _gap(start: datetime, end: datetime, *, ongoing: bool) -> Finding:
    hours = int((end - start) / HOUR)
    severity = "high" if hours > 24 else "medium" if hours > 6 else "low"
    return Finding(AlertRule.data_gap, start, end, ongoing, hours=hours, severity=severity)


# --- the scan ---------------------------------------------------------------------------------


@dataclass
class ScanResult:
    meters: int = 0
    raised: int = 0
    updated: int = 0
    closed: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "meters_scanned": self.meters,
            "raised": self.raised,
            "updated": self.updated,
            "closed": self.closed,
            "failed": self.failed,
            "seconds": round(self.seconds, 2),
        }


def scan_window(
    now_hour: datetime, touched: tuple[datetime, datetime] | None, lookback: timedelta
) -> datetime:
    """First hour a scan looks at: the lookback, or earlier to cover a batch, at most 35 d."""
    start = now_hour - lookback
    if touched is not None:
        start = min(start, floor_hour(touched[0]) - CONTEXT)
    return max(start, now_hour - MAX_SCAN_SPAN)


def scan_org(
    engine: Engine,
    *,
    org_id: int,
    now: datetime | None = None,
    touched: dict[int, tuple[datetime, datetime]] | None = None,
    lookback: timedelta = SCAN_LOOKBACK,
    progress: Callable[[int, int], None] | None = None,
) -> ScanResult:
    """Run every rule over the org's meters (or only the `touched` ones) and store the alerts.

    Each meter is analysed in a read-only session and written in a short write transaction of
    its own, so a scan never holds the write lock while it computes.
    """
    began = time.perf_counter()
    now_hour = floor_hour(now or utcnow())
    with session_scope(engine) as session:
        meters = _meters(session, org_id=org_id, pks=list(touched) if touched else None)
    result = ScanResult()
    for i, (meter, site) in enumerate(meters):
        start = scan_window(now_hour, (touched or {}).get(meter.id), lookback)
        try:
            window = (start, now_hour)
            # Computed in a read session that is never committed; the write lock is taken
            # only when the alerts change (most scans of most meters change nothing).
            with Session(engine) as session, session.no_autoflush:
                findings = _meter_findings(session, org_id, meter, site, start, now_hour)
                counts = apply_findings(
                    session, org_id=org_id, meter=meter, window=window, found=findings, write=False
                )
                session.rollback()
            if any(counts.values()):
                with session_scope(engine) as session:
                    begin_write(session)
                    counts = apply_findings(
                        session, org_id=org_id, meter=meter, window=window, found=findings
                    )
        except IntegrityError:
            # A concurrent scan raised the same alert first: its alert stands.
            log.info("alert scan: concurrent scan on meter %s", meter.meter_id)
            continue
        except Exception:
            log.exception("alert scan failed for meter %s/%s", site.site_id, meter.meter_id)
            result.failed.append(f"{site.site_id}/{meter.meter_id}")
            continue
        result.meters += 1
        result.raised += counts["raised"]
        result.updated += counts["updated"]
        result.closed += counts["closed"]
        if progress:
            progress(i + 1, len(meters))
    result.seconds = time.perf_counter() - began
    return result


def _meters(session: Session, *, org_id: int, pks: list[int] | None) -> list[tuple[Meter, Site]]:
    stmt = (
        select(Meter, Site)
        .join(Site, Site.id == Meter.site_pk)
        .where(Meter.org_id == org_id, Site.org_id == org_id)
        .order_by(Site.site_id, Meter.meter_id)
    )
    if pks is not None:
        stmt = stmt.where(Meter.id.in_(pks))
    return [(m, s) for m, s in session.exec(stmt).all()]


def _meter_findings(
    session: Session, org_id: int, meter: Meter, site: Site, start: datetime, end: datetime
) -> list[Finding]:
    found: list[Finding] = []
    if MeterKind(meter.kind).is_energy:
        service = AnalyticsService(session, org_id=org_id)
        a = service.analyse_meter(site.site_id, meter.meter_id, start, end)
        if a.fit.ok and a.band is not None and len(a.band):
            found += waste_findings(
                a.actual,
                a.band,
                tz=site.timezone,
                schedule=Schedule.from_dict(site.schedule),
                country=site.country,
            )
            if meter.kind == MeterKind.main_incomer:
                sectors = kpi_module._reference()["sectors"]
                bench = sectors.get(service.org.sector) or sectors["general"]
                base = baseload_finding(a.band, a.actual, bench["baseload_ratio"][1])
                found += [base] if base else []
    rows = session.execute(
        select(Reading.ts).where(
            Reading.meter_pk == meter.id, Reading.ts >= start, Reading.ts < end
        )
    )
    present = {ts for (ts,) in rows}
    before = session.execute(
        select(func.max(Reading.ts)).where(Reading.meter_pk == meter.id, Reading.ts < start)
    ).scalar()
    # Hours before a meter's first reading are not missing: it was not reporting yet. A meter
    # that never reported is silent since it was registered.
    if before is not None:
        walk_start, silent_since = start, before + HOUR
    elif present:
        walk_start = silent_since = min(present)
    else:  # silent since registered, as far back as a scan may look
        registered = max(floor_hour(meter.created_at), end - MAX_SCAN_SPAN)
        walk_start = silent_since = min(registered, end)
    found += gap_findings(
        present,
        start=walk_start,
        end=end,
        silent_since=silent_since,
        threshold_hours=site.gap_alert_hours,
    )
    return found


def apply_findings(
    session: Session,
    *,
    org_id: int,
    meter: Meter,
    window: tuple[datetime, datetime],
    found: list[Finding],
    now: datetime | None = None,
    write: bool = True,
) -> dict[str, int]:
    """Raise, extend or close this meter's alerts from a scan's findings over `window`.

    With `write=False` nothing is added or flushed: the counts say whether a write is needed
    (the caller discards the session's changes)."""
    now = now or utcnow()
    org = get_org(session, org_id=org_id)
    start, end = window
    if write:
        # One writer per meter at a time (PostgreSQL; SQLite writers are serialised anyway):
        # two scans of the same meter would otherwise both merge into the same alert.
        session.execute(select(Meter.id).where(Meter.id == meter.id).with_for_update())
    existing = list(
        session.exec(
            select(Alert).where(
                Alert.org_id == org_id,
                Alert.meter_pk == meter.id,
                or_(Alert.end >= start - RECUR_GAP - HOUR, Alert.ongoing),
            )
        ).all()
    )
    counts = {"raised": 0, "updated": 0, "closed": 0}
    matched: set[int] = set()
    raised: list[Alert] = []
    # What this scan changed per alert, written as one history row each at the end.
    changed: dict[int, tuple[Alert, str, dict]] = {}
    for f in sorted(_split_at_fixes(found, existing), key=lambda f: f.start):
        alert = _match(existing, f)
        if _family(f.rule) == "waste":
            # Every alert holding hours of this finding has been seen by the scan; the hours
            # another alert holds stay with it (an hour is wasted once, in one alert).
            matched.update(id(a) for a in existing if _shared_hours(a, f))
            f = _without_hours_of(f, [a for a in existing if a is not alert])
            if f is None:
                continue
        if alert is None:
            alert = _raise(session, org, meter, f, now) if write else _new_alert(org, meter, f, now)
            existing.append(alert)
            raised.append(alert)
            matched.add(id(alert))
            counts["raised"] += 1
            continue
        matched.add(id(alert))
        new = any(alert is r for r in raised)
        merged = _merge(alert, f, org, now, may_end=_may_end(window, alert))
        if merged and not new:
            outcome, changes = merged
            counts[outcome] += 1
            _note(changed, alert, "closed" if outcome == "closed" else "extended", changes)
    # Ongoing alerts this scan no longer sees continuing have ended (see _may_end).
    for alert in existing:
        if id(alert) in matched or not alert.ongoing or alert.end > end:
            continue
        if not _may_end(window, alert):
            continue
        changes = {"ongoing": [True, False]}
        alert.ongoing = False
        if alert.rule == AlertRule.data_gap:
            # The hours came back (late, or filled by a catch-up): the alarm stands for the
            # silence the last scan observed, up to its end.
            new_end = alert.end
            changes.update(_auto_close(alert, new_end, now))
            counts["closed"] += 1
        else:
            counts["updated"] += 1
        _note(changed, alert, "closed", changes)
    if not write:
        return counts
    for alert, kind, changes in changed.values():
        if changes := {k: v for k, v in changes.items() if v[0] != v[1]}:
            _history(session, alert, kind=kind, changes=changes, now=now)
        session.add(alert)
    for alert in raised:  # one "raised" entry with what the scan found in the end
        _history(session, alert, kind="raised", changes=_raised_changes(alert), now=now)
    session.flush()
    return counts


def _note(changed: dict, alert: Alert, kind: str, changes: dict) -> None:
    """Fold one change into the scan's record for the alert: first old value → last new
    value per field; "closed" wins over "extended"."""
    _, was, merged = changed.get(id(alert), (alert, kind, {}))
    for k, (old, new) in changes.items():
        merged[k] = [merged[k][0] if k in merged else old, new]
    changed[id(alert)] = (alert, "closed" if "closed" in (was, kind) else kind, merged)


def _raised_changes(alert: Alert) -> dict:
    return {k: [None, v] for k, v in _snapshot(alert).items() if k != "ongoing"}


def _hours(alert: Alert) -> set[str]:
    return (
        set((alert.evidence or {}).get("hourly", {})) if _family(alert.rule) == "waste" else set()
    )


def _shared_hours(alert: Alert, f: Finding) -> int:
    if _family(alert.rule) != "waste":
        return 0
    return len(_hours(alert).intersection(f.evidence["hourly"]))


def _match(existing: list[Alert], f: Finding) -> Alert | None:
    """The alert a finding belongs to, or None for a new one.

    A waste finding belongs to the alert holding most of its hours (the same event seen
    again, whatever rule now dominates it). Otherwise to an alert of its own rule that it
    overlaps, touches or (waste rules but spikes) follows within a day, the nearest first.
    A finding never joins an alert of another rule only because it falls inside that alert's
    span (a spike during the days a recurring night-load alert spans is its own alert)."""
    if _family(f.rule) == "waste":
        shared = [(n, i) for i, a in enumerate(existing) if (n := _shared_hours(a, f))]
        if shared:
            return existing[min(shared, key=lambda t: (-t[0], t[1]))[1]]
    candidates = [(_distance(a, f), i) for i, a in enumerate(existing) if _continues(a, f)]
    return existing[min(candidates)[1]] if candidates else None


def _distance(alert: Alert, f: Finding) -> timedelta:
    return max(f.start - alert.end, alert.start - f.end, timedelta(0))


def _continues(alert: Alert, f: Finding) -> bool:
    """A finding without hours in common with the alert that still continues it."""
    if alert.rule != f.rule:
        return False
    if alert.status in (AlertStatus.resolved, AlertStatus.dismissed) and f.start >= alert.end:
        # The problem is back after someone closed it: a new alert, so triage sees it (and the
        # avoided energy of the fix is netted against it).
        return False
    if alert.start <= f.end and f.start <= alert.end:
        return True  # overlapping or touching
    return (
        _family(f.rule) == "waste"
        and f.rule != AlertRule.spike
        and timedelta(0) < f.start - alert.end <= RECUR_GAP
    )


def _split_at_fixes(found: list[Finding], existing: list[Alert]) -> list[Finding]:
    """Waste findings cut where an alert of the meter was resolved: hours after a fix never
    extend the resolved alert (waste that goes on after someone marked it fixed is a new
    alert triage sees, and it is netted against the fix's avoided energy)."""
    fixes = sorted(
        a.resolved_at
        for a in existing
        if a.status == AlertStatus.resolved and a.resolved_at and _family(a.rule) == "waste"
    )
    out = []
    for f in found:
        parts = [f]
        if _family(f.rule) == "waste":
            for cut in fixes:
                if f.start < cut < f.end:
                    parts = [p for q in parts for p in _cut(q, cut) if p is not None]
        out += parts
    return out


def _cut(f: Finding, at: datetime) -> tuple[Finding | None, Finding | None]:
    """The finding's hours before `at` and from `at` on, each None when empty."""
    hourly = f.evidence["hourly"]
    before = {ts: v for ts, v in hourly.items() if datetime.fromisoformat(ts) < at}
    after = {ts: v for ts, v in hourly.items() if ts not in before}
    return _with_hours(f, before), _with_hours(f, after)


def _with_hours(f: Finding, kept: dict) -> Finding | None:
    """The finding reduced to the `kept` subset of its hours (None if empty)."""
    hourly = f.evidence["hourly"]
    if not kept:
        return None
    if len(kept) == len(hourly):
        return f
    first, last = min(kept), max(kept)
    start = f.start if first == min(hourly) else datetime.fromisoformat(first)
    end = f.end if last == max(hourly) else datetime.fromisoformat(last) + HOUR
    out = Finding(f.rule, start, end, f.ongoing and end == f.end, evidence={"hourly": kept})
    _summarise(out)
    return out


def _without_hours_of(f: Finding, others: list[Alert]) -> Finding | None:
    """The finding less the hours other alerts already hold (None if nothing is left)."""
    taken = set().union(*(_hours(a) for a in others)) if others else set()
    hourly = f.evidence["hourly"]
    return _with_hours(f, {ts: v for ts, v in hourly.items() if ts not in taken})


def _may_end(window: tuple[datetime, datetime], alert: Alert) -> bool:
    """Whether a scan over `window` may end an ongoing waste or baseload alert it does not
    see continuing: only if it looks past the alert's end (a rescan of the same hours with
    another window, so another baseline, does not undo what an earlier scan recorded) and it
    sees at least the alert's last day (RECUR_GAP) or the whole alert, so it can tell that the
    waste did not go on (the hourly 7-day scan ends an alert that began weeks ago). A
    data-gap alarm ends when data returns, whatever the window."""
    start, end = window
    if alert.rule == AlertRule.data_gap:
        return True
    return end > alert.end and (start <= alert.start or start <= alert.end - RECUR_GAP)


def _raise(session: Session, org, meter: Meter, f: Finding, now: datetime) -> Alert:
    alert = _new_alert(org, meter, f, now)
    with session.begin_nested():
        session.add(alert)
        session.flush()
    return alert


def _new_alert(org, meter: Meter, f: Finding, now: datetime) -> Alert:
    return Alert(
        org_id=org.id,
        site_pk=meter.site_pk,
        meter_pk=meter.id,
        rule=str(f.rule),
        fingerprint=fingerprint(org.id, meter.id, f.rule, f.start),
        start=f.start,
        end=f.end,
        ongoing=f.ongoing,
        hours=f.hours,
        wasted_kwh=round(f.kwh, 3),
        wasted_money=round(f.kwh * org.tariff_per_kwh, 2),
        currency=org.currency,
        severity=f.severity,
        evidence=f.evidence,
        created_at=now,
        updated_at=now,
    )


def _merge(
    alert: Alert, f: Finding, org, now: datetime, *, may_end: bool = True
) -> tuple[str, dict] | None:
    """Fold a finding into its alert; returns ("updated"|"closed", changes), or None if
    nothing changed. `may_end`: the scan may end the alert if ongoing (`_may_end`); else it
    extends it only."""
    before = _snapshot(alert)
    new_start, new_end = min(alert.start, f.start), max(alert.end, f.end)
    # A finding that reaches the alert's last hour says whether it still goes on.
    ongoing = f.ongoing if f.end >= alert.end - HOUR else alert.ongoing
    if not may_end:
        ongoing = ongoing or alert.ongoing
    if alert.rule == AlertRule.data_gap and alert.ongoing and not f.ongoing:
        # Data returned: the alarm keeps the silence the scans observed, however the hours
        # were filled in afterwards.
        ongoing = False
    if _family(alert.rule) == "waste":
        # Hours the alert holds keep the values recorded when a scan first saw them: a later
        # scan with another window (so another baseline) adds hours, never rewrites them.
        hourly = {**f.evidence["hourly"], **alert.evidence.get("hourly", {})}
        merged = Finding(alert.rule, new_start, new_end, ongoing, evidence={"hourly": hourly})
        _summarise(merged)
        alert.rule, alert.hours, alert.severity = merged.rule, merged.hours, merged.severity
        alert.wasted_kwh = round(merged.kwh, 3)
        alert.evidence = {"hourly": hourly}
    elif alert.rule == AlertRule.baseload:
        if new_end > alert.end:
            rate = f.evidence["excess_kwh_per_hour"]
            added = int((new_end - alert.end) / HOUR)
            alert.hours += added
            alert.wasted_kwh = round(alert.wasted_kwh + rate * added, 3)
            alert.evidence = f.evidence
    else:  # data-gap
        alert.hours = int((new_end - new_start) / HOUR)
        alert.severity = max(alert.severity, f.severity, key=SEVERITY_RANK.__getitem__)
    alert.start, alert.end, alert.ongoing = new_start, new_end, ongoing
    alert.wasted_money = round(alert.wasted_kwh * org.tariff_per_kwh, 2)
    changes = {k: [v, after] for k, v in before.items() if (after := _snapshot(alert)[k]) != v}
    outcome = "updated"
    if alert.rule == AlertRule.data_gap and before["ongoing"] and not alert.ongoing:
        changes.update(_auto_close(alert, alert.end, now))
        outcome = "closed"
    if not changes:
        return None
    alert.updated_at = now
    return outcome, changes


def _auto_close(alert: Alert, end: datetime, now: datetime) -> dict:
    """Data returned: the gap ends there; an untriaged gap alert resolves itself."""
    changes: dict = {}
    if alert.end != end:
        changes["end"] = [iso_z(alert.end), iso_z(end)]
        alert.end = end
        alert.hours = int((end - alert.start) / HOUR)
    if alert.status in (AlertStatus.open, AlertStatus.acknowledged):
        changes["status"] = [alert.status, AlertStatus.resolved]
        alert.status = AlertStatus.resolved
        alert.resolved_at = now
        if not alert.root_cause:
            alert.root_cause = "data returned"
            changes["root_cause"] = [None, alert.root_cause]
    alert.updated_at = now
    return changes


def _snapshot(alert: Alert) -> dict:
    return {
        "rule": alert.rule,
        "start": iso_z(alert.start),
        "end": iso_z(alert.end),
        "ongoing": alert.ongoing,
        "hours": alert.hours,
        "wasted_kwh": round(alert.wasted_kwh, 1),
        "severity": alert.severity,
    }


def _history(
    session: Session,
    alert: Alert,
    *,
    kind: str,
    changes: dict,
    now: datetime,
    user: User | None = None,
) -> None:
    """Append one history row: rows are never rewritten; a scan writes one row per alert it
    changed (see `_note`)."""
    session.add(
        AlertEvent(
            alert_id=alert.id,
            org_id=alert.org_id,
            at=now,
            user_id=user.id if user else None,
            actor=user.email if user else SCAN_ACTOR,
            kind=kind,
            changes=changes,
        )
    )


# --- reading and triage -----------------------------------------------------------------------


def effective_impact(alert: Alert) -> float:
    """kWh a week the fix saves: the analyst's estimate, else the waste rate while it lasted
    (a span under a week counts as a week, so a one-off spike is not multiplied up)."""
    if alert.impact_kwh_per_week is not None:
        return alert.impact_kwh_per_week
    if alert.rule == AlertRule.data_gap:
        return 0.0
    days = max((alert.end - alert.start) / timedelta(days=1), 7.0)
    return max(alert.wasted_kwh, 0.0) * 7 / days


def describe(alert: Alert, meter_id: str) -> str:
    if alert.rule == AlertRule.data_gap:
        state = "silent" if alert.ongoing else "was silent"
        return f"{meter_id} {state} for {alert.hours} h since {iso_z(alert.start)}"
    if alert.rule == AlertRule.baseload:
        ratio = alert.evidence.get("baseload_ratio", 0)
        return (
            f"{meter_id}: baseload {ratio:.0%} of average load, {alert.wasted_kwh:,.0f} kWh "
            f"idle consumption above the sector's typical level"
        )
    return (
        f"{meter_id}: {alert.rule} over {alert.hours} h, {alert.wasted_kwh:,.0f} kWh above "
        f"baseline ({alert.currency} {alert.wasted_money:,.0f})"
    )


def alert_public(alert: Alert, site: Site, meter: Meter, *, detail: bool = False) -> dict:
    out = {
        "id": alert.id,
        "site_id": site.site_id,
        "meter_id": meter.meter_id,
        "rule": alert.rule,
        "status": alert.status,
        "severity": alert.severity,
        "summary": describe(alert, meter.meter_id),
        "start_utc": iso_z(alert.start),
        "end_utc": iso_z(alert.end),
        "ongoing": alert.ongoing,
        "hours": alert.hours,
        "wasted_kwh": round(alert.wasted_kwh, 1),
        "wasted_money": round(alert.wasted_money, 2),
        "currency": alert.currency,
        "root_cause": alert.root_cause,
        "action": alert.action,
        "notes": alert.notes,
        "impact_kwh_per_week": alert.impact_kwh_per_week,
        "estimated_impact_kwh_per_week": round(effective_impact(alert), 1),
        "created_at": iso_z(alert.created_at),
        "updated_at": iso_z(alert.updated_at),
        "resolved_at": iso_z(alert.resolved_at),
    }
    if detail:
        out["evidence"] = _evidence_public(alert)
    return out


def _evidence_public(alert: Alert) -> dict:
    ev = dict(alert.evidence or {})
    hourly = ev.pop("hourly", None)
    if hourly is not None:
        ev["hours"] = [
            {"timestamp_utc": ts, "actual_kwh": v, "expected_kwh": x, "rule": r or None}
            for ts, (v, x, r) in sorted(hourly.items())
        ]
    return ev


def list_alerts(
    session: Session,
    *,
    org_id: int,
    status: str | None = None,
    site_id: str | None = None,
    rule: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> dict:
    """The org's alerts, newest first; `since` keeps those still running at or after it."""
    for value, allowed, what in (
        (status, AlertStatus, "status"),
        (rule, AlertRule, "rule"),
    ):
        if value is not None and value not in {m.value for m in allowed}:
            choices = ", ".join(m.value for m in allowed)
            raise InvalidInput(f"unknown {what} {value!r}; one of {choices}", code=f"bad_{what}")
    if since is not None and since.tzinfo is None:
        raise InvalidInput("since must carry a time zone, e.g. ...T00:00:00Z")
    stmt = (
        select(Alert, Site, Meter)
        .join(Site, Site.id == Alert.site_pk)
        .join(Meter, Meter.id == Alert.meter_pk)
        .where(Alert.org_id == org_id)
    )
    if status:
        stmt = stmt.where(Alert.status == status)
    if site_id:
        get_site(session, org_id=org_id, site_id=site_id)  # another org's site: 404
        stmt = stmt.where(Site.site_id == site_id)
    if rule:
        stmt = stmt.where(Alert.rule == rule)
    if since:
        stmt = stmt.where(or_(Alert.end >= since, Alert.ongoing))
    total = session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    rows = session.exec(
        stmt.order_by(Alert.start.desc(), Alert.id.desc()).offset(offset).limit(limit)
    ).all()
    return {
        "data": [alert_public(a, s, m) for a, s, m in rows],
        "count": total,
        "limit": limit,
        "offset": offset,
    }


def _get(session: Session, *, org_id: int, alert_id: int) -> tuple[Alert, Site, Meter]:
    row = session.exec(
        select(Alert, Site, Meter)
        .join(Site, Site.id == Alert.site_pk)
        .join(Meter, Meter.id == Alert.meter_pk)
        .where(Alert.id == alert_id, Alert.org_id == org_id)
    ).first()
    if row is None:
        raise NotFound(f"alert {alert_id} not found", code="unknown_alert")
    return row


def history(session: Session, alert: Alert) -> list[dict]:
    events = session.exec(
        select(AlertEvent).where(AlertEvent.alert_id == alert.id).order_by(AlertEvent.id)
    ).all()
    return [
        {"at": iso_z(e.at), "actor": e.actor, "kind": e.kind, "changes": e.changes} for e in events
    ]


def get_alert(session: Session, *, org_id: int, alert_id: int) -> dict:
    alert, site, meter = _get(session, org_id=org_id, alert_id=alert_id)
    return {**alert_public(alert, site, meter, detail=True), "history": history(session, alert)}


def update_alert(
    session: Session,
    *,
    org_id: int,
    alert_id: int,
    data: AlertUpdate,
    user_id: int | None,
    now: datetime | None = None,
) -> dict:
    """Triage: a status transition and/or root cause, action, notes, impact; all in history."""
    now = now or utcnow()
    begin_write(session)
    alert, site, meter = _get(session, org_id=org_id, alert_id=alert_id)
    user = session.get(User, user_id) if user_id else None
    fields = data.model_dump(exclude_unset=True)
    changes: dict = {}
    new_status = fields.pop("status", None)
    if new_status is not None and new_status != alert.status:
        if new_status not in TRANSITIONS[alert.status]:
            allowed = ", ".join(sorted(TRANSITIONS[alert.status])) or "none"
            raise Conflict(
                f"an alert cannot go from {alert.status} to {new_status}; from {alert.status} "
                f"it can go to: {allowed}",
                code="illegal_transition",
            )
        changes["status"] = [alert.status, new_status]
        alert.status = new_status
        alert.resolved_at = now if new_status == AlertStatus.resolved else None
    for name, value in fields.items():
        old = getattr(alert, name)
        if value != old and not (
            isinstance(value, float) and old is not None and math.isclose(value, old)
        ):
            changes[name] = [old, value]
            setattr(alert, name, value)
    if changes:
        alert.updated_at = now
        kind = "status" if "status" in changes else "edited"
        _history(session, alert, kind=kind, changes=changes, now=now, user=user)
        session.add(alert)
        session.flush()
    return {**alert_public(alert, site, meter, detail=True), "history": history(session, alert)}


def gap_hours(
    session: Session,
    *,
    org_id: int,
    start: datetime,
    end: datetime,
    site_pk: int | None = None,
    now: datetime | None = None,
) -> int:
    """Hours of data-gap alerts inside [start, end), summed over meters (ongoing ones up to now)."""
    now_hour = floor_hour(now or utcnow())
    stmt = select(Alert.start, Alert.end, Alert.ongoing).where(
        Alert.org_id == org_id,
        Alert.rule == AlertRule.data_gap,
        Alert.start < end,
        or_(Alert.end > start, Alert.ongoing),
    )
    if site_pk is not None:
        stmt = stmt.where(Alert.site_pk == site_pk)
    total = 0
    for a_start, a_end, ongoing in session.execute(stmt):
        stop = max(a_end, now_hour) if ongoing else a_end
        lo, hi = max(a_start, start), min(stop, end)
        if hi > lo:
            total += int((hi - lo) / HOUR)
    return total


# --- scans after ingestion ----------------------------------------------------------------------


def _lower_priority() -> None:
    if hasattr(os, "nice"):
        os.nice(10)  # ingestion first: the scan takes what CPU is left


def run_scan_job(database_url: str, org_id: int, touched: dict) -> dict:
    """Entry point of the scan worker process."""
    from core.db import get_engine

    return scan_org(get_engine(database_url), org_id=org_id, touched=touched).to_dict()


class _Retry(dict):
    """Pending spans of an org whose scan is a second try (its worker died once)."""


class IngestScanScheduler:
    """Coalesces the meters touched by accepted batches and scans them off the request path.

    `notify` is cheap (a dict merge under a lock). A daemon thread waits `delay` seconds after
    the first notification, takes everything pending and hands it to one worker process (at a
    lower CPU priority, so the analysis never competes with the API's request handling).
    Batches arriving while a scan runs are merged into the next one.
    """

    def __init__(self, database_url: str, *, delay: float = 30.0) -> None:
        self.database_url = database_url
        self.delay = delay
        self._pending: dict[int, dict[int, tuple[datetime, datetime]]] = {}
        self._first: float | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pool: ProcessPoolExecutor | None = None
        self._thread = threading.Thread(target=self._loop, name="alert-scan", daemon=True)
        self.completed: deque[dict] = deque(maxlen=100)  # the latest outcomes

    def start(self) -> None:
        self._thread.start()

    def notify(self, org_id: int, touched: dict[int, tuple[datetime, datetime]]) -> None:
        if not touched:
            return
        with self._lock:
            spans = self._pending.setdefault(org_id, {})
            for pk, (lo, hi) in touched.items():
                old = spans.get(pk)
                spans[pk] = (min(lo, old[0]), max(hi, old[1])) if old else (lo, hi)
            if self._first is None:
                self._first = time.monotonic()
        self._wake.set()

    def stop(self) -> None:
        """Stop at once: a scan in progress is abandoned (it writes per meter, and the next
        scan redoes whatever it did not finish)."""
        with self._lock:
            self._stop.set()
            pool, self._pool = self._pool, None
        self._wake.set()
        if pool is not None:
            # shutdown() cannot interrupt a running job; terminating the worker does, so the
            # server's exit never waits for a scan.
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)

    def _worker(self) -> ProcessPoolExecutor | None:
        with self._lock:
            if self._pool is None and not self._stop.is_set():
                self._pool = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_lower_priority,
                )
            return self._pool

    def _take(self) -> dict:
        with self._lock:
            pending, self._pending, self._first = self._pending, {}, None
            self._wake.clear()
            return pending

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            if self._stop.is_set():
                return
            with self._lock:
                first = self._first
            if first is None:
                self._wake.clear()
                continue
            remaining = first + self.delay - time.monotonic()
            if remaining > 0:
                self._stop.wait(remaining)
                continue
            for org_id, touched in self._take().items():
                retry, touched = isinstance(touched, _Retry), dict(touched)
                pool = self._worker()
                if pool is None:
                    return
                try:
                    outcome = pool.submit(run_scan_job, self.database_url, org_id, touched).result()
                    self.completed.append({"org_id": org_id, **outcome})
                    log.info("alert scan after ingest: org %s %s", org_id, outcome)
                except BrokenProcessPool:
                    if self._stop.is_set():
                        return
                    # The worker died (killed, out of memory): a new one takes these meters
                    # once more after the delay; if it dies again, the cron scan covers them.
                    with self._lock:
                        self._pool = None
                        if not retry:
                            spans = self._pending.setdefault(org_id, _Retry())
                            if not isinstance(spans, _Retry):
                                self._pending[org_id] = spans = _Retry(spans)
                            for pk, span in touched.items():
                                old = spans.get(pk)
                                spans[pk] = (
                                    (min(span[0], old[0]), max(span[1], old[1])) if old else span
                                )
                            self._first = self._first or time.monotonic()
                            self._wake.set()
                    log.error(
                        "alert scan worker died; org %s %s",
                        org_id,
                        "left to the cron scan" if retry else "is scanned again",
                    )
                except Exception:
                    if self._stop.is_set():
                        return
                    log.exception("alert scan after ingest failed for org %s", org_id)
