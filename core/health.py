"""Data health: completeness per meter, last seen, gaps, and ingest errors by code."""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlmodel import Session

from core.db import utcnow
from core.models import IngestBatch, Meter, Reading, Site
from core.sites import get_site

HOUR = timedelta(hours=1)
_CHUNK = 400


def floor_hour(ts: datetime) -> datetime:
    return ts.replace(minute=0, second=0, microsecond=0)


def window_bounds(window_hours: int, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The last `window_hours` whole hours before now: [start, end), hour-aligned UTC."""
    end = floor_hour(now or utcnow())
    return end - window_hours * HOUR, end


def iso_z(ts: datetime | None) -> str | None:
    return None if ts is None else ts.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class MeterRef:
    pk: int
    site_id: str
    meter_id: str
    kind: str


def org_meters(
    session: Session,
    *,
    org_id: int,
    site_id: str | None = None,
    site_ids: Sequence[str] | None = None,
) -> list[MeterRef]:
    """Every registered meter of the org (optionally one site, or a token's sites), ordered."""
    stmt = (
        select(Meter.id, Site.site_id, Meter.meter_id, Meter.kind)
        .join(Site, Site.id == Meter.site_pk)
        .where(Meter.org_id == org_id, Site.org_id == org_id)
        .order_by(Site.site_id, Meter.meter_id)
    )
    if site_id is not None:
        stmt = stmt.where(Site.site_id == site_id)
    if site_ids is not None:
        stmt = stmt.where(Site.site_id.in_(list(site_ids)))
    return [MeterRef(*row) for row in session.execute(stmt)]


def _chunks(items: list, size: int = _CHUNK):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def counts_in_window(
    session: Session, pks: list[int], start: datetime, end: datetime
) -> dict[int, int]:
    counts: dict[int, int] = {}
    for chunk in _chunks(pks):
        rows = session.execute(
            select(Reading.meter_pk, func.count())
            .where(Reading.meter_pk.in_(chunk), Reading.ts >= start, Reading.ts < end)
            .group_by(Reading.meter_pk)
        )
        counts.update(dict(rows.all()))
    return counts


def last_seen(session: Session, pks: list[int]) -> dict[int, tuple[datetime, datetime]]:
    """Per meter: (last ingest time, last reading hour), each an index seek."""
    out: dict[int, tuple[datetime, datetime]] = {}
    for chunk in _chunks(pks):
        m = select(Meter.id).where(Meter.id.in_(chunk)).subquery()
        last_in = (
            select(func.max(Reading.ingested_at))
            .where(Reading.meter_pk == m.c.id)
            .scalar_subquery()
        )
        last_ts = select(func.max(Reading.ts)).where(Reading.meter_pk == m.c.id).scalar_subquery()
        for pk, seen, ts in session.execute(select(m.c.id, last_in, last_ts)):
            if seen is not None:
                out[pk] = (_aware(seen), _aware(ts))
    return out


def _aware(value) -> datetime:
    # Scalar subqueries lose the column type on SQLite, so text or naive values come back.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def completeness(actual: int, expected: int) -> float:
    return round(100.0 * actual / expected, 1) if expected else 0.0


def ingest_health(
    session: Session,
    *,
    org_id: int,
    window_hours: int,
    site_id: str | None = None,
    site_ids: Sequence[str] | None = None,
    now: datetime | None = None,
) -> dict:
    """DESIGN's ingest_health payload: one row per registered meter, silent ones at 0 %."""
    if site_id is not None:
        get_site(session, org_id=org_id, site_id=site_id)  # unknown or foreign: NotFound
    start, end = window_bounds(window_hours, now)
    meters = org_meters(session, org_id=org_id, site_id=site_id, site_ids=site_ids)
    pks = [m.pk for m in meters]
    counts = counts_in_window(session, pks, start, end)
    seen = last_seen(session, pks)
    rows = []
    for m in meters:
        actual = counts.get(m.pk, 0)
        last = seen.get(m.pk)
        rows.append(
            {
                "site_id": m.site_id,
                "meter_id": m.meter_id,
                "window_hours": window_hours,
                "expected_points": window_hours,
                "actual_points": actual,
                "completeness_pct": completeness(actual, window_hours),
                "last_seen": iso_z(last[0]) if last else None,
                "last_reading_utc": iso_z(last[1]) if last else None,
            }
        )
    return {
        "window_hours": window_hours,
        "window_start_utc": iso_z(start),
        "window_end_utc": iso_z(end),
        "meters": rows,
    }


def gap_stats(present: set[datetime], start: datetime, end: datetime) -> tuple[int, int]:
    """(missing hours, longest run of consecutive missing hours) in [start, end)."""
    missing = longest = run = 0
    t = start
    while t < end:
        if t in present:
            run = 0
        else:
            missing += 1
            run += 1
            longest = max(longest, run)
        t += HOUR
    return missing, longest


def hours_present(
    session: Session, pks: list[int], start: datetime, end: datetime
) -> dict[int, set[datetime]]:
    present: dict[int, set[datetime]] = {pk: set() for pk in pks}
    for chunk in _chunks(pks):
        rows = session.execute(
            select(Reading.meter_pk, Reading.ts).where(
                Reading.meter_pk.in_(chunk), Reading.ts >= start, Reading.ts < end
            )
        )
        for pk, ts in rows:
            present[pk].add(ts)
    return present


def errors_since(session: Session, *, org_id: int, since: datetime) -> tuple[Counter, dict]:
    """Ingest errors by code since a time, in total and per 'site_id/meter_id'."""
    total: Counter[str] = Counter()
    per_meter: dict[str, Counter[str]] = {}
    rows = session.execute(
        select(IngestBatch.errors_by_code, IngestBatch.errors_by_meter).where(
            IngestBatch.org_id == org_id, IngestBatch.received_at >= since
        )
    )
    for by_code, by_meter in rows:
        total.update(by_code or {})
        for where, counts in (by_meter or {}).items():
            per_meter.setdefault(where, Counter()).update(counts)
    return total, per_meter


def ingest_metrics(session: Session, *, org_id: int, now: datetime | None = None) -> dict:
    """Per meter: last seen, completeness 24 h and 7 d, errors by code and gap hours in 7 d."""
    now = now or utcnow()
    start_24, end = window_bounds(24, now)
    start_7d, _ = window_bounds(168, now)
    meters = org_meters(session, org_id=org_id)
    pks = [m.pk for m in meters]
    present = hours_present(session, pks, start_7d, end)
    seen = last_seen(session, pks)
    total_errors, per_meter = errors_since(session, org_id=org_id, since=start_7d)
    rows = []
    for m in meters:
        hours = present[m.pk]
        missing, longest = gap_stats(hours, start_7d, end)
        in_24 = sum(1 for ts in hours if ts >= start_24)
        last = seen.get(m.pk)
        errors = per_meter.get(f"{m.site_id}/{m.meter_id}", Counter())
        rows.append(
            {
                "site_id": m.site_id,
                "meter_id": m.meter_id,
                "last_seen": iso_z(last[0]) if last else None,
                "last_reading_utc": iso_z(last[1]) if last else None,
                "completeness_24h_pct": completeness(in_24, 24),
                "completeness_7d_pct": completeness(len(hours), 168),
                "missing_hours_7d": missing,
                "longest_gap_hours_7d": longest,
                "errors_7d": dict(sorted(errors.items())),
            }
        )
    return {
        "generated_at": iso_z(now),
        "window_7d_start_utc": iso_z(start_7d),
        "window_end_utc": iso_z(end),
        "errors_by_code_7d": dict(sorted(total_errors.items())),
        "meters": rows,
    }


def completeness_matrix(
    session: Session,
    *,
    org_id: int,
    start: datetime,
    end: datetime,
    bucket: str = "day",
    site_id: str | None = None,
) -> list[dict]:
    """Points per meter per UTC day (or hour) in [start, end), with the hours expected there.

    Hours are UTC: a heat map of a pipe's health needs no local calendar.
    """
    if bucket not in ("day", "hour"):
        raise ValueError("bucket is day or hour")
    meters = org_meters(session, org_id=org_id, site_id=site_id)
    present = hours_present(session, [m.pk for m in meters], start, end)
    out = []
    for m in meters:
        counts: Counter[datetime] = Counter()
        for ts in present[m.pk]:
            counts[ts.replace(hour=0) if bucket == "day" else ts] += 1
        t = start if bucket == "hour" else start.replace(hour=0)
        step = HOUR if bucket == "hour" else timedelta(days=1)
        while t < end:
            lo, hi = max(t, start), min(t + step, end)
            out.append(
                {
                    "site_id": m.site_id,
                    "meter_id": m.meter_id,
                    "bucket_utc": iso_z(t),
                    "points": counts.get(t, 0),
                    "expected": int((hi - lo) / HOUR),
                }
            )
            t += step
    return out


def errors_timeline(session: Session, *, org_id: int, since: datetime) -> list[dict]:
    """Ingest errors by UTC day and code since a time, from the batch audit."""
    rows = session.execute(
        select(IngestBatch.received_at, IngestBatch.errors_by_code).where(
            IngestBatch.org_id == org_id, IngestBatch.received_at >= since
        )
    )
    per_day: Counter[tuple[str, str]] = Counter()
    for received, by_code in rows:
        day = _aware(received).strftime("%Y-%m-%d")
        for code, n in (by_code or {}).items():
            per_day[(day, code)] += n
    return [{"day": d, "code": c, "count": n} for (d, c), n in sorted(per_day.items())]
