"""Sites, meters and the integration mapping table handed to the factory."""

import csv
import io

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from core.errors import Conflict, InvalidInput, NotFound
from core.models import (
    Meter,
    MeterCreate,
    MeterKind,
    MeterPublic,
    MeterUpdate,
    Schedule,
    Site,
    SiteCreate,
    SitePublic,
    SiteUpdate,
)

MAPPING_COLUMNS = [
    "physical_site_name",
    "site_id",
    "timezone",
    "physical_meter_description",
    "meter_id",
    "meter_kind",
]


def site_public(site: Site, meter_count: int) -> SitePublic:
    return SitePublic(
        site_id=site.site_id,
        name=site.name,
        timezone=site.timezone,
        country=site.country,
        schedule=Schedule.model_validate(site.schedule) if site.schedule else Schedule(),
        auto_register_meters=site.auto_register_meters,
        gap_alert_hours=site.gap_alert_hours,
        meter_count=meter_count,
        created_at=site.created_at,
    )


def meter_public(meter: Meter, site: Site) -> MeterPublic:
    return MeterPublic(
        site_id=site.site_id,
        meter_id=meter.meter_id,
        name=meter.name,
        kind=meter.kind,
        cadence_minutes=meter.cadence_minutes,
        created_at=meter.created_at,
    )


def _meter_counts(session: Session, *, org_id: int) -> dict[int, int]:
    rows = session.exec(
        select(Meter.site_pk, func.count()).where(Meter.org_id == org_id).group_by(Meter.site_pk)
    ).all()
    return dict(rows)


def list_sites(session: Session, *, org_id: int) -> list[SitePublic]:
    sites = session.exec(select(Site).where(Site.org_id == org_id).order_by(Site.site_id)).all()
    counts = _meter_counts(session, org_id=org_id)
    return [site_public(s, counts.get(s.id, 0)) for s in sites]


def get_site(session: Session, *, org_id: int, site_id: str) -> Site:
    """The org's site with this slug; another org's site is indistinguishable from none."""
    site = session.exec(select(Site).where(Site.org_id == org_id, Site.site_id == site_id)).first()
    if site is None:
        raise NotFound(f"site {site_id!r} not found", code="unknown_site")
    return site


def count_meters(session: Session, *, site: Site) -> int:
    return session.exec(select(func.count()).where(Meter.site_pk == site.id)).one()


def create_site(session: Session, *, org_id: int, data: SiteCreate) -> Site:
    taken = session.exec(select(Site.id).where(Site.site_id == data.site_id)).first()
    if taken is not None:
        raise Conflict(f"site_id {data.site_id!r} is already taken", code="site_id_taken")
    site = Site(
        org_id=org_id,
        site_id=data.site_id,
        name=data.name,
        timezone=data.timezone,
        country=data.country,
        schedule=(data.schedule or Schedule()).model_dump(),
        auto_register_meters=data.auto_register_meters,
        gap_alert_hours=data.gap_alert_hours,
    )
    session.add(site)
    _flush_unique(session, f"site_id {data.site_id!r} is already taken", "site_id_taken")
    return site


def update_site(session: Session, *, org_id: int, site_id: str, data: SiteUpdate) -> Site:
    site = get_site(session, org_id=org_id, site_id=site_id)
    # null means "leave as is", except for the one field that may be empty: the holiday
    # country (null clears it).
    changes = {
        k: v
        for k, v in data.model_dump(exclude_unset=True).items()
        if v is not None or k == "country"
    }
    site.sqlmodel_update(changes)
    session.add(site)
    session.flush()
    return site


def list_meters(session: Session, *, org_id: int, site_id: str) -> tuple[Site, list[Meter]]:
    site = get_site(session, org_id=org_id, site_id=site_id)
    meters = session.exec(
        select(Meter)
        .where(Meter.site_pk == site.id, Meter.org_id == org_id)
        .order_by(Meter.meter_id)
    ).all()
    return site, list(meters)


def get_meter(session: Session, *, org_id: int, site_id: str, meter_id: str) -> tuple[Site, Meter]:
    site = get_site(session, org_id=org_id, site_id=site_id)
    meter = session.exec(
        select(Meter).where(
            Meter.site_pk == site.id, Meter.org_id == org_id, Meter.meter_id == meter_id
        )
    ).first()
    if meter is None:
        raise NotFound(f"meter {meter_id!r} not found at site {site_id!r}", code="unknown_meter")
    return site, meter


def create_meter(session: Session, *, org_id: int, site_id: str, data: MeterCreate) -> Meter:
    site = get_site(session, org_id=org_id, site_id=site_id)
    message = f"meter_id {data.meter_id!r} already exists at site {site_id!r}"
    exists = session.exec(
        select(Meter.id).where(Meter.site_pk == site.id, Meter.meter_id == data.meter_id)
    ).first()
    if exists is not None:
        raise Conflict(message, code="meter_id_taken")
    meter = Meter(org_id=org_id, site_pk=site.id, **data.model_dump())
    session.add(meter)
    _flush_unique(session, message, "meter_id_taken")
    return meter


def update_meter(
    session: Session, *, org_id: int, site_id: str, meter_id: str, data: MeterUpdate
) -> tuple[Site, Meter]:
    site, meter = get_meter(session, org_id=org_id, site_id=site_id, meter_id=meter_id)
    if data.kind is not None and MeterKind(data.kind).is_energy != MeterKind(meter.kind).is_energy:
        # Readings were validated against the kind (kWh vs °C vs units/h): no silent relabel.
        raise InvalidInput(
            f"{meter_id} is a {meter.kind} meter; an energy meter and a driver cannot be "
            "turned into each other. Register a new meter instead.",
            code="kind_change",
        )
    meter.sqlmodel_update(data.model_dump(exclude_unset=True, exclude_none=True))
    session.add(meter)
    session.flush()
    return site, meter


def mapping_csv(session: Session, *, org_id: int) -> str:
    """The integration mapping table: physical names ↔ CEI site_id/meter_id, one row per meter.

    A site without meters still gets a row, so nothing registered is left off the hand-over.
    """
    rows = session.exec(
        select(Site, Meter)
        .join(Meter, Meter.site_pk == Site.id, isouter=True)
        .where(Site.org_id == org_id)
        .order_by(Site.site_id, Meter.meter_id)
    ).all()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(MAPPING_COLUMNS)
    for site, meter in rows:
        writer.writerow(
            [
                spreadsheet_safe(site.name),
                site.site_id,
                site.timezone,
                spreadsheet_safe(meter.name) if meter else "",
                meter.meter_id if meter else "",
                meter.kind if meter else "",
            ]
        )
    return out.getvalue()


def spreadsheet_safe(text: str) -> str:
    """Neutralise cells a spreadsheet would run as a formula (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _flush_unique(session: Session, message: str, code: str) -> None:
    """Flush, turning a lost race on a unique constraint into the same Conflict as the check."""
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(message, code=code) from None
