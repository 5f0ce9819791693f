"""Database engine, sessions and the UTC timestamp column type."""

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from sqlalchemy import DateTime, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, create_engine

from core.settings import get_settings

# How long a SQLite writer waits for the write lock before the request gets a 503.
SQLITE_BUSY_TIMEOUT_MS = int(os.environ.get("CEI_SQLITE_BUSY_TIMEOUT_MS", "30000"))
PG_CONNECT_TIMEOUT_S = 5


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every engine.

    SQLite has no time zone type, so values come back naive; this restores UTC on the way out
    and refuses naive values on the way in, so a local time can never be stored by mistake.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a UTC instant is expected")
        value = value.astimezone(UTC)
        # SQLite stores text; keep it naive-UTC there so comparisons stay lexical-correct.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(UTC)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # Hand transaction control to SQLAlchemy (see _sqlite_begin): pysqlite's own implicit
    # BEGIN would start every write transaction DEFERRED.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


IMMEDIATE = "sqlite_begin_immediate"


def _sqlite_begin(conn) -> None:
    # A writer takes the write lock up front (BEGIN IMMEDIATE), so it waits in busy_timeout
    # instead of failing with "database is locked" when it upgrades from a read half-way.
    immediate = conn.get_execution_options().get(IMMEDIATE)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def begin_write(session: Session) -> None:
    """Start the session's transaction as a writer (SQLite: BEGIN IMMEDIATE).

    Must come before the session's first statement; once a transaction is open it is left as is.
    """
    if not session.in_transaction():
        session.connection(execution_options={IMMEDIATE: True})


@cache
def get_engine(url: str | None = None) -> Engine:
    """One engine per database URL per process (default: the configured one)."""
    url = url or get_settings().effective_database_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            # Best effort: an unusable path surfaces as a connection error (503), not here.
            with contextlib.suppress(OSError):
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            hide_parameters=True,  # SQL errors must not log password hashes or readings
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(
        url,
        hide_parameters=True,
        pool_pre_ping=True,
        connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S},
    )


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A session in one transaction: commit on success, roll back on error.

    Objects stay readable after the commit, for callers that render what they wrote.
    """
    with Session(engine or get_engine(), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def describe_db_failure(exc: BaseException) -> str:
    """A short reason for a failed connection that names no host, port or user."""
    text_ = str(getattr(exc, "orig", None) or exc).lower()
    for needle, reason in (
        ("refused", "connection refused"),
        ("timeout", "connection timed out"),
        ("timed out", "connection timed out"),
        ("password", "authentication failed"),
        ("authentication", "authentication failed"),
        ("does not exist", "database does not exist"),
        ("unable to open", "database file cannot be opened"),
        ("readonly", "database is read-only"),
        ("locked", "database is locked"),
        ("disk", "disk I/O error or disk full"),
        ("could not translate host", "host name not resolved"),
    ):
        if needle in text_:
            return reason
    return f"driver error ({type(getattr(exc, 'orig', None) or exc).__name__})"


class ReadOnlyDatabase(RuntimeError):
    """The database answers but cannot take writes now."""


HEALTH_LOCK_WAIT_MS = 2000


def ping(engine: Engine | None = None) -> None:
    """Check that the database answers and can take writes.

    Raises the driver's error when it does not answer, and ReadOnlyDatabase when it is
    read-only (PostgreSQL: a replica, recovery or the read-only setting) or, on SQLite, when
    another process has held the write lock for longer than HEALTH_LOCK_WAIT_MS.
    """
    engine = engine or get_engine()
    with engine.connect() as conn:
        conn.execute(text("SELECT 1")).scalar_one()
        if engine.dialect.name == "postgresql":
            if conn.execute(text("SHOW transaction_read_only")).scalar_one() == "on":
                raise ReadOnlyDatabase("database is read-only")
            return
        conn.rollback()  # end the read transaction; probe the write lock on the raw driver
        cursor = conn.connection.dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={HEALTH_LOCK_WAIT_MS}")
        try:
            cursor.execute("BEGIN IMMEDIATE")
            cursor.execute("ROLLBACK")
        except Exception as exc:  # sqlite3.OperationalError: locked, read-only, disk I/O
            raise ReadOnlyDatabase(describe_db_failure(exc)) from exc
        finally:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.close()


MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would choke on '%' in passwords.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str | None = None, revision: str = "head") -> None:
    """Bring the schema to `revision` (default: the newest) with Alembic."""
    from alembic import command

    command.upgrade(_alembic_config(url or get_settings().effective_database_url), revision)


def downgrade(url: str | None = None, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(_alembic_config(url or get_settings().effective_database_url), revision)


def current_revision(url: str | None = None) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with get_engine(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
