"""core.ingestion without HTTP: parsing rules and CSV chunking (as used by the app and CLI)."""

import io
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlmodel import Session

from core import accounts, sites
from core.db import session_scope
from core.errors import InvalidInput
from core.ingestion import (
    Code,
    ingest_csv,
    iter_csv_chunks,
    parse_timestamp,
    parse_value,
)
from core.models import IngestBatch, MeterCreate, Role, SiteCreate
from tests.factories import PASSWORD, hourly_records

T0 = datetime(2025, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "text, ok",
    [
        ("2025-12-05T13:00:00Z", True),
        ("2025-12-05T13:00:00.000Z", True),
        ("2025-12-05T13:00:00", False),
        ("2025-12-05T13:00:00+00:00", False),
        ("2025-12-05 13:00:00Z", False),
        ("2025-13-05T13:00:00Z", False),
        (1733403600, False),
    ],
)
def test_timestamps_must_be_iso_utc_with_z(text, ok):
    ts, code, _ = parse_timestamp(text)
    assert (ts is not None) == ok
    if not ok:
        assert code == Code.INVALID_TIMESTAMP


def test_non_aligned_timestamp_names_the_hour_start():
    ts, code, message = parse_timestamp("2025-12-05T13:00:00.5Z")
    assert ts is None and code == Code.TIMESTAMP_NOT_HOUR_ALIGNED
    assert "2025-12-05T13:00:00Z" in message


@pytest.mark.parametrize(
    "raw, from_text, expected",
    [
        (152.3, False, 152.3),
        (0, False, 0.0),
        ("152.3", True, 152.3),
        (" 7 ", True, 7.0),
        ("152.3", False, None),
        ("nan", True, None),
        ("inf", True, None),
        (-1, False, None),
        (None, False, None),
        (True, False, None),
    ],
)
def test_values_are_finite_non_negative_numbers(raw, from_text, expected):
    assert parse_value(raw, from_text=from_text)[0] == expected


def test_csv_header_must_name_the_ingest_columns():
    with pytest.raises(InvalidInput, match="missing value"):
        next(iter_csv_chunks(io.StringIO("site_id,meter_id,timestamp_utc\n")))
    with pytest.raises(InvalidInput, match="empty"):
        next(iter_csv_chunks(io.StringIO("")))


def test_csv_chunks_carry_line_numbers_and_skip_blank_lines():
    text = "\ufeffsite_id,meter_id,timestamp_utc,value\n" + "\n".join(
        [
            "a,m,2025-12-01T00:00:00Z,1",
            "",
            "a,m,2025-12-01T01:00:00Z,2",
            "a,m,2025-12-01T02:00:00Z,3",
        ]
    )
    chunks = list(iter_csv_chunks(io.StringIO(text), chunk_rows=2))
    assert [lines for _, lines in chunks] == [[2, 4], [5]]
    assert chunks[0][0][0]["site_id"] == "a"


@pytest.fixture(name="principal")
def principal_fixture(settings, engine):
    with session_scope(engine) as s:
        user, org = accounts.signup(
            s,
            email="csv@plant.example",
            password=PASSWORD,
            organization_name="CSV",
            settings=settings,
        )
        sites.create_site(
            s, org_id=org.id, data=SiteCreate(site_id="site-c", name="C", timezone="Europe/Rome")
        )
        sites.create_meter(
            s,
            org_id=org.id,
            site_id="site-c",
            data=MeterCreate(meter_id="main-incomer", name="Main"),
        )
        return accounts.Principal(org_id=org.id, role=Role.admin, kind="user", user_id=user.id)


def _csv(records) -> io.StringIO:
    rows = ["site_id,meter_id,timestamp_utc,value,unit"]
    rows += [
        f"{r['site_id']},{r['meter_id']},{r['timestamp_utc']},{r['value']},kWh" for r in records
    ]
    return io.StringIO("\n".join(rows) + "\n")


def test_csv_over_several_chunks_adds_up_in_one_audit_row(principal, engine):
    recs = hourly_records("site-c", "main-incomer", T0, 30)
    recs[19]["value"] = -1  # data line 21
    seen = []
    result = ingest_csv(
        engine, principal=principal, stream=_csv(recs), chunk_rows=7, progress=seen.append
    )
    assert (result.ingested, result.failed) == (29, 1)
    assert (result.errors[0].index, result.errors[0].line) == (19, 21)
    assert seen == [7, 7, 7, 7, 2]
    with Session(engine) as s:
        (audit,) = s.execute(select(IngestBatch)).scalars().all()
    assert (audit.total, audit.ingested, audit.failed, audit.source) == (30, 29, 1, "csv")
    again = ingest_csv(engine, principal=principal, stream=_csv(recs), chunk_rows=7)
    assert (again.ingested, again.skipped_duplicate) == (0, 29)
