"""Ingestion: validate hourly kWh records, store them idempotently, audit every batch.

Semantics (the contract relays rely on):

- `timestamp_utc` is ISO 8601 UTC with `Z` and marks the START of the hour whose energy `value`
  holds (hour-beginning). A UTC day is 24 records; a local day has 23 or 25 hours at DST changes.
- One value per meter and hour. Sending the same record again is `skipped_duplicate`, never a
  second row. A different value for a stored hour is VALUE_CONFLICT (or IDEMPOTENCY_CONFLICT when
  it reuses the stored key) unless the call is an explicit revision (`mode="revise"`), which
  replaces the value and keeps the old one in ReadingRevision.
- Good records are stored even when others in the same batch fail; every refused record gets
  one error naming its index (and CSV line), a code, the field and what was expected.
"""

import csv
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from operator import attrgetter
from typing import IO, Any

from sqlalchemy import String, select, type_coerce, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session

from core.accounts import Principal
from core.db import begin_write, session_scope, utcnow
from core.errors import InvalidInput, Unavailable
from core.models import (
    SLUG_RE,
    IngestBatch,
    Meter,
    MeterKind,
    Reading,
    ReadingRevision,
    ReadingSource,
    Site,
)

MAX_ERRORS_REPORTED = 1000  # per response; `failed` always counts every refused record
FUTURE_TOLERANCE = timedelta(minutes=5)  # relay clocks drift; an hour starting later is future
MAX_KEY_LENGTH = 200
CSV_COLUMNS = ("site_id", "meter_id", "timestamp_utc", "value", "unit")
CSV_CHUNK_ROWS = 5000
_LOOKUP_CHUNK = 400  # keeps IN lists well under every driver's bound-parameter limit
_TS_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z$", re.ASCII)


class TimeseriesIngestErrorCode(StrEnum):
    """Why a record was refused. Stable: relays and reports key on these names."""

    INVALID_RECORD = "INVALID_RECORD"  # not a JSON object / unreadable CSV row
    MISSING_FIELD = "MISSING_FIELD"
    INVALID_FIELD = "INVALID_FIELD"  # wrong type or too long (e.g. idempotency_key)
    INVALID_TIMESTAMP = "INVALID_TIMESTAMP"
    TIMESTAMP_NOT_HOUR_ALIGNED = "TIMESTAMP_NOT_HOUR_ALIGNED"
    TIMESTAMP_IN_FUTURE = "TIMESTAMP_IN_FUTURE"
    INVALID_VALUE = "INVALID_VALUE"
    INVALID_UNIT = "INVALID_UNIT"
    UNKNOWN_SITE = "UNKNOWN_SITE"
    UNKNOWN_METER = "UNKNOWN_METER"
    ORG_MISMATCH = "ORG_MISMATCH"
    SITE_NOT_IN_TOKEN_SCOPE = "SITE_NOT_IN_TOKEN_SCOPE"  # noqa: S105 (a code, not a secret)
    DUPLICATE_IN_BATCH = "DUPLICATE_IN_BATCH"
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    VALUE_CONFLICT = "VALUE_CONFLICT"


Code = TimeseriesIngestErrorCode


class IngestMode(StrEnum):
    insert = "insert"
    revise = "revise"


@dataclass(slots=True)
class IngestError:
    index: int
    code: Code
    field: str | None
    message: str
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "index": self.index,
            "code": str(self.code),
            "field": self.field,
            "message": self.message,
        }
        if self.line is not None:
            out["line"] = self.line
        return out


@dataclass
class IngestResult:
    ingested: int = 0
    skipped_duplicate: int = 0
    revised: int = 0
    failed: int = 0
    errors: list[IngestError] = field(default_factory=list)
    batch_id: int | None = None
    # meter pk -> (first, last) hour stored or revised: what the alert scan should look at
    touched: dict[int, tuple[datetime, datetime]] = field(default_factory=dict)

    def add(self, other: "IngestResult") -> None:
        for pk, (lo, hi) in other.touched.items():
            old = self.touched.get(pk)
            self.touched[pk] = (min(lo, old[0]), max(hi, old[1])) if old else (lo, hi)
        self.ingested += other.ingested
        self.skipped_duplicate += other.skipped_duplicate
        self.revised += other.revised
        self.failed += other.failed
        room = MAX_ERRORS_REPORTED - len(self.errors)
        self.errors.extend(other.errors[: max(room, 0)])

    def to_response(self, mode: IngestMode = IngestMode.insert) -> dict[str, Any]:
        """DESIGN's shape; `revised` is added for revision calls only."""
        out: dict[str, Any] = {
            "ingested": self.ingested,
            "skipped_duplicate": self.skipped_duplicate,
            "failed": self.failed,
            "errors": [e.to_dict() for e in self.errors[:MAX_ERRORS_REPORTED]],
        }
        if mode == IngestMode.revise:
            out["revised"] = self.revised
        return out


@dataclass(slots=True)
class _Record:
    index: int
    line: int | None
    site_id: str
    meter_id: str
    ts: datetime
    value: float
    key: str
    ts_text: str  # canonical 2025-12-05T13:00:00Z
    unit: str | None = None
    meter_pk: int = 0
    db_ts: Any = None  # the hour as the database holds it (SQLite text, PostgreSQL datetime)


def canonical_timestamp(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_idempotency_key(site_id: str, meter_id: str, ts: datetime) -> str:
    """The key a relay should send: `site-meter-timestamp`, stable across retries."""
    return f"{site_id}-{meter_id}-{canonical_timestamp(ts)}"


def parse_timestamp(text: Any) -> tuple[datetime | None, Code | None, str]:
    """(timestamp, error code, message) for an ISO 8601 UTC `...Z` string."""
    if not isinstance(text, str):
        return (
            None,
            Code.INVALID_TIMESTAMP,
            "timestamp_utc must be a string like 2025-12-05T13:00:00Z",
        )
    m = _TS_RE.match(text.strip())
    if not m:
        return (
            None,
            Code.INVALID_TIMESTAMP,
            f"timestamp_utc {text!r} is not ISO 8601 UTC with Z, e.g. 2025-12-05T13:00:00Z",
        )
    minute, second, frac = m.group(5), m.group(6), m.group(7)
    try:
        # The regex has vetted the shape; the C parser builds the value (and checks the date).
        ts = datetime.fromisoformat(m.group(0)[:19]).replace(tzinfo=UTC)
    except ValueError:
        return None, Code.INVALID_TIMESTAMP, f"timestamp_utc {text!r} is not a real date and time"
    if minute != "00" or second != "00" or (frac and int(frac) != 0):
        return (
            None,
            Code.TIMESTAMP_NOT_HOUR_ALIGNED,
            f"timestamp_utc {text!r} must be the start of an hour "
            f"({ts.strftime('%Y-%m-%dT%H')}:00:00Z): values are hourly kWh, hour-beginning",
        )
    return ts, None, ""


def parse_value(
    raw: Any, *, from_text: bool = False, allow_negative: bool = False
) -> tuple[float | None, str]:
    """(value, message): a finite number, non-negative unless allowed. CSV cells are text."""
    if from_text and isinstance(raw, str):
        try:
            raw = float(raw.strip())
        except ValueError:
            return None, f"value {raw!r} is not a number; expected kWh such as 152.3"
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None, f"value {raw!r} is not a number; expected kWh such as 152.3"
    try:
        value = float(raw)
    except OverflowError:  # an integer too large for a float
        return None, "value is too large to be an hourly kWh reading"
    if not math.isfinite(value):
        return None, "value must be a finite number of kWh (not NaN or infinity)"
    if value < 0 and not allow_negative:
        return None, f"value {value} is negative; hourly energy in kWh is 0 or more"
    return value, ""


# What each kind of meter accepts: units (lower case; None = omitted) and whether values may
# be negative. Energy meters carry kWh; drivers carry outdoor temperature or production.
UNITS = {
    MeterKind.main_incomer: ({"kwh"}, False, "kWh"),
    MeterKind.sub_meter: ({"kwh"}, False, "kWh"),
    MeterKind.temperature: ({"°c", "degc", "c", "celsius"}, True, "°C"),
    MeterKind.production: ({"units/h", "units", "unit/h"}, False, "units/h"),
}


ENERGY_KINDS = frozenset({MeterKind.main_incomer, MeterKind.sub_meter})


def _check_kind(r: "_Record", kind: MeterKind) -> tuple[Code, str, str] | None:
    """The error for a record whose unit or sign does not fit its meter's kind, if any."""
    units, negative_ok, shown = UNITS[MeterKind(kind)]
    if r.unit is not None and r.unit.strip().lower() not in units:
        return (
            Code.INVALID_UNIT,
            "unit",
            f"unit {r.unit!r} is not accepted for {r.meter_id} ({kind}): send {shown} "
            "(or omit unit)",
        )
    if r.value < 0 and not negative_ok:
        return (
            Code.INVALID_VALUE,
            "value",
            f"value {r.value} is negative; {shown} for {r.meter_id} is 0 or more",
        )
    return None


class _Batch:
    """Collects the outcome of one ingest call."""

    def __init__(self, lines: list[int] | None) -> None:
        self.lines = lines
        self.result = IngestResult()
        self.by_code: Counter[str] = Counter()
        self.by_meter: dict[str, Counter[str]] = defaultdict(Counter)

    def fail(self, index: int, code: Code, fld: str | None, message: str, where: str = "?") -> None:
        line = self.lines[index] if self.lines is not None else None
        self.result.failed += 1
        # All kept for now: the response lists the first MAX_ERRORS_REPORTED by index.
        self.result.errors.append(IngestError(index, code, fld, message, line))
        self.by_code[str(code)] += 1
        self.by_meter[where][str(code)] += 1


def _validate(
    records: list[Any], batch: _Batch, *, now: datetime, from_text: bool
) -> list[_Record]:
    """Field-level checks that need no database (the hot loop of ingestion: kept lean)."""
    valid: list[_Record] = []
    latest_allowed = now + FUTURE_TOLERANCE
    # Many meters share the same hours: parse each distinct timestamp text once per call.
    parsed: dict[Any, tuple[datetime | None, Code | None, str]] = {}
    lines = batch.lines
    for i, rec in enumerate(records):
        if type(rec) is not dict:
            what = (
                "this CSV row could not be read"
                if from_text
                else "each record must be a JSON object"
            )
            batch.fail(i, Code.INVALID_RECORD, None, what)
            continue
        site_id = rec.get("site_id")
        meter_id = rec.get("meter_id")
        raw_ts = rec.get("timestamp_utc")
        raw_value = rec.get("value")
        if not (site_id and meter_id and raw_ts) or raw_value is None or raw_value == "":
            missing = next(
                f
                for f, v in (
                    ("site_id", site_id),
                    ("meter_id", meter_id),
                    ("timestamp_utc", raw_ts),
                    ("value", raw_value),
                )
                if v is None or v == "" or (f != "value" and not v)
            )
            batch.fail(
                i,
                Code.MISSING_FIELD,
                missing,
                f"{missing} is required (record needs site_id, meter_id, "
                "timestamp_utc, value; unit and idempotency_key are optional)",
                _where(site_id, meter_id),
            )
            continue
        if type(site_id) is not str or type(meter_id) is not str:
            fld = "site_id" if type(site_id) is not str else "meter_id"
            batch.fail(i, Code.INVALID_FIELD, fld, f"{fld} must be a string such as 'site-22'")
            continue
        site_id, meter_id = site_id.strip(), meter_id.strip()
        hit = parsed.get(raw_ts) if type(raw_ts) is str else None
        if hit is None:
            hit = parse_timestamp(raw_ts)
            if type(raw_ts) is str:
                parsed[raw_ts] = hit
        ts, code, message = hit
        if ts is None:
            batch.fail(i, code, "timestamp_utc", message, _where(site_id, meter_id))
            continue
        if ts > latest_allowed:
            batch.fail(
                i,
                Code.TIMESTAMP_IN_FUTURE,
                "timestamp_utc",
                f"timestamp_utc {canonical_timestamp(ts)} is in the future "
                f"(it is now {canonical_timestamp(now)})",
                _where(site_id, meter_id),
            )
            continue
        if type(raw_value) is float and -math.inf < raw_value < math.inf:
            value = raw_value  # the common case, checked inline; the sign depends on the meter
        else:
            value, message = parse_value(raw_value, from_text=from_text, allow_negative=True)
            if value is None:
                batch.fail(i, Code.INVALID_VALUE, "value", message, _where(site_id, meter_id))
                continue
        unit = rec.get("unit")
        if unit == "" or unit == "kWh":
            unit = None if unit == "" else unit
        elif unit is not None and type(unit) is not str:
            batch.fail(
                i,
                Code.INVALID_UNIT,
                "unit",
                f"unit {unit!r} must be text such as kWh",
                _where(site_id, meter_id),
            )
            continue
        stamp = raw_ts if len(raw_ts) == 20 else canonical_timestamp(ts)
        key = rec.get("idempotency_key")
        if key is None or key == "":
            key = f"{site_id}-{meter_id}-{stamp}"  # = default_idempotency_key, without strftime
        elif type(key) is not str or len(key) > MAX_KEY_LENGTH:
            batch.fail(
                i,
                Code.INVALID_FIELD,
                "idempotency_key",
                f"idempotency_key must be a string of at most {MAX_KEY_LENGTH} characters",
                _where(site_id, meter_id),
            )
            continue
        line = lines[i] if lines is not None else None
        valid.append(_Record(i, line, site_id, meter_id, ts, value, key, stamp, unit))
    return valid


def _where(site_id: Any, meter_id: Any) -> str:
    """The 'site_id/meter_id' an error is counted under in the audit row."""
    if isinstance(site_id, str) and isinstance(meter_id, str):
        return f"{site_id.strip()}/{meter_id.strip()}"
    return "?"


def _resolve_meters(
    session: Session, records: list[_Record], batch: _Batch, principal: Principal
) -> list[_Record]:
    """Attach meter primary keys; refuse unknown, foreign and out-of-scope sites and meters."""
    site_ids = sorted({r.site_id for r in records})
    sites: dict[str, Site] = {}
    for chunk in _chunks(site_ids, _LOOKUP_CHUNK):
        found = session.execute(select(Site).where(Site.site_id.in_(chunk))).scalars()
        sites.update({s.site_id: s for s in found})
    own = {sid: s for sid, s in sites.items() if s.org_id == principal.org_id}
    meters: dict[tuple[str, str], int] = {}
    kinds: dict[int, str] = {}
    registered: dict[str, list[str]] = defaultdict(list)
    if own:
        by_pk = {s.id: s.site_id for s in own.values()}
        rows = session.execute(
            select(Meter.id, Meter.site_pk, Meter.meter_id, Meter.kind).where(
                Meter.site_pk.in_(list(by_pk))
            )
        ).all()
        for pk, site_pk, meter_id, kind in rows:
            meters[(by_pk[site_pk], meter_id)] = pk
            kinds[pk] = kind
            registered[by_pk[site_pk]].append(meter_id)
    scope = set(principal.site_ids) if principal.site_ids is not None else None

    def resolve(site_id: str, meter_id: str) -> tuple:
        """(pk, kind) or (None, code, field, message) for one site/meter pair."""
        site = sites.get(site_id)
        if site is None:
            return (
                None,
                Code.UNKNOWN_SITE,
                "site_id",
                f"site_id {site_id!r} is not registered in CEI; check the integration "
                "mapping table",
            )
        if site.org_id != principal.org_id:
            return (
                None,
                Code.ORG_MISMATCH,
                "site_id",
                f"site_id {site_id!r} does not belong to your organisation",
            )
        if scope is not None and site_id not in scope:
            return (
                None,
                Code.SITE_NOT_IN_TOKEN_SCOPE,
                "site_id",
                f"this integration token may write only to {', '.join(sorted(scope))}",
            )
        pk = meters.get((site_id, meter_id))
        if pk is None and site.auto_register_meters:
            if not SLUG_RE.match(meter_id):
                return (
                    None,
                    Code.INVALID_FIELD,
                    "meter_id",
                    f"meter_id {meter_id[:80]!r} cannot be registered: use 1-64 "
                    "lowercase letters, digits or '-' (e.g. 'chiller-01')",
                )
            pk = meters[(site_id, meter_id)] = _register_meter(session, site, meter_id)
            kinds[pk] = MeterKind.sub_meter
            registered[site_id].append(meter_id)
        if pk is None:
            known = sorted(registered.get(site_id, []))
            listed = ", ".join(known[:20]) + (" …" if len(known) > 20 else "") if known else "none"
            return (
                None,
                Code.UNKNOWN_METER,
                "meter_id",
                f"meter_id {meter_id!r} is not registered at {site_id}; "
                f"registered meters: {listed}",
            )
        return (pk, kinds.get(pk, MeterKind.sub_meter))

    # A batch names few site/meter pairs: each is resolved once, not once per record.
    outcomes: dict[tuple[str, str], tuple] = {}
    resolved = []
    for r in records:
        pair = (r.site_id, r.meter_id)
        outcome = outcomes.get(pair)
        if outcome is None:
            outcome = outcomes[pair] = resolve(*pair)
        pk = outcome[0]
        if pk is None:
            batch.fail(r.index, *outcome[1:], f"{r.site_id}/{r.meter_id}")
            continue
        kind = outcome[1]
        # Fast path: a kWh reading (or no unit) for an energy meter, the overwhelming case.
        if r.value < 0 or not (r.unit is None or r.unit == "kWh") or kind not in ENERGY_KINDS:
            problem = _check_kind(r, kind)
            if problem is not None:
                batch.fail(r.index, *problem, f"{r.site_id}/{r.meter_id}")
                continue
        r.meter_pk = pk
        resolved.append(r)
    return resolved


def _register_meter(session: Session, site: Site, meter_id: str) -> int:
    """Add a meter first seen in the data; a concurrent batch registering it too is fine."""
    stmt = (
        postgresql.insert(Meter)
        if session.get_bind().dialect.name == "postgresql"
        else sqlite.insert(Meter)
    )
    session.execute(
        stmt.values(
            org_id=site.org_id,
            site_pk=site.id,
            meter_id=meter_id,
            name=meter_id,
            kind=MeterKind.sub_meter,
            cadence_minutes=60,
            created_at=utcnow(),
        ).on_conflict_do_nothing()
    )
    return session.execute(
        select(Meter.id).where(Meter.site_pk == site.id, Meter.meter_id == meter_id)
    ).scalar_one()


def _dedupe(records: list[_Record], batch: _Batch) -> list[_Record]:
    """Refuse later records for an hour or a key already seen earlier in this batch."""
    seen_hour: dict[tuple[int, str], int] = {}
    seen_key: dict[str, int] = {}
    unique = []
    for r in records:
        hour = (r.meter_pk, r.ts_text)
        first = seen_hour.get(hour)
        if first is not None:
            where = f"{r.site_id}/{r.meter_id}"
            batch.fail(
                r.index,
                Code.DUPLICATE_IN_BATCH,
                "timestamp_utc",
                f"{where} {r.ts_text} already appears at index {first} of this batch",
                where,
            )
            continue
        first = seen_key.get(r.key)
        if first is not None:
            batch.fail(
                r.index,
                Code.DUPLICATE_IN_BATCH,
                "idempotency_key",
                f"idempotency_key {r.key!r} already appears at index {first} of this batch",
                f"{r.site_id}/{r.meter_id}",
            )
            continue
        seen_hour[hour] = seen_key[r.key] = r.index
        unique.append(r)
    return unique


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(slots=True)
class _Stored:
    id: int
    meter_pk: int
    ts: datetime
    value: float
    key: str
    batch_id: int | None
    ingested_at: datetime


_STORED_COLUMNS = (
    Reading.id,
    Reading.meter_pk,
    Reading.ts,
    Reading.value,
    Reading.idempotency_key,
    Reading.batch_id,
    Reading.ingested_at,
)


def _stored_columns(dialect: str) -> tuple:
    if dialect != "sqlite":
        return _STORED_COLUMNS
    # On SQLite, read the timestamps as the stored text: no parsing, and directly comparable.
    return tuple(
        type_coerce(c, String) if c in (Reading.ts, Reading.ingested_at) else c
        for c in _STORED_COLUMNS
    )


def _db_now(now: datetime, dialect: str):
    return sqlite_timestamp(now) if dialect == "sqlite" else now


def _rows_at_hours(session: Session, records: list[_Record]) -> dict[tuple[int, Any], _Stored]:
    """The stored rows for these records' (meter, hour)."""
    by_hour: dict[tuple[int, datetime], _Stored] = {}
    hours_by_meter: dict[int, list[datetime]] = defaultdict(list)
    for r in records:
        hours_by_meter[r.meter_pk].append(r.db_ts)
    dialect = session.get_bind().dialect.name
    cols = _stored_columns(dialect)
    ts_col = type_coerce(Reading.ts, String) if dialect == "sqlite" else Reading.ts
    # One meter at a time, so each lookup is a run of seeks on the (meter_pk, ts) index.
    for meter_pk, hours in hours_by_meter.items():
        for chunk in _chunks(hours, _LOOKUP_CHUNK):
            stmt = select(*cols).where(Reading.meter_pk == meter_pk, ts_col.in_(chunk))
            for row in session.execute(stmt):
                s = _Stored(*row)
                by_hour[(s.meter_pk, s.ts)] = s
    return by_hour


def _rows_with_keys(session: Session, org_id: int, keys: list[str]) -> dict[str, _Stored]:
    by_key: dict[str, _Stored] = {}
    for chunk in _chunks(keys, _LOOKUP_CHUNK):
        stmt = select(*_stored_columns(session.get_bind().dialect.name)).where(
            Reading.org_id == org_id, Reading.idempotency_key.in_(chunk)
        )
        for row in session.execute(stmt):
            s = _Stored(*row)
            by_key[s.key] = s
    return by_key


def _classify(
    r: _Record,
    at_hour: _Stored | None,
    with_key: _Stored | None,
    *,
    mode: IngestMode,
    batch_id: int,
    batch: _Batch,
) -> str:
    """'revise', 'skip', 'fail' or 'lost' for a record the unique constraints turned away."""
    where = f"{r.site_id}/{r.meter_id}"
    if at_hour is not None and at_hour.batch_id == batch_id:
        # Written by an earlier chunk of this same upload: a duplicate row in the file.
        batch.fail(
            r.index,
            Code.DUPLICATE_IN_BATCH,
            "timestamp_utc",
            f"{where} {canonical_timestamp(r.ts)} appears earlier in this upload",
            where,
        )
        return "fail"
    if with_key is not None and (at_hour is None or with_key.id != at_hour.id):
        if with_key.batch_id == batch_id:
            batch.fail(
                r.index,
                Code.DUPLICATE_IN_BATCH,
                "idempotency_key",
                f"idempotency_key {r.key!r} appears earlier in this upload",
                where,
            )
        else:
            batch.fail(
                r.index,
                Code.IDEMPOTENCY_CONFLICT,
                "idempotency_key",
                f"idempotency_key {r.key!r} is already used by another meter or hour; "
                "keys must be unique per site, meter and hour",
                where,
            )
        return "fail"
    if at_hour is None:
        return "lost"
    if at_hour.value == r.value:
        return "skip"
    if mode == IngestMode.revise:
        return "revise"
    if at_hour.key == r.key:
        batch.fail(
            r.index,
            Code.IDEMPOTENCY_CONFLICT,
            "idempotency_key",
            f"idempotency_key {r.key!r} was stored with value {at_hour.value}; "
            f"this record says {r.value}. Send corrections with mode=revise",
            where,
        )
    else:
        batch.fail(
            r.index,
            Code.VALUE_CONFLICT,
            "value",
            f"{where} {canonical_timestamp(r.ts)} is stored with value "
            f"{at_hour.value} (another key); this record says {r.value}. "
            "Send corrections with mode=revise",
            where,
        )
    return "fail"


_INSERT_COLUMNS = "org_id, meter_pk, ts, value, idempotency_key, source, ingested_at, batch_id"
# Fixed column list; values are bound as parameters.
# Rows are written in (meter, hour) order so concurrent writers lock them in the same order.
_LOCK_ORDER = attrgetter("meter_pk", "ts_text")

_SQLITE_INSERT = (
    f"INSERT OR IGNORE INTO reading ({_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
)


_PG_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS reading_in (org_id int, meter_pk int, ts timestamptz, "
    "value float8, idempotency_key varchar(200), source varchar(16), ingested_at timestamptz, "
    "batch_id int) ON COMMIT DELETE ROWS"
)
_PG_MERGE = (
    f"INSERT INTO reading ({_INSERT_COLUMNS}) SELECT {_INSERT_COLUMNS} FROM reading_in "  # noqa: S608
    "ORDER BY meter_pk, ts ON CONFLICT DO NOTHING"
)


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _pg_copy_insert(
    conn, records: list[_Record], *, org_id: int, source: str, now: datetime, batch_id: int
) -> int:
    """COPY the rows into a session-local staging table, then one INSERT … SELECT.

    COPY is PostgreSQL's bulk path: far fewer round trips and parse steps than row inserts.
    The rows go as one block of COPY text (timestamps in ISO 8601, floats as repr).
    """
    head = f"{org_id}\t"
    tail = f"\t{source}\t{now.isoformat()}\t{batch_id}\n"
    text = "".join(
        f"{head}{r.meter_pk}\t{r.ts_text}\t{r.value!r}\t{r.key.translate(_COPY_ESCAPES)}{tail}"
        for r in records
    )
    with conn.connection.driver_connection.cursor() as cur:
        cur.execute(_PG_STAGE)
        cur.execute("TRUNCATE reading_in")
        with cur.copy(f"COPY reading_in ({_INSERT_COLUMNS}) FROM STDIN") as copy:
            copy.write(text)
        cur.execute(_PG_MERGE)
        return cur.rowcount


def sqlite_timestamp(ts: datetime) -> str:
    """A UTC instant as core.db.UTCDateTime stores it on SQLite (text that sorts correctly)."""
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _insert(
    session: Session,
    records: list[_Record],
    *,
    org_id: int,
    source: str,
    now: datetime,
    batch_id: int,
) -> int:
    """INSERT … ON CONFLICT DO NOTHING straight through the driver; returns rows written.

    The hot path of ingestion: no ORM objects and no per-row type processing. SQLite gets an
    executemany with timestamps as UTCDateTime's stored text; PostgreSQL gets COPY.
    """
    if not records:
        return 0
    conn = session.connection()
    dialect = conn.dialect.name
    if dialect == "postgresql":
        # The merge orders by (meter, hour), so concurrent writers lock in the same order.
        return _pg_copy_insert(
            conn, records, org_id=org_id, source=source, now=now, batch_id=batch_id
        )
    # Sorted, so concurrent writers lock rows in the same order and cannot deadlock.
    at = sqlite_timestamp(now)
    rows = [
        (org_id, r.meter_pk, r.db_ts, r.value, r.key, source, at, batch_id)
        for r in sorted(records, key=_LOCK_ORDER)
    ]
    written = 0
    for chunk in _chunks(rows, 1000):
        written += conn.exec_driver_sql(_SQLITE_INSERT, chunk).rowcount
    return written


def _refused(
    session: Session, records: list[_Record], *, batch_id: int, now: datetime
) -> tuple[list[_Record], dict]:
    """The records this call did not write (their hour holds a row from another call), and
    the stored rows at the records' hours."""
    by_hour = _rows_at_hours(session, records)
    stamp = _db_now(now, session.get_bind().dialect.name)
    refused = [
        r
        for r in records
        if (s := by_hour.get((r.meter_pk, r.db_ts))) is None
        or s.batch_id != batch_id
        or s.ingested_at != stamp
    ]
    return refused, by_hour


def _revise(
    session: Session,
    records: list[_Record],
    by_hour: dict,
    *,
    org_id: int,
    source: str,
    batch_id: int,
    now: datetime,
) -> None:
    revisions = []
    for r in records:
        old = by_hour[(r.meter_pk, r.db_ts)]
        session.execute(
            update(Reading)
            .where(Reading.id == old.id)
            .values(
                value=r.value,
                idempotency_key=r.key,
                source=source,
                ingested_at=now,
                batch_id=batch_id,
            )
        )
        revisions.append(
            {
                "reading_id": old.id,
                "org_id": org_id,
                "old_value": old.value,
                "new_value": r.value,
                "old_idempotency_key": old.key,
                "revised_at": now,
                "batch_id": batch_id,
            }
        )
    if revisions:
        session.execute(ReadingRevision.__table__.insert(), revisions)


def new_batch(
    session: Session, *, principal: Principal, source: str, mode: IngestMode
) -> IngestBatch:
    batch = IngestBatch(
        org_id=principal.org_id,
        source=source,
        mode=str(mode),
        user_id=principal.user_id,
        token_id=principal.token_id,
    )
    session.add(batch)
    session.flush()
    return batch


def ingest_records(
    session: Session,
    *,
    principal: Principal,
    records: list[Any],
    source: str = ReadingSource.api,
    mode: IngestMode = IngestMode.insert,
    lines: list[int] | None = None,
    batch_row: IngestBatch | None = None,
    from_text: bool = False,
    now: datetime | None = None,
) -> IngestResult:
    """Validate and store a batch in the session's transaction; never raises for bad records.

    Args:
        records: dicts with site_id, meter_id, timestamp_utc, value[, unit, idempotency_key].
        lines: CSV line number of each record, reported in its errors.
        batch_row: the IngestBatch to add counts to (a CSV upload spans several calls).
        from_text: values are text cells (CSV) rather than JSON numbers.
    """
    begin_write(session)
    now = now or utcnow()
    batch = _Batch(lines)
    valid = _validate(records, batch, now=now, from_text=from_text)
    valid = _dedupe(_resolve_meters(session, valid, batch, principal), batch)
    if session.get_bind().dialect.name == "sqlite":
        for r in valid:  # UTCDateTime's SQLite text, without a strftime per row
            r.db_ts = f"{r.ts_text[:10]} {r.ts_text[11:19]}.000000"
    else:
        for r in valid:
            r.db_ts = r.ts
    audit = batch_row or new_batch(session, principal=principal, source=source, mode=mode)
    # Insert first: new hours (the common case) need no lookup at all. Only the records the
    # unique constraints turned away are compared with what is stored (a retry, a conflict, a
    # revision, or a concurrent writer on PostgreSQL that got there first).
    written = _insert(
        session, valid, org_id=principal.org_id, source=str(source), now=now, batch_id=audit.id
    )
    refused, by_hour = (
        ([], {}) if written == len(valid) else _refused(session, valid, batch_id=audit.id, now=now)
    )
    batch.result.ingested = len(valid) - len(refused)
    # Keys need a look only where the hour's row does not already carry the record's key.
    keys = [
        r.key
        for r in refused
        if (s := by_hour.get((r.meter_pk, r.db_ts))) is None or s.key != r.key
    ]
    by_key = _rows_with_keys(session, principal.org_id, keys) if keys else {}
    revisions = []
    for r in refused:
        outcome = _classify(
            r,
            by_hour.get((r.meter_pk, r.db_ts)),
            by_key.get(r.key),
            mode=mode,
            batch_id=audit.id,
            batch=batch,
        )
        if outcome == "revise":
            revisions.append(r)
        elif outcome == "skip":
            batch.result.skipped_duplicate += 1
        elif outcome == "lost":
            # Refused, yet nothing blocks it now: a concurrent change we cannot account for.
            # Undo the whole batch and let the relay retry it (retries are always safe).
            raise Unavailable(
                "the data changed concurrently; retry this batch", code="concurrent_change"
            )
    _revise(
        session,
        revisions,
        by_hour,
        org_id=principal.org_id,
        source=str(source),
        batch_id=audit.id,
        now=now,
    )
    batch.result.revised = len(revisions)
    batch.result.touched = _touched(valid, refused, revisions)
    batch.result.errors.sort(key=lambda e: e.index)
    del batch.result.errors[MAX_ERRORS_REPORTED:]
    _record_audit(audit, batch, total=len(records))
    session.add(audit)
    session.flush()
    batch.result.batch_id = audit.id
    return batch.result


def _touched(valid: list, refused: list, revisions: list) -> dict:
    unchanged = {id(r) for r in refused} - {id(r) for r in revisions}
    spans: dict[int, tuple[datetime, datetime]] = {}
    for r in valid:
        if id(r) in unchanged:
            continue
        old = spans.get(r.meter_pk)
        spans[r.meter_pk] = (min(r.ts, old[0]), max(r.ts, old[1])) if old else (r.ts, r.ts)
    return spans


def _record_audit(audit: IngestBatch, batch: _Batch, *, total: int) -> None:
    res = batch.result
    audit.total += total
    audit.ingested += res.ingested
    audit.skipped_duplicate += res.skipped_duplicate
    audit.revised += res.revised
    audit.failed += res.failed
    # JSON columns are replaced, not mutated, so the change is seen and written.
    audit.errors_by_code = dict(Counter(audit.errors_by_code or {}) + batch.by_code)
    merged = {k: Counter(v) for k, v in (audit.errors_by_meter or {}).items()}
    for where, counts in batch.by_meter.items():
        merged[where] = merged.get(where, Counter()) + counts
    audit.errors_by_meter = {k: dict(v) for k, v in merged.items()}


# --- CSV -----------------------------------------------------------------------------------


def iter_csv_chunks(
    stream: IO[str], *, chunk_rows: int = CSV_CHUNK_ROWS, default_site: str | None = None
) -> Iterator[tuple[list[dict], list[int]]]:
    """Yield (records, line numbers) in chunks from a CSV with a header row.

    Raises InvalidInput when the header lacks a required column.
    """
    reader = csv.reader(stream)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise InvalidInput(
            f"the CSV file is empty; expected a header row {','.join(CSV_COLUMNS)}",
            code="invalid_csv",
        ) from None
    except csv.Error as exc:
        raise InvalidInput(f"unreadable CSV header: {exc}", code="invalid_csv") from None
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0].lstrip("\ufeff")
    required = [c for c in ("meter_id", "timestamp_utc", "value") if c not in header]
    if "site_id" not in header and default_site is None:
        required.insert(0, "site_id")
    if required:
        raise InvalidInput(
            f"CSV header is missing {', '.join(required)}; expected columns "
            f"{','.join(CSV_COLUMNS)} (idempotency_key optional)",
            code="invalid_csv",
        )
    records: list[dict] = []
    lines: list[int] = []
    while True:
        first_line = reader.line_num + 1  # a quoted field may span lines: report where it starts
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            records.append({"_csv_error": str(exc)})
            lines.append(first_line)
            continue
        if not row or all(not cell.strip() for cell in row):
            continue  # blank lines are not records
        rec = dict(zip(header, (c.strip() for c in row), strict=False))
        if default_site and not rec.get("site_id"):
            rec["site_id"] = default_site
        records.append(rec)
        lines.append(first_line)
        if len(records) >= chunk_rows:
            yield records, lines
            records, lines = [], []
    if records:
        yield records, lines


def ingest_csv(
    engine: Engine,
    *,
    principal: Principal,
    stream: IO[str],
    mode: IngestMode = IngestMode.insert,
    default_site: str | None = None,
    chunk_rows: int = CSV_CHUNK_ROWS,
    progress: Callable[[int], None] | None = None,
    committed: IngestResult | None = None,
) -> IngestResult:
    """Stream a CSV into the database, one transaction per chunk of rows (bounded memory).

    A chunk that commits stays committed; re-sending the file is safe (duplicates are skipped).
    `progress` is called with the number of rows handled after each chunk. `committed`, when
    given, is the result that each committed chunk is added to as it commits: the caller still
    has what was stored if a later chunk fails.
    """
    chunks = iter_csv_chunks(stream, chunk_rows=chunk_rows, default_site=default_site)
    first = next(chunks, None)  # header errors surface before anything is written
    with session_scope(engine) as session:
        batch_id = new_batch(session, principal=principal, source=ReadingSource.csv, mode=mode).id
    total = committed if committed is not None else IngestResult()
    total.batch_id = batch_id
    offset = 0
    for records, lines in _prepend(first, chunks):
        with session_scope(engine) as session:
            begin_write(session)  # before the first read, so SQLite takes the write lock now
            audit = session.get(IngestBatch, batch_id)
            result = ingest_records(
                session,
                principal=principal,
                records=[_csv_record(r) for r in records],
                source=ReadingSource.csv,
                mode=mode,
                lines=lines,
                batch_row=audit,
                from_text=True,
            )
        for err in result.errors:
            err.index += offset
        total.add(result)
        offset += len(records)
        if progress:
            progress(len(records))
    return total


def _csv_record(rec: dict) -> dict | None:
    # A row the csv module could not parse becomes a non-object, i.e. INVALID_RECORD.
    return None if "_csv_error" in rec else rec


def _prepend(first, rest: Iterable) -> Iterator:
    if first is not None:
        yield first
        yield from rest


def preview_csv(
    engine: Engine,
    *,
    principal: Principal,
    stream: IO[str],
    rows: int = 20,
    mode: IngestMode = IngestMode.insert,
    default_site: str | None = None,
) -> tuple[list[dict], IngestResult]:
    """The first `rows` rows and what ingesting them would do, without storing anything.

    Runs the real ingestion in a transaction that is rolled back, so the verdicts (duplicate,
    unknown meter, conflict…) are exactly what the upload will say.
    """
    records, lines = next(
        iter_csv_chunks(stream, chunk_rows=rows, default_site=default_site), ([], [])
    )
    with Session(engine) as session:
        try:
            result = ingest_records(
                session,
                principal=principal,
                records=[_csv_record(r) for r in records],
                source=ReadingSource.csv,
                mode=mode,
                lines=lines,
                from_text=True,
            )
        finally:
            session.rollback()
    return [{"line": n, **r} for r, n in zip(records, lines, strict=True)], result
