"""Reading back what was ingested: per-meter summary, hourly/daily/weekly series, CSV export."""

import csv
import io
from collections.abc import Iterator
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import String, func, select, type_coerce
from sqlmodel import Session

from core.errors import InvalidInput
from core.health import iso_z, org_meters, window_bounds
from core.models import Meter, Reading
from core.sites import get_meter, get_site

MAX_HOURLY_DAYS = 370
MAX_AGGREGATE_DAYS = 3700
EXPORT_COLUMNS = ("site_id", "meter_id", "timestamp_utc", "value", "unit", "idempotency_key")


class Resolution(StrEnum):
    hour = "hour"
    day = "day"
    week = "week"


def summary(
    session: Session, *, org_id: int, site_id: str, window_hours: int, now: datetime | None = None
) -> dict:
    """Per meter of a site over the last whole hours: points vs expected, kWh statistics."""
    get_site(session, org_id=org_id, site_id=site_id)
    start, end = window_bounds(window_hours, now)
    meters = org_meters(session, org_id=org_id, site_id=site_id)
    stats = {}
    if meters:
        rows = session.execute(
            select(
                Reading.meter_pk,
                func.count(),
                func.sum(Reading.value),
                func.min(Reading.value),
                func.max(Reading.value),
                func.min(Reading.ts),
                func.max(Reading.ts),
            )
            .where(
                Reading.meter_pk.in_([m.pk for m in meters]),
                Reading.ts >= start,
                Reading.ts < end,
            )
            .group_by(Reading.meter_pk)
        )
        stats = {row[0]: row[1:] for row in rows}
    out = []
    for m in meters:
        n, total, lo, hi, first, last = stats.get(m.pk, (0, None, None, None, None, None))
        out.append(
            {
                "meter_id": m.meter_id,
                "kind": m.kind,
                "points": n,
                "expected_points": window_hours,
                "total_kwh": _round(total),
                "min_kwh": _round(lo),
                "max_kwh": _round(hi),
                "mean_kwh": _round(total / n) if n else None,
                "first_timestamp_utc": _iso_any(first),
                "last_timestamp_utc": _iso_any(last),
            }
        )
    return {
        "site_id": site_id,
        "window_hours": window_hours,
        "window_start_utc": iso_z(start),
        "window_end_utc": iso_z(end),
        "meters": out,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def _iso_any(value) -> str | None:
    # Aggregates lose the column type on SQLite: values may come back as text.
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return iso_z(pd.Timestamp(value).tz_localize("UTC") if value.tzinfo is None else value)


def hourly_values(session: Session, *, meter_pk: int, start: datetime, end: datetime) -> pd.Series:
    """kWh per hour-beginning UTC timestamp in [start, end); missing hours are NaN.

    `start` is rounded up and `end` down to whole UTC hours.
    """
    start_h = pd.Timestamp(start).tz_convert("UTC").ceil("h")
    end_h = pd.Timestamp(end).tz_convert("UTC").ceil("h")
    index = pd.date_range(start_h, end_h, freq="h", inclusive="left", name="ts")
    # SQLite keeps UTC text: read it raw and parse it in one vectorised call instead of one
    # Python datetime per row (a year of hours is 8,760 rows per meter).
    sqlite = session.get_bind().dialect.name == "sqlite"
    ts_col = type_coerce(Reading.ts, String) if sqlite else Reading.ts
    rows = session.execute(
        select(ts_col, Reading.value).where(
            Reading.meter_pk == meter_pk,
            Reading.ts >= start_h.to_pydatetime(),
            Reading.ts < end_h.to_pydatetime(),
        )
    ).all()
    stamps = [t for t, _ in rows]
    when = (
        pd.to_datetime(stamps, format="%Y-%m-%d %H:%M:%S.%f", utc=True)
        if sqlite
        else pd.DatetimeIndex(stamps, tz="UTC")
        if stamps
        else pd.DatetimeIndex([], tz="UTC")
    )
    stored = pd.Series([v for _, v in rows], index=when, dtype="float64")
    return stored.reindex(index)


def _check_range(start: datetime, end: datetime, resolution: Resolution) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidInput("start and end must carry a time zone, e.g. 2025-12-01T00:00:00Z")
    if end <= start:
        raise InvalidInput("end must be after start")
    limit = MAX_HOURLY_DAYS if resolution == Resolution.hour else MAX_AGGREGATE_DAYS
    if end - start > timedelta(days=limit):
        raise InvalidInput(f"a {resolution} series spans at most {limit} days; narrow the range")


def _bucket_key(naive_local: pd.Timestamp, resolution: Resolution) -> pd.Timestamp:
    """The local calendar day (or ISO week's Monday) holding a naive local wall time."""
    day = naive_local.normalize()
    return day - pd.Timedelta(days=day.day_of_week) if resolution == Resolution.week else day


def _localize(naive_local: pd.Timestamp, tz: ZoneInfo) -> pd.Timestamp:
    # Where local midnight does not exist (a DST jump at 00:00), the day starts at the jump.
    return naive_local.tz_localize(tz, nonexistent="shift_forward", ambiguous=True)


def _local_bounds(
    start: datetime, end: datetime, tz: ZoneInfo, resolution: Resolution
) -> tuple[datetime, datetime]:
    """Widen [start, end) to whole local days or ISO weeks of the site, as UTC instants.

    Calendar steps are taken on wall time, so a 23- or 25-hour day stays one whole day.
    """
    step = pd.Timedelta(days=7 if resolution == Resolution.week else 1)
    s = _bucket_key(pd.Timestamp(start).tz_convert(tz).tz_localize(None), resolution)
    e_wall = pd.Timestamp(end).tz_convert(tz).tz_localize(None)
    e = _bucket_key(e_wall, resolution)
    if e < e_wall:
        e += step
    return (
        _localize(s, tz).tz_convert("UTC").to_pydatetime(),
        _localize(e, tz).tz_convert("UTC").to_pydatetime(),
    )


def series(
    session: Session,
    *,
    org_id: int,
    site_id: str,
    meter_id: str,
    start: datetime,
    end: datetime,
    resolution: Resolution = Resolution.hour,
) -> dict:
    """A meter's kWh over a range.

    Hourly: one point per hour-beginning in [start, end), `kwh` null where the hour is missing,
    so charts show gaps. Daily/weekly: buckets are whole days/ISO weeks in the site's local time
    (a DST day has 23 or 25 hours); each reports the `hours` it covers out of `expected_hours`
    and `complete`, so a day with gaps is marked, never silently lower.
    """
    _check_range(start, end, resolution)
    site, meter = get_meter(session, org_id=org_id, site_id=site_id, meter_id=meter_id)
    tz = ZoneInfo(site.timezone)
    if resolution != Resolution.hour:
        start, end = _local_bounds(start, end, tz, resolution)
    values = hourly_values(session, meter_pk=meter.id, start=start, end=end)
    if resolution == Resolution.hour:
        points = [
            {"timestamp_utc": iso_z(ts), "kwh": None if pd.isna(v) else float(v)}
            for ts, v in values.items()
        ]
    else:
        wall = values.index.tz_convert(tz).tz_localize(None)
        day = wall.normalize()
        keys = (
            day - pd.to_timedelta(day.day_of_week, unit="D")
            if resolution == Resolution.week
            else day
        )
        points = []
        for key, chunk in values.groupby(keys):
            hours = int(chunk.notna().sum())
            bucket = _localize(pd.Timestamp(key), tz)
            points.append(
                {
                    "start_utc": iso_z(bucket.tz_convert("UTC").to_pydatetime()),
                    "start_local": bucket.isoformat(),
                    "kwh": float(chunk.sum()) if hours else None,
                    "hours": hours,
                    "expected_hours": len(chunk),
                    "complete": hours == len(chunk),
                }
            )
    return {
        "site_id": site.site_id,
        "meter_id": meter.meter_id,
        "timezone": site.timezone,
        "resolution": str(resolution),
        "start_utc": iso_z(start),
        "end_utc": iso_z(end),
        "unit": "kWh",
        "points": points,
    }


def export_csv(
    session: Session,
    *,
    org_id: int,
    site_id: str,
    meter_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    chunk_rows: int = 5000,
) -> Iterator[str]:
    """CSV text in the ingest columns (re-importable as is), yielded in chunks of rows.

    The site and meter are checked at the call (NotFound), before any row is produced.
    """
    site = get_site(session, org_id=org_id, site_id=site_id)
    stmt = (
        select(Meter.meter_id, Reading.ts, Reading.value, Reading.idempotency_key)
        .join(Meter, Meter.id == Reading.meter_pk)
        .where(Meter.site_pk == site.id, Meter.org_id == org_id, Reading.org_id == org_id)
        .order_by(Meter.meter_id, Reading.ts)
    )
    if meter_id is not None:
        get_meter(session, org_id=org_id, site_id=site_id, meter_id=meter_id)
        stmt = stmt.where(Meter.meter_id == meter_id)
    if start is not None:
        stmt = stmt.where(Reading.ts >= start)
    if end is not None:
        stmt = stmt.where(Reading.ts < end)
    return _export_rows(session, stmt, site.site_id, chunk_rows)


def _export_rows(session: Session, stmt, site_id: str, chunk_rows: int) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for n, (m_id, ts, value, key) in enumerate(
        session.execute(stmt.execution_options(yield_per=chunk_rows)), start=1
    ):
        # repr() is the shortest text that reads back to the same float: exports round-trip.
        writer.writerow((site_id, m_id, iso_z(ts), repr(float(value)), "kWh", key))
        if n % chunk_rows == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()
