"""Integration tokens for SCADA relays: minted once, stored as a hash, scoped, revocable."""

from datetime import timedelta

from sqlalchemy import update
from sqlmodel import Session, select

from core.accounts import Principal
from core.db import utcnow
from core.errors import InvalidInput, NotFound, Unauthorized
from core.models import (
    IntegrationToken,
    IntegrationTokenCreate,
    IntegrationTokenCreated,
    IntegrationTokenPublic,
    Role,
    Site,
)
from core.security import INTEGRATION_TOKEN_PREFIX, digests_equal, new_integration_token, sha256_hex

# last_used_at is refreshed at most this often, so a busy relay does not write on every call.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def token_status(token: IntegrationToken) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= utcnow():
        return "expired"
    return "active"


def to_public(token: IntegrationToken) -> IntegrationTokenPublic:
    return IntegrationTokenPublic(
        **token.model_dump(exclude={"token_hash", "org_id", "created_by"}),
        status=token_status(token),
    )


def create_token(
    session: Session, *, org_id: int, data: IntegrationTokenCreate, created_by: int | None
) -> IntegrationTokenCreated:
    """Mint a token; the plaintext is in the result and nowhere else, ever."""
    site_ids = None
    if data.site_ids is not None:
        site_ids = sorted(set(data.site_ids))
        if not site_ids:
            raise InvalidInput("site_ids, when given, must name at least one site")
        known = set(
            session.exec(
                select(Site.site_id).where(Site.org_id == org_id, Site.site_id.in_(site_ids))
            ).all()
        )
        if missing := [s for s in site_ids if s not in known]:
            raise InvalidInput(
                f"unknown site_ids for this organisation: {', '.join(missing)}",
                code="unknown_site",
            )
    plain, prefix, digest = new_integration_token()
    now = utcnow()
    token = IntegrationToken(
        org_id=org_id,
        name=data.name,
        prefix=prefix,
        token_hash=digest,
        site_ids=site_ids,
        created_by=created_by,
        created_at=now,
        expires_at=now + timedelta(days=data.expires_in_days) if data.expires_in_days else None,
    )
    session.add(token)
    session.flush()
    return IntegrationTokenCreated(**to_public(token).model_dump(), token=plain)


def list_tokens(session: Session, *, org_id: int) -> list[IntegrationToken]:
    stmt = (
        select(IntegrationToken)
        .where(IntegrationToken.org_id == org_id)
        .order_by(IntegrationToken.created_at.desc(), IntegrationToken.id.desc())
    )
    return list(session.exec(stmt).all())


def revoke_token(session: Session, *, org_id: int, token_id: int) -> IntegrationToken:
    token = session.exec(
        select(IntegrationToken).where(
            IntegrationToken.id == token_id, IntegrationToken.org_id == org_id
        )
    ).first()
    if token is None:
        raise NotFound(f"integration token {token_id} not found")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.add(token)
        session.flush()
    return token


def resolve_token(session: Session, *, plaintext: str) -> tuple[Principal, bool]:
    """The principal behind a `cei_int_…` secret, or Unauthorized.

    Returns (principal, stale): `stale` means last_used_at is due for `touch_token`, which
    the caller runs in a short write transaction of its own.
    """
    if not plaintext.startswith(INTEGRATION_TOKEN_PREFIX):
        raise Unauthorized("invalid integration token", code="invalid_token")
    digest = sha256_hex(plaintext)
    # The lookup is by hash of the secret, so its timing says nothing about the secret itself.
    token = session.exec(
        select(IntegrationToken).where(IntegrationToken.token_hash == digest)
    ).first()
    if token is None or not digests_equal(token.token_hash, digest):
        raise Unauthorized("invalid integration token", code="invalid_token")
    status = token_status(token)
    if status != "active":
        raise Unauthorized(f"integration token {status}", code=f"token_{status}")
    stale = token.last_used_at is None or utcnow() - token.last_used_at >= LAST_USED_RESOLUTION
    principal = Principal(
        org_id=token.org_id,
        role=Role.analyst,
        kind="integration",
        token_id=token.id,
        site_ids=tuple(token.site_ids) if token.site_ids is not None else None,
    )
    return principal, stale


def touch_token(session: Session, *, token_id: int) -> None:
    """Record that a token was just used (kept to LAST_USED_RESOLUTION granularity)."""
    session.execute(
        update(IntegrationToken)
        .where(IntegrationToken.id == token_id)
        .values(last_used_at=utcnow())
    )
