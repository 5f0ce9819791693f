"""Request-scoped dependencies: one database transaction per request."""

from collections.abc import AsyncGenerator

from anyio import to_thread
from litestar.datastructures import State
from sqlmodel import Session

from core.errors import DomainError
from core.settings import Settings


async def provide_session(state: State) -> AsyncGenerator[Session, None]:
    """A session whose transaction commits when the handler succeeds and rolls back otherwise.

    Commit and rollback run in a worker thread: they may wait on disk or the network.
    """
    session = Session(state.engine, expire_on_commit=False)
    try:
        yield session
        await to_thread.run_sync(session.commit)
    except DomainError as exc:
        if exc.commit_anyway:
            await to_thread.run_sync(session.commit)
        else:
            await to_thread.run_sync(session.rollback)
        raise
    except BaseException:
        await to_thread.run_sync(session.rollback)
        raise
    finally:
        await to_thread.run_sync(session.close)


def provide_settings(state: State) -> Settings:
    return state.settings
