"""Signup, login, token refresh, logout, the caller's identity and organisation settings."""

from functools import partial

from anyio import to_thread
from litestar import Controller, Request, get, patch, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import JSONBody
from sqlmodel import Session

from api.auth import requires_admin
from api.ratelimit import client_address, too_many
from core import accounts
from core.accounts import Principal
from core.db import session_scope
from core.errors import Unauthorized
from core.models import (
    LoginInput,
    MePublic,
    OrganizationPublic,
    OrganizationUpdate,
    RefreshInput,
    SignupInput,
    SignupPublic,
    TokenPair,
    UserPublic,
)
from core.settings import Settings


def _login(engine, email: str, password: str, settings: Settings) -> TokenPair:
    with session_scope(engine) as session:
        return accounts.login(session, email=email, password=password, settings=settings)


class AccountController(Controller):
    path = "/auth"
    tags = ["auth"]

    @post("/signup", exclude_from_auth=True, sync_to_thread=True)
    def signup(
        self,
        db_session: NamedDependency[Session],
        settings: NamedDependency[Settings],
        data: JSONBody[SignupInput],
    ) -> SignupPublic:
        """Create an organisation and its first admin user."""
        user, org = accounts.signup(
            db_session,
            email=data.email,
            password=data.password,
            organization_name=data.organization_name,
            settings=settings,
        )
        return SignupPublic(
            user=UserPublic.model_validate(user, from_attributes=True),
            organization=OrganizationPublic.model_validate(org, from_attributes=True),
        )

    @post("/login", exclude_from_auth=True, status_code=200)
    async def login(
        self,
        request: Request,
        state: State,
        settings: NamedDependency[Settings],
        data: JSONBody[LoginInput],
    ) -> TokenPair:
        """Exchange email and password for an access token and a refresh token.

        After repeated wrong passwords for one email from one address, further attempts from
        there are refused for a while (429 with Retry-After; the delay doubles, up to a cap).
        After many wrong passwords for one email from anywhere, addresses that have not signed
        in to it before share one attempt per 30 s (`CEI_LOGIN_LOCKOUT_SECONDS`; 429 with
        Retry-After); addresses that have are not held up by that."""
        throttle = state.login_throttle
        address = client_address(request)
        wait = await throttle.begin(data.email, address)
        if wait is not None:
            raise too_many(wait, "too many failed sign-ins; try again after Retry-After seconds")
        outcome = "error"  # a database outage releases the attempt without counting it
        try:
            pair = await to_thread.run_sync(
                partial(_login, state.engine, data.email, data.password, settings)
            )
            outcome = "ok"
        except Unauthorized:
            outcome = "wrong"
            raise
        finally:
            await throttle.end(data.email, address, outcome=outcome)
        return pair

    @post("/refresh", exclude_from_auth=True, sync_to_thread=True, status_code=200)
    def refresh(
        self,
        db_session: NamedDependency[Session],
        settings: NamedDependency[Settings],
        data: JSONBody[RefreshInput],
    ) -> TokenPair:
        """Rotate a refresh token. Presenting an already-rotated token revokes its whole session."""
        return accounts.rotate_refresh(
            db_session, refresh_token=data.refresh_token, settings=settings
        )

    @post("/logout", exclude_from_auth=True, sync_to_thread=True, status_code=204)
    def logout(self, db_session: NamedDependency[Session], data: JSONBody[RefreshInput]) -> None:
        """Revoke the session that this refresh token belongs to."""
        accounts.logout(db_session, refresh_token=data.refresh_token)

    @get("/me", sync_to_thread=True)
    def me(self, request: Request, db_session: NamedDependency[Session]) -> MePublic:
        """The signed-in user and their organisation."""
        principal: Principal = request.user
        user = accounts.get_user(db_session, org_id=principal.org_id, user_id=principal.user_id)
        org = accounts.get_org(db_session, org_id=principal.org_id)
        return MePublic(
            user=UserPublic.model_validate(user, from_attributes=True),
            organization=OrganizationPublic.model_validate(org, from_attributes=True),
        )


class AuthTestController(Controller):
    """Test-only twins of signup and login; mounted only when CEI_ENABLE_TEST_AUTH_ROUTES is on.

    The very same handlers as /auth, so the twins cannot drift from the real routes.
    """

    path = "/auth-tests"
    tags = ["auth (test only)"]

    signup = AccountController.signup
    login = AccountController.login


class OrganizationController(Controller):
    path = "/org"
    tags = ["organisation"]

    @get("/", sync_to_thread=True)
    def get_org(self, request: Request, db_session: NamedDependency[Session]) -> OrganizationPublic:
        """The caller's organisation: name, currency, tariff and sector."""
        org = accounts.get_org(db_session, org_id=request.user.org_id)
        return OrganizationPublic.model_validate(org, from_attributes=True)

    @patch("/", sync_to_thread=True, guards=[requires_admin])
    def update_org(
        self,
        request: Request,
        db_session: NamedDependency[Session],
        data: JSONBody[OrganizationUpdate],
    ) -> OrganizationPublic:
        """Change the organisation's name, currency, energy tariff (per kWh) or sector."""
        org = accounts.update_org(db_session, org_id=request.user.org_id, data=data)
        return OrganizationPublic.model_validate(org, from_attributes=True)
