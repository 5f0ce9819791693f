"""Integration tokens for SCADA relays (admin only)."""

from typing import Annotated

from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody, Parameter
from sqlmodel import Session

from api.auth import requires_admin
from api.deps import PageLimit, PageOffset, page
from core import tokens
from core.models import IntegrationTokenCreate, IntegrationTokenCreated, IntegrationTokensPublic


class IntegrationTokenController(Controller):
    path = "/integration-tokens"
    tags = ["integration tokens"]
    guards = [requires_admin]

    @post("/", sync_to_thread=True)
    def create_token(
        self,
        request: Request,
        db_session: NamedDependency[Session],
        data: JSONBody[IntegrationTokenCreate],
    ) -> IntegrationTokenCreated:
        """Mint a token. `token` (cei_int_…) is shown in this response only; store it now."""
        return tokens.create_token(
            db_session, org_id=request.user.org_id, data=data, created_by=request.user.user_id
        )

    @get("/", sync_to_thread=True)
    def list_tokens(
        self,
        request: Request,
        db_session: NamedDependency[Session],
        limit: FromQuery[PageLimit] = 500,
        offset: FromQuery[PageOffset] = 0,
    ) -> IntegrationTokensPublic:
        """The organisation's tokens with prefix, status and last use, never the secret;
        paged, `count` is the total."""
        every = tokens.list_tokens(db_session, org_id=request.user.org_id)
        rows = [tokens.to_public(t) for t in page(every, limit, offset)]
        return IntegrationTokensPublic(data=rows, count=len(every))

    @delete("/{token_id:int}", sync_to_thread=True, status_code=204)
    def delete_token(
        self,
        request: Request,
        db_session: NamedDependency[Session],
        token_id: Annotated[int, Parameter(ge=1, le=2**31 - 1)],
    ) -> None:
        """Revoke a token; relays using it get 401 from the next request on."""
        tokens.revoke_token(db_session, org_id=request.user.org_id, token_id=token_id)
