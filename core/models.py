"""SQLModel tables and their input/output schemas."""

import re
from datetime import datetime
from enum import StrEnum
from functools import cache
from zoneinfo import available_timezones

from pydantic import ConfigDict, field_validator
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    false,
)
from sqlmodel import Field, SQLModel

from core.db import UTCDateTime, utcnow

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
HHMM_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
BCRYPT_MAX_BYTES = 72

# Input schemas refuse NaN/Infinity and unknown fields, so a typo is an error, not a no-op.
STRICT_INPUT = ConfigDict(allow_inf_nan=False, extra="forbid", str_strip_whitespace=True)


class Role(StrEnum):
    admin = "admin"
    analyst = "analyst"
    viewer = "viewer"


class MeterKind(StrEnum):
    """Energy meters carry kWh; drivers explain it: outdoor temperature (°C), production."""

    main_incomer = "main_incomer"
    sub_meter = "sub_meter"
    temperature = "temperature"
    production = "production"

    @property
    def is_energy(self) -> bool:
        return self in (MeterKind.main_incomer, MeterKind.sub_meter)


def _fk(target: str, *, index: bool = True) -> Column:
    return Column(Integer, ForeignKey(target, ondelete="CASCADE"), nullable=False, index=index)


def validate_slug(value: str, what: str) -> str:
    if not SLUG_RE.match(value):
        raise ValueError(
            f"{what} must be 1-64 lowercase letters, digits or '-', "
            f"not starting or ending with '-' (e.g. 'site-22', 'main-incomer')"
        )
    return value


@cache
def _iana_zones() -> frozenset[str]:
    # ZoneInfo() also opens host files such as 'localtime' or 'posix/...': only names count.
    return frozenset(z for z in available_timezones() if not z.startswith(("posix/", "right/"))) - {
        "localtime",
        "posixrules",
        "Factory",
    }


def validate_timezone(value: str) -> str:
    if value not in _iana_zones():
        raise ValueError(f"unknown time zone {value!r}: use an IANA name such as 'Europe/Rome'")
    return value


def validate_country(value: str | None) -> str | None:
    if value is None:
        return None
    code = value.strip().upper()
    import holidays

    if code not in holidays.list_supported_countries():
        raise ValueError(f"unknown country {value!r}: use an ISO 3166 code such as IT or DE")
    return code


# --- Organization -------------------------------------------------------------------------


class OrganizationBase(SQLModel):
    name: str = Field(min_length=1, max_length=200)
    currency: str = Field(default="EUR", max_length=3)
    tariff_per_kwh: float = Field(default=0.20, ge=0)
    sector: str = Field(default="general", max_length=64)


class Organization(OrganizationBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class OrganizationPublic(OrganizationBase):
    id: int
    created_at: datetime


class OrganizationUpdate(SQLModel):
    model_config = STRICT_INPUT

    name: str | None = Field(default=None, min_length=1, max_length=200)
    currency: str | None = None
    tariff_per_kwh: float | None = Field(default=None, ge=0, le=100)
    sector: str | None = Field(default=None, min_length=1, max_length=64)

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        if value is not None and not CURRENCY_RE.match(value.upper()):
            raise ValueError("currency must be a 3-letter ISO 4217 code such as EUR or USD")
        return value.upper() if value else value


# --- User and refresh tokens --------------------------------------------------------------


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(sa_column=_fk("organization.id"))
    email: str = Field(max_length=254, unique=True, index=True)
    password_hash: str
    role: Role = Field(
        default=Role.viewer, sa_type=String(16)
    )  # text: new roles need no ALTER TYPE
    is_active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    last_login_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class UserPublic(SQLModel):
    id: int
    email: str
    role: Role
    is_active: bool
    org_id: int
    created_at: datetime


class RefreshToken(SQLModel, table=True):
    """One issued refresh token. Tokens of one login share a family; reuse revokes the family."""

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(sa_column=_fk("user.id"))
    family_id: str = Field(max_length=64, index=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    issued_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    rotated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


def _check_password_bytes(value: str) -> str:
    if len(value.encode("utf-8")) > BCRYPT_MAX_BYTES:
        raise ValueError(f"password must be at most {BCRYPT_MAX_BYTES} bytes in UTF-8")
    return value


def _check_email(value: str) -> str:
    value = value.strip().lower()
    if len(value) > 254 or not EMAIL_RE.match(value):
        raise ValueError("not a valid email address")
    return value


# Passwords are taken byte for byte: no whitespace stripping on credential bodies.
CREDENTIALS_INPUT = ConfigDict(allow_inf_nan=False, extra="forbid")


class SignupInput(SQLModel):
    model_config = CREDENTIALS_INPUT

    email: str
    password: str = Field(min_length=1)
    organization_name: str = Field(min_length=1, max_length=200)

    @field_validator("organization_name")
    @classmethod
    def _org_name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("organization_name must not be blank")
        return value.strip()

    _email = field_validator("email")(_check_email)
    _password = field_validator("password")(_check_password_bytes)


class LoginInput(SQLModel):
    model_config = CREDENTIALS_INPUT

    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1)

    _password = field_validator("password")(_check_password_bytes)


class RefreshInput(SQLModel):
    model_config = STRICT_INPUT

    refresh_token: str = Field(min_length=1, max_length=512)


class TokenPair(SQLModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105 (OAuth token type, not a secret)
    expires_in: int


class SignupPublic(SQLModel):
    user: UserPublic
    organization: OrganizationPublic


class MePublic(SQLModel):
    user: UserPublic
    organization: OrganizationPublic


# --- Integration tokens -------------------------------------------------------------------


class IntegrationToken(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(sa_column=_fk("organization.id"))
    name: str = Field(max_length=100)
    prefix: str = Field(max_length=32)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    site_ids: list[str] | None = Field(default=None, sa_type=JSON)
    created_by: int | None = Field(default=None, foreign_key="user.id", ondelete="SET NULL")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class IntegrationTokenCreate(SQLModel):
    model_config = STRICT_INPUT

    name: str = Field(min_length=1, max_length=100)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)
    site_ids: list[str] | None = Field(default=None, max_length=1000)


class IntegrationTokenPublic(SQLModel):
    id: int
    name: str
    prefix: str
    site_ids: list[str] | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    status: str


class IntegrationTokenCreated(IntegrationTokenPublic):
    token: str


class IntegrationTokensPublic(SQLModel):
    data: list[IntegrationTokenPublic]
    count: int


# --- Sites and meters ---------------------------------------------------------------------


class Schedule(SQLModel):
    """When a site normally works, in its local time: weekdays 0=Monday..6=Sunday."""

    model_config = STRICT_INPUT

    workdays: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])
    start: str = "06:00"
    end: str = "22:00"

    @field_validator("workdays")
    @classmethod
    def _workdays(cls, value: list[int]) -> list[int]:
        if any(d < 0 or d > 6 for d in value) or len(set(value)) != len(value):
            raise ValueError("workdays are distinct integers 0 (Monday) to 6 (Sunday)")
        return sorted(value)

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not HHMM_RE.match(value):
            raise ValueError("times are 24-hour HH:MM, e.g. 06:00")
        return value


class Site(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(sa_column=_fk("organization.id"))
    site_id: str = Field(max_length=64, unique=True, index=True)
    name: str = Field(max_length=200)
    timezone: str = Field(max_length=64)
    schedule: dict | None = Field(default=None, sa_type=JSON)
    # ISO 3166 country code whose public holidays the baselines treat as their own day type.
    country: str | None = Field(default=None, max_length=2)
    # When on, a reading for an unregistered meter_id registers that meter instead of failing.
    auto_register_meters: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    # A meter silent for more than this many hours raises a data-gap alert.
    gap_alert_hours: int = Field(default=3, sa_column_kwargs={"server_default": "3"})
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class SiteCreate(SQLModel):
    model_config = STRICT_INPUT

    site_id: str
    name: str = Field(min_length=1, max_length=200)
    timezone: str
    country: str | None = None
    schedule: Schedule | None = None
    auto_register_meters: bool = False
    gap_alert_hours: int = Field(default=3, ge=1, le=168)

    _site_country = field_validator("country")(lambda v: validate_country(v))

    _site_id = field_validator("site_id")(lambda v: validate_slug(v, "site_id"))
    _tz = field_validator("timezone")(validate_timezone)


class SiteUpdate(SQLModel):
    model_config = STRICT_INPUT

    name: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: str | None = None
    country: str | None = None
    schedule: Schedule | None = None
    auto_register_meters: bool | None = None
    gap_alert_hours: int | None = Field(default=None, ge=1, le=168)

    _site_country = field_validator("country")(lambda v: validate_country(v))

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return None if value is None else validate_timezone(value)


class SitePublic(SQLModel):
    site_id: str
    name: str
    timezone: str
    country: str | None
    schedule: Schedule
    auto_register_meters: bool
    gap_alert_hours: int
    meter_count: int
    created_at: datetime


class SitesPublic(SQLModel):
    data: list[SitePublic]
    count: int


class Meter(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("site_pk", "meter_id", name="uq_meter_site_meter_id"),)

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(sa_column=_fk("organization.id"))
    site_pk: int = Field(sa_column=_fk("site.id"))
    meter_id: str = Field(max_length=64)
    name: str = Field(max_length=200)
    kind: MeterKind = Field(default=MeterKind.sub_meter, sa_type=String(32))
    cadence_minutes: int = 60
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class MeterCreate(SQLModel):
    model_config = STRICT_INPUT

    meter_id: str
    name: str = Field(min_length=1, max_length=200)
    kind: MeterKind = MeterKind.sub_meter

    _meter_id = field_validator("meter_id")(lambda v: validate_slug(v, "meter_id"))


class MeterUpdate(SQLModel):
    model_config = STRICT_INPUT

    name: str | None = Field(default=None, min_length=1, max_length=200)
    kind: MeterKind | None = None


class MeterPublic(SQLModel):
    site_id: str
    meter_id: str
    name: str
    kind: MeterKind
    cadence_minutes: int
    created_at: datetime


class MetersPublic(SQLModel):
    data: list[MeterPublic]
    count: int


# --- Readings and ingest audit ------------------------------------------------------------

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key.
BIGINT_PK = BigInteger().with_variant(Integer(), "sqlite")


class ReadingSource(StrEnum):
    api = "api"
    csv = "csv"


class IngestBatch(SQLModel, table=True):
    """One audit row per JSON batch or CSV upload: who, when, what happened, errors by code."""

    __table_args__ = (Index("ix_ingestbatch_org_received", "org_id", "received_at"),)

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(sa_column=_fk("organization.id", index=False))
    source: str = Field(max_length=16)
    mode: str = Field(default="insert", max_length=16)
    user_id: int | None = Field(default=None, foreign_key="user.id", ondelete="SET NULL")
    token_id: int | None = Field(
        default=None, foreign_key="integrationtoken.id", ondelete="SET NULL"
    )
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    total: int = 0
    ingested: int = 0
    skipped_duplicate: int = 0
    revised: int = 0
    failed: int = 0
    errors_by_code: dict = Field(default_factory=dict, sa_type=JSON)
    # {"site_id/meter_id": {"CODE": n}}: lets data health attribute errors to meters.
    errors_by_meter: dict = Field(default_factory=dict, sa_type=JSON)


class Reading(SQLModel, table=True):
    """Energy of one meter in one hour: `ts` is the START of the hour (UTC), `value` in kWh."""

    __table_args__ = (
        UniqueConstraint("meter_pk", "ts", name="uq_reading_meter_ts"),
        UniqueConstraint("org_id", "idempotency_key", name="uq_reading_org_key"),
        Index("ix_reading_meter_ingested", "meter_pk", "ingested_at"),
    )

    id: int | None = Field(default=None, sa_type=BIGINT_PK, primary_key=True)
    org_id: int = Field(sa_column=_fk("organization.id", index=False))
    meter_pk: int = Field(sa_column=_fk("meter.id", index=False))
    ts: datetime = Field(sa_type=UTCDateTime, nullable=False)
    value: float = Field(sa_type=Float(precision=53))
    idempotency_key: str = Field(max_length=200)
    source: str = Field(max_length=16)
    ingested_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    batch_id: int | None = Field(default=None, foreign_key="ingestbatch.id", ondelete="SET NULL")


class ReadingRevision(SQLModel, table=True):
    """The value a reading had before an explicit revision replaced it."""

    id: int | None = Field(default=None, sa_type=BIGINT_PK, primary_key=True)
    reading_id: int = Field(
        sa_column=Column(
            BIGINT_PK, ForeignKey("reading.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    org_id: int = Field(sa_column=_fk("organization.id", index=False))
    old_value: float = Field(sa_type=Float(precision=53))
    new_value: float = Field(sa_type=Float(precision=53))
    old_idempotency_key: str = Field(max_length=200)
    revised_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    batch_id: int | None = Field(default=None, foreign_key="ingestbatch.id", ondelete="SET NULL")


# --- Alerts ----------------------------------------------------------------------------------


class AlertRule(StrEnum):
    night_load = "night-load"
    weekend_load = "weekend-load"
    spike = "spike"
    baseload = "baseload"
    baseline_deviation = "baseline-deviation"
    data_gap = "data-gap"


class AlertStatus(StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    resolved = "resolved"
    dismissed = "dismissed"


class Alert(SQLModel, table=True):
    """One finding of a rule on one meter over a span of hours, and its triage."""

    __table_args__ = (
        UniqueConstraint("org_id", "fingerprint", name="uq_alert_fingerprint"),
        Index("ix_alert_org_status", "org_id", "status"),
        Index("ix_alert_meter_rule", "meter_pk", "rule"),
    )

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(sa_column=_fk("organization.id", index=False))
    site_pk: int = Field(sa_column=_fk("site.id"))
    meter_pk: int = Field(sa_column=_fk("meter.id", index=False))
    rule: str = Field(max_length=32)
    fingerprint: str = Field(max_length=64)
    start: datetime = Field(sa_type=UTCDateTime, nullable=False)  # first hour (UTC)
    end: datetime = Field(sa_type=UTCDateTime, nullable=False)  # exclusive
    ongoing: bool = Field(default=False)  # still happening at the last scan
    hours: int = Field(default=0)  # evidence hours (data-gap: silent hours)
    wasted_kwh: float = Field(default=0.0, sa_type=Float(precision=53))
    wasted_money: float = Field(default=0.0, sa_type=Float(precision=53))
    currency: str = Field(default="EUR", max_length=3)
    severity: str = Field(default="low", max_length=16)
    status: str = Field(default=AlertStatus.open, max_length=16)
    root_cause: str | None = Field(default=None, max_length=2000)
    action: str | None = Field(default=None, max_length=2000)
    notes: str | None = Field(default=None, max_length=10000)
    # The analyst's estimate of the kWh a week the action saves (default: the waste rate).
    impact_kwh_per_week: float | None = Field(default=None, sa_type=Float(precision=53))
    evidence: dict = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class AlertEvent(SQLModel, table=True):
    """The history of an alert: every scan change and every triage step, never overwritten."""

    id: int | None = Field(default=None, primary_key=True)
    alert_id: int = Field(sa_column=_fk("alert.id"))
    org_id: int = Field(sa_column=_fk("organization.id", index=False))
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    user_id: int | None = Field(default=None, foreign_key="user.id", ondelete="SET NULL")
    actor: str = Field(max_length=254)  # the user's email, or "scan"
    kind: str = Field(max_length=16)  # raised, extended, closed, status, edited
    changes: dict = Field(default_factory=dict, sa_type=JSON)  # field: [old, new]


class AlertUpdate(SQLModel):
    model_config = STRICT_INPUT

    status: AlertStatus | None = None
    root_cause: str | None = Field(default=None, max_length=2000)
    action: str | None = Field(default=None, max_length=2000)
    notes: str | None = Field(default=None, max_length=10000)
    impact_kwh_per_week: float | None = Field(default=None, ge=0, le=1e9)
