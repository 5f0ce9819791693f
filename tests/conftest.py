"""Test settings, one migrated database per run, per-test cleanup, the PostgreSQL marker."""

import secrets
from collections.abc import Iterator

import pytest
from litestar.testing import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from api.main import create_app
from core.db import get_engine, migrate
from core.settings import Settings, get_settings

PG_SKIP_REASON = "needs PostgreSQL: set DATABASE_URL=postgresql+psycopg://..."


@pytest.fixture(scope="session", name="settings")
def settings_fixture(tmp_path_factory) -> Iterator[Settings]:
    """Settings for the whole run, also visible to code that calls get_settings() (app, CLI)."""
    data_dir = tmp_path_factory.mktemp("cei-data")
    configured = Settings(_env_file=None).database_url
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", configured or f"sqlite:///{(data_dir / 'test.db').as_posix()}")
        mp.setenv("CEI_ENV", "test")
        mp.setenv("CEI_DATA_DIR", str(data_dir))
        mp.setenv("CEI_JWT_SECRET", secrets.token_urlsafe(48))
        mp.setenv("CEI_BCRYPT_ROUNDS", "4")  # the cost is tested separately; 12 would be slow
        mp.setenv("CEI_ENABLE_TEST_AUTH_ROUTES", "true")
        # Scans after ingest run in a worker process; the tests that need them turn them on.
        mp.setenv("CEI_ALERT_SCAN_ON_INGEST", "false")
        get_settings.cache_clear()
        yield get_settings()
    get_settings.cache_clear()


@pytest.fixture(scope="session", name="engine")
def engine_fixture(settings: Settings) -> Engine:
    engine = get_engine(settings.effective_database_url)
    if settings.is_postgres:
        # The shared test database may hold a previous run's schema: start from nothing.
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    migrate(settings.effective_database_url)
    return engine


@pytest.fixture(autouse=True)
def _clean_tables(request) -> Iterator[None]:
    yield
    if "engine" not in request.fixturenames:
        return
    engine = request.getfixturevalue("engine")
    with engine.begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture(name="client")
def client_fixture(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(app=create_app(settings)) as client:
        yield client


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("postgres") and not get_settings().is_postgres:
        pytest.skip(PG_SKIP_REASON)
