"""The configured database answers, is migrated, and keeps timestamps in UTC."""

from datetime import datetime, timedelta, timezone

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.exc import StatementError
from sqlmodel import Session, select

from core.db import (
    MIGRATIONS_DIR,
    _alembic_config,
    current_revision,
    downgrade,
    get_engine,
    migrate,
    ping,
)
from core.models import Organization

TABLES = {"organization", "user", "refreshtoken", "integrationtoken", "site", "meter"}


def test_configured_database_answers(settings, engine):
    ping(engine)
    expected = "postgresql" if settings.is_postgres else "sqlite"
    assert engine.dialect.name == expected


def test_schema_is_at_the_newest_migration(settings, engine):
    head = ScriptDirectory.from_config(
        _alembic_config(settings.effective_database_url)
    ).get_current_head()
    assert current_revision(settings.effective_database_url) == head
    assert set(inspect(engine).get_table_names()) >= TABLES


def test_migrations_match_the_models(settings, engine):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == [], "models changed without a migration: run alembic revision --autogenerate"


def test_sqlite_runs_with_wal_foreign_keys_and_busy_timeout(settings, engine):
    if settings.is_postgres:
        pytest.skip("SQLite pragmas do not apply to PostgreSQL")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one().lower() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar_one() >= 5000


@pytest.mark.postgres
def test_postgres_server_answers_through_psycopg(engine):
    with engine.connect() as conn:
        version = conn.execute(text("SHOW server_version")).scalar_one()
    assert engine.dialect.driver == "psycopg"
    assert int(version.split(".")[0]) >= 13


def test_migrations_upgrade_downgrade_and_upgrade_again(tmp_path):
    url = f"sqlite:///{(tmp_path / 'fresh.db').as_posix()}"
    migrate(url)
    assert set(inspect(get_engine(url)).get_table_names()) >= TABLES
    downgrade(url)
    assert not TABLES & set(inspect(get_engine(url)).get_table_names())
    migrate(url)
    assert set(inspect(get_engine(url)).get_table_names()) >= TABLES
    assert (MIGRATIONS_DIR / "env.py").exists()


def test_timestamps_round_trip_as_aware_utc(engine):
    local = datetime(2025, 3, 30, 3, 30, tzinfo=timezone(timedelta(hours=2)))
    with Session(engine) as session:
        org = Organization(name="TZ", created_at=local)
        session.add(org)
        session.commit()
        org_id = org.id
    with Session(engine) as session:
        stored = session.exec(select(Organization).where(Organization.id == org_id)).one()
    assert stored.created_at.tzinfo is not None
    assert stored.created_at == local
    assert stored.created_at.utcoffset() == timedelta(0)
    assert stored.created_at.hour == 1


def test_naive_timestamp_is_refused(engine):
    with Session(engine) as session:
        session.add(Organization(name="naive", created_at=datetime(2025, 1, 1)))  # noqa: DTZ001
        with pytest.raises(StatementError, match="naive datetime"):
            session.commit()
