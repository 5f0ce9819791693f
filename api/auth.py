"""Authentication middleware (user JWT or integration token) and the guards that read it."""

from collections.abc import Callable

from anyio import to_thread
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import ASGIApp
from sqlalchemy.engine import Engine
from sqlmodel import Session

from core.accounts import Principal
from core.db import begin_write, session_scope
from core.errors import Forbidden, Unauthorized
from core.models import Role, User
from core.security import INTEGRATION_TOKEN_PREFIX, decode_access_token
from core.settings import Settings
from core.tokens import resolve_token, touch_token

INTEGRATION_OPT = "integration_token"


def _principal_for_user(session: Session, settings: Settings, token: str) -> Principal:
    claims = decode_access_token(settings, token)
    user = session.get(User, claims.user_id)
    # Role and activity are read from the database, so a demotion or a block applies at once.
    if user is None or not user.is_active or user.org_id != claims.org_id:
        raise Unauthorized("user no longer active", code="invalid_token")
    return Principal(org_id=user.org_id, role=user.role, kind="user", user_id=user.id)


def authenticate_bearer(engine: Engine, settings: Settings, authorization: str | None) -> Principal:
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("send 'Authorization: Bearer <token>'", code="missing_token")
    if not token.startswith(INTEGRATION_TOKEN_PREFIX):
        with session_scope(engine) as session:
            return _principal_for_user(session, settings, token)
    with session_scope(engine) as session:
        principal, stale = resolve_token(session, plaintext=token)
    if stale:
        with session_scope(engine) as session:
            begin_write(session)
            touch_token(session, token_id=principal.token_id)
    return principal


class BearerAuthMiddleware(AbstractAuthenticationMiddleware):
    """Resolves `Authorization: Bearer …` to a Principal; routes opt out via exclude_from_auth."""

    def __init__(self, app: ASGIApp, engine: Engine, settings: Settings, **kwargs) -> None:
        super().__init__(app, **kwargs)
        self.engine = engine
        self.settings = settings

    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        principal = await to_thread.run_sync(
            authenticate_bearer,
            self.engine,
            self.settings,
            connection.headers.get("authorization"),
        )
        return AuthenticationResult(user=principal, auth=principal.kind)


def integration_scope_guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Integration tokens reach only the routes that say `opt={"integration_token": True}`."""
    principal = connection.scope.get("user")
    if (
        isinstance(principal, Principal)
        and not principal.is_user
        and not handler.opt.get(INTEGRATION_OPT)
    ):
        raise Forbidden(
            "integration tokens may only call ingestion and ingest-health routes",
            code="token_scope",
        )


def requires_role(*roles: Role) -> Callable[[ASGIConnection, BaseRouteHandler], None]:
    """Guard: the caller is a user with one of these roles."""
    allowed = set(roles)

    def guard(connection: ASGIConnection, _handler: BaseRouteHandler) -> None:
        principal = connection.scope.get("user")
        if not isinstance(principal, Principal) or principal.role not in allowed:
            names = " or ".join(sorted(r.value for r in allowed))
            raise Forbidden(f"this action needs the {names} role", code="role_required")

    return guard


requires_admin = requires_role(Role.admin)
