"""Database errors: those a retry can cure (locked, busy, unreachable, full, I/O, read-only) are
503 with Retry-After; the others (no such table, a syntax error) are faults of ours: 500 with
nothing of the error in the answer."""

import sqlite3

import pytest
from litestar.testing import TestClient
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import DBAPIError

from api.errors import database_to_problem, internal_db_to_problem
from api.main import create_app
from core.db import get_engine


def _sqlite_error(tmp_path, sql: str, *, setup=(), holder: bool = False) -> DBAPIError:
    """The error SQLAlchemy raises for `sql` on a real SQLite file."""
    path = tmp_path / "errors.db"
    plain = sqlite3.connect(path)
    plain.execute("CREATE TABLE IF NOT EXISTS t (x TEXT)")
    plain.commit()
    plain.close()
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05})

    @event.listens_for(engine, "connect")
    def _setup(dbapi_connection, _record):
        for statement in setup:
            dbapi_connection.execute(statement)

    other = sqlite3.connect(path, isolation_level=None)
    try:
        if holder:
            other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(DBAPIError) as caught, engine.begin() as conn:
            conn.execute(text(sql))
        return caught.value
    finally:
        other.close()
        engine.dispose()


@pytest.mark.parametrize(
    "sql, setup, holder",
    [
        ("INSERT INTO t VALUES ('a')", (), True),  # locked by another writer
        ("INSERT INTO t VALUES ('a')", ("PRAGMA query_only = ON",), False),  # read-only
        (  # full: the file may not grow past its current size
            "INSERT INTO t SELECT hex(randomblob(2000)) FROM "
            "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) "
            "SELECT i FROM n)",
            ("PRAGMA max_page_count = 3",),
            False,
        ),
    ],
    ids=["locked", "read-only", "full"],
)
def test_sqlite_errors_worth_a_retry_are_503(tmp_path, sql, setup, holder):
    problem = database_to_problem(_sqlite_error(tmp_path, sql, setup=setup, holder=holder))
    assert problem.status_code == 503
    assert problem.headers["Retry-After"]
    assert problem.extra["code"] == "database_unavailable"


@pytest.mark.parametrize(
    "sql", ["SELECT * FROM no_such_table", "SELEC nonsense", "SELECT no_such_column FROM t"]
)
def test_sqlite_errors_of_the_statement_or_schema_are_500(tmp_path, sql):
    error = _sqlite_error(tmp_path, sql)
    assert error.__class__.__name__ == "OperationalError"  # what used to become a 503
    problem = database_to_problem(error)
    assert problem.status_code == 500
    assert problem.extra["code"] == "internal_error"
    assert not problem.headers


def test_an_unreachable_postgres_is_503(settings):
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/x")
    with pytest.raises(DBAPIError) as caught, engine.connect():
        pass
    assert database_to_problem(caught.value).status_code == 503


def _pg_error(settings, *statements: str) -> DBAPIError:
    engine = get_engine(settings.effective_database_url)
    with pytest.raises(DBAPIError) as caught, engine.connect() as conn:
        for statement in statements:
            conn.execute(text(statement))
    return caught.value


@pytest.mark.postgres
def test_postgres_timeouts_and_read_only_are_503(settings, engine):
    timeout = _pg_error(settings, "SET LOCAL statement_timeout = 10", "SELECT pg_sleep(1)")
    assert timeout.orig.sqlstate == "57014"
    assert database_to_problem(timeout).status_code == 503
    read_only = _pg_error(
        settings, "SET TRANSACTION READ ONLY", "CREATE TEMP TABLE ro_probe AS SELECT 1"
    )
    assert read_only.orig.sqlstate == "25006"
    assert internal_db_to_problem(read_only).status_code == 503


@pytest.mark.postgres
def test_postgres_operational_errors_of_the_statement_are_500(settings, engine):
    # "target lists can have at most 1664 entries": an OperationalError (program limit), but
    # one that no retry cures.
    too_wide = _pg_error(settings, "SELECT " + ", ".join(["1"] * 1700))
    assert too_wide.__class__.__name__ == "OperationalError"
    assert too_wide.orig.sqlstate.startswith("54")
    assert database_to_problem(too_wide).status_code == 500


def test_a_route_on_a_database_without_its_tables_is_a_500_without_internals(settings, tmp_path):
    empty = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'empty.db'}"})
    with TestClient(app=create_app(empty), raise_server_exceptions=False) as client:
        r = client.post(
            "/api/v1/auth/login", json={"email": "a@plant.example", "password": "whatever-pw"}
        )
    assert r.status_code == 500, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "internal_error"
    assert "retry-after" not in r.headers
    for leak in ("no such table", "Traceback", "SELECT", "sqlite"):
        assert leak not in r.text
