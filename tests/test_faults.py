"""Faults: a locked, full or read-only SQLite, an unreachable or read-only PostgreSQL, a server
killed mid-batch.
Ingestion answers 503 with Retry-After (never 500), stores nothing half-way, and the relay's
retried readings land once the database is back."""

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from core.db import get_engine, migrate
from tests.liveapi import Api

RELAY = Path(__file__).resolve().parents[1] / "docs" / "factory_client.py"
pytestmark = pytest.mark.slow


def _batch(meter: str, hours: int, start=datetime(2024, 3, 4, tzinfo=UTC)) -> list[dict]:
    return [
        {
            "site_id": "site-22",
            "meter_id": meter,
            "timestamp_utc": (start + timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "value": 5.0 + h % 7,
        }
        for h in range(hours)
    ]


def _relay_env(api: Api, token: str, tmp_path: Path) -> dict:
    return {
        **os.environ,
        "CEI_BASE_URL": api.base,
        "CEI_INT_TOKEN": token,
        "CEI_SITE_ID": "site-22",
        "CEI_METERS": "main-incomer",
        "CEI_OUTBOX": str(tmp_path / "outbox.sqlite3"),
        "CEI_MAX_ATTEMPTS": "2",
        "CEI_BACKOFF_SECONDS": "0.1",
        "CEI_TIMEOUT_SECONDS": "20",
    }


def _relay(env: dict, *args: str) -> str:
    run = subprocess.run(
        [sys.executable, str(RELAY), *args], env=env, capture_output=True, text=True, timeout=180
    )
    assert run.returncode == 0, run.stderr
    return run.stderr


def _count(url: str, meter: str = "main-incomer") -> int:
    with get_engine(url).connect() as conn:
        return conn.execute(
            text(
                "SELECT COUNT(*) FROM reading r JOIN meter m ON m.id = r.meter_pk "
                "WHERE m.meter_id = :m"
            ),
            {"m": meter},
        ).scalar_one()


def test_a_locked_sqlite_database_is_503_and_the_relay_catches_up(tmp_path, settings):
    api = Api(tmp_path, CEI_SQLITE_BUSY_TIMEOUT_MS="1500").start()
    try:
        org = api.factory(("main-incomer",))
        headers = {"Authorization": f"Bearer {org['token']}"}
        holder = sqlite3.connect(api.db, timeout=1)
        holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        try:
            r = httpx.post(
                f"{api.base}/api/v1/timeseries/batch",
                json=_batch("main-incomer", 24),
                headers=headers,
                timeout=30,
            )
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] and r.json()["code"] == "database_unavailable"
            health = httpx.get(f"{api.base}/api/v1/health/db", timeout=30)
            assert health.status_code == 503
            assert health.json()["detail"].endswith("cannot take writes: database is locked")
            env = _relay_env(api, org["token"], tmp_path)
            log = _relay(env, "--backfill", "2024-03-04", "2024-03-05")
            assert "pending=24" in log and "HTTP 503" in log
        finally:
            holder.rollback()
            holder.close()
        assert _count(api.db_url) == 0  # nothing half-stored
        log = _relay(env, "--backfill", "2024-03-04", "2024-03-05")
        assert "ingested=24" in log and "pending=0" in log
        assert _count(api.db_url) == 24
    finally:
        api.stop()


@pytest.fixture(name="pg_database")
def pg_database_fixture(settings):
    """A throw-away PostgreSQL database whose availability the test controls."""
    if not settings.is_postgres:
        pytest.skip("needs PostgreSQL: set DATABASE_URL=postgresql+psycopg://...")
    base = settings.effective_database_url
    name = f"cei_faults_{os.getpid()}"
    admin = get_engine(base).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    migrate(url)

    def control(sql: str) -> None:
        with admin.connect() as conn:
            conn.execute(text(sql.format(db=f'"{name}"')))
            # Drop the API's open connections so the change applies to its next ones.
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )

    yield url, control
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.mark.postgres
def test_postgres_unreachable_then_read_only_then_back(tmp_path, pg_database):
    url, control = pg_database
    api = Api(tmp_path, url).start()
    try:
        org = api.factory(("main-incomer",))
        env = _relay_env(api, org["token"], tmp_path)
        headers = {"Authorization": f"Bearer {org['token']}"}
        assert "ingested=24" in _relay(env, "--backfill", "2024-03-04", "2024-03-05")

        # Unreachable: no connections allowed at all.
        control("ALTER DATABASE {db} ALLOW_CONNECTIONS false")
        health = httpx.get(f"{api.base}/api/v1/health/db", timeout=30)
        assert health.status_code == 503
        r = httpx.post(
            f"{api.base}/api/v1/timeseries/batch",
            json=_batch("main-incomer", 24, datetime(2024, 3, 5, tzinfo=UTC)),
            headers=headers,
            timeout=30,
        )
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] and r.json()["code"] == "database_unavailable"
        log = _relay(env, "--backfill", "2024-03-05", "2024-03-06")
        assert "pending=24" in log

        # Back, but read-only (a replica, or a primary in recovery).
        control("ALTER DATABASE {db} ALLOW_CONNECTIONS true")
        control("ALTER DATABASE {db} SET default_transaction_read_only = on")
        r = httpx.post(
            f"{api.base}/api/v1/timeseries/batch",
            json=_batch("main-incomer", 24, datetime(2024, 3, 5, tzinfo=UTC)),
            headers=headers,
            timeout=30,
        )
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] and r.json()["code"] == "database_unavailable"
        health = httpx.get(f"{api.base}/api/v1/health/db", timeout=30)
        assert health.status_code == 503
        assert health.json()["detail"].endswith("cannot take writes: database is read-only")
        assert _count(url) == 24  # nothing half-stored
        assert "pending=24" in _relay(env, "--backfill", "2024-03-05", "2024-03-06")

        # Writable again: the relay's pending readings land, each once.
        control("ALTER DATABASE {db} RESET default_transaction_read_only")
        log = _relay(env, "--backfill", "2024-03-05", "2024-03-06")
        assert "ingested=24" in log and "pending=0" in log
        assert _count(url) == 48
        assert httpx.get(f"{api.base}/api/v1/health/db", timeout=30).status_code == 200
    finally:
        api.stop()
        get_engine(url).dispose()


def test_a_server_killed_mid_batch_stores_all_or_none_of_it(tmp_path, settings, engine):
    url = settings.effective_database_url
    api = Api(tmp_path, url).start()
    try:
        meters = tuple(f"crash-{i}" for i in range(4))
        org = api.factory(meters)
        headers = {"Authorization": f"Bearer {org['token']}"}
        cut: list[str] = []
        outcomes = {}
        for i, meter in enumerate(meters):
            records = _batch(meter, 10_000)
            thread = threading.Thread(
                target=lambda r=records: _quietly_post(api.base, headers, r, cut), daemon=True
            )
            thread.start()
            time.sleep(0.1 + 0.15 * i)  # somewhere inside the batch's handling
            api.proc.send_signal(signal.SIGKILL)
            api.proc.wait(timeout=10)
            thread.join(timeout=30)
            api.start()
            outcomes[meter] = _count(url, meter)
            assert outcomes[meter] in (0, 10_000), meter
        # At least one kill landed while a batch was in flight (its client saw the connection
        # drop); whatever the moment, each batch is all there or not at all.
        assert cut, outcomes
    finally:
        api.stop()


def _quietly_post(base: str, headers: dict, records: list[dict], cut: list) -> None:
    try:
        httpx.post(f"{base}/api/v1/timeseries/batch", json=records, headers=headers, timeout=60)
    except httpx.HTTPError:
        cut.append(records[0]["meter_id"])  # the server died under it: that is the point


def _sqlite_api(tmp_path, settings):
    """An API on its own SQLite file, with an organisation, a site and a token."""
    from litestar.testing import TestClient

    from api.main import create_app
    from tests.factories import bearer, make_site, make_token, signup

    url = f"sqlite:///{tmp_path / 'faults.db'}"
    migrate(url)
    client = TestClient(app=create_app(settings.model_copy(update={"database_url": url})))
    client.__enter__()
    user = signup(client, org="Full Disk Works")
    make_site(client, user["headers"], "site-22", meters=("main-incomer",))
    token = bearer(make_token(client, user["headers"])["token"])
    return client, url, token


def _readings_and_batches(url: str) -> tuple[int, int]:
    path = make_url(url).database
    with sqlite3.connect(path) as conn:  # outside the API's engine and its pragmas
        return (
            conn.execute("SELECT COUNT(*) FROM reading").fetchone()[0],
            conn.execute("SELECT COUNT(*) FROM ingestbatch").fetchone()[0],
        )


def _full(path: str):
    with sqlite3.connect(path) as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def limit(dbapi_connection, _record):  # room for a few pages, not for 5,000 readings
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages + 4}")

    return limit


def _read_only(_path: str):
    def limit(dbapi_connection, _record):
        dbapi_connection.execute("PRAGMA query_only = ON")

    return limit


@pytest.mark.parametrize("fault", [_full, _read_only], ids=["disk-full", "read-only"])
def test_a_full_or_read_only_sqlite_is_503_and_stores_nothing_of_the_batch(
    tmp_path, settings, fault
):
    from sqlalchemy import event

    client, url, token = _sqlite_api(tmp_path, settings)
    engine = get_engine(url)
    records = _batch("main-incomer", 5000)
    try:
        before = _readings_and_batches(url)
        limit = fault(make_url(url).database)
        event.listen(engine, "connect", limit)
        engine.dispose()  # every connection from now on is limited
        try:
            r = client.post("/api/v1/timeseries/batch", json=records, headers=token)
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] and r.json()["code"] == "database_unavailable"
            assert _readings_and_batches(url) == before  # not a reading, not an audit row
            csv = "site_id,meter_id,timestamp_utc,value\n" + "".join(
                f"{x['site_id']},{x['meter_id']},{x['timestamp_utc']},{x['value']}\n"
                for x in records
            )
            up = client.post(
                "/api/v1/timeseries/upload",
                content=csv,
                headers={**token, "Content-Type": "text/csv"},
            )
            assert up.status_code == 503, up.text
            assert up.headers["retry-after"]
        finally:
            event.remove(engine, "connect", limit)
            engine.dispose()
        assert _readings_and_batches(url)[0] == before[0]  # the upload stored no reading
        # Room again: the retried batch lands whole, once.
        r = client.post("/api/v1/timeseries/batch", json=records, headers=token)
        assert r.status_code == 200 and r.json()["ingested"] == 5000, r.text
        assert _readings_and_batches(url)[0] == 5000
    finally:
        client.__exit__(None, None, None)
        engine.dispose()
