"""Liveness and database readiness; no authentication."""

import logging

from anyio import to_thread
from litestar import Controller, get
from litestar.datastructures import State
from sqlalchemy.exc import SQLAlchemyError

from core.db import ReadOnlyDatabase, describe_db_failure, ping
from core.errors import Unavailable

log = logging.getLogger("cei.api")


class HealthController(Controller):
    path = "/health"
    tags = ["health"]

    @get("/", exclude_from_auth=True, opt={"integration_token": True})
    async def health(self) -> dict[str, str]:
        """Liveness: the API process answers. Touches no database."""
        return {"status": "ok"}

    @get("/db", exclude_from_auth=True, opt={"integration_token": True})
    async def health_db(self, state: State) -> dict[str, str]:
        """Readiness: 200 when the database answers and can take writes; 503 with the reason
        when it is unreachable, read-only, or (SQLite) its write lock is held elsewhere."""
        engine = state.engine
        try:
            await to_thread.run_sync(ping, engine)
        except ReadOnlyDatabase as exc:
            log.warning("database readiness check failed: %s", exc)
            raise Unavailable(
                f"{engine.dialect.name} database cannot take writes: {exc}",
                code="database_unavailable",
            ) from None
        except (SQLAlchemyError, OSError) as exc:
            # The full driver message (host, port, user) goes to the log, not to anonymous callers.
            log.warning("database readiness check failed: %s", exc)
            raise Unavailable(
                f"{engine.dialect.name} database unreachable: {describe_db_failure(exc)}",
                code="database_unavailable",
            ) from None
        return {"status": "ok", "database": engine.dialect.name}
