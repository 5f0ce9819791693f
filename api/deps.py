"""Request-scoped dependencies: one database transaction per request."""

import logging
from collections.abc import AsyncGenerator, Sequence
from typing import Annotated, TypeVar

from anyio import to_thread
from litestar import Request
from litestar.datastructures import State
from litestar.params import Parameter
from sqlmodel import Session

from core.db import begin_write
from core.errors import DomainError
from core.settings import Settings

log = logging.getLogger("cei.api")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Every list endpoint pages: at most PAGE_MAX rows an answer, `count` is the total.
PAGE_MAX = 1000
PageLimit = Annotated[int, Parameter(ge=1, le=PAGE_MAX, description="rows per page")]
PageOffset = Annotated[int, Parameter(ge=0, le=10_000_000, description="rows to skip")]
T = TypeVar("T")


def page(rows: Sequence[T], limit: int, offset: int) -> list[T]:
    return list(rows[offset : offset + limit])


async def provide_session(state: State, request: Request) -> AsyncGenerator[Session, None]:
    """A session whose transaction commits when the handler succeeds and rolls back otherwise.

    Requests that change data start as writers (SQLite: BEGIN IMMEDIATE), so concurrent
    writers queue on the busy timeout instead of failing half-way with "database is locked".
    Commit and rollback run in a worker thread: they may wait on disk or the network.
    """
    session = Session(state.engine, expire_on_commit=False)
    try:
        if request.method not in READ_METHODS:
            await to_thread.run_sync(begin_write, session)
        yield session
        await to_thread.run_sync(session.commit)
    except DomainError as exc:
        if exc.commit_anyway:
            await to_thread.run_sync(session.commit)
        else:
            await _quietly(session.rollback)
        raise
    except BaseException:
        await _quietly(session.rollback)
        raise
    finally:
        await _quietly(session.close)


async def _quietly(fn) -> None:
    """Roll back or close without masking the error being handled (e.g. a dead connection)."""
    try:
        await to_thread.run_sync(fn)
    except Exception:
        log.warning("session cleanup failed", exc_info=True)


def provide_settings(state: State) -> Settings:
    return state.settings
