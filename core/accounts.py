"""Organisations, users, login and refresh-token rotation."""

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from core.db import utcnow
from core.errors import Conflict, InvalidInput, NotFound, Unauthorized
from core.models import (
    Organization,
    OrganizationUpdate,
    RefreshToken,
    Role,
    TokenPair,
    User,
)
from core.security import (
    digests_equal,
    dummy_password_hash,
    encode_access_token,
    hash_password,
    new_refresh_token,
    sha256_hex,
    verify_password,
)
from core.settings import Settings

INVALID_LOGIN = "invalid email or password"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a person (JWT) or a relay (integration token), always inside one org."""

    org_id: int
    role: Role
    kind: str  # "user" or "integration"
    user_id: int | None = None
    token_id: int | None = None
    site_ids: tuple[str, ...] | None = None  # integration-token scope; None means every site

    @property
    def is_user(self) -> bool:
        return self.kind == "user"


def check_password_policy(password: str, settings: Settings) -> None:
    if len(password) < settings.password_min_length:
        raise InvalidInput(
            f"password must be at least {settings.password_min_length} characters",
            code="password_too_short",
        )


def _email_taken(session: Session, email: str) -> bool:
    return session.exec(select(User.id).where(User.email == email)).first() is not None


def create_user(
    session: Session, *, org_id: int, email: str, password: str, role: Role, settings: Settings
) -> User:
    """Add a user to an existing org (email is unique across CEI)."""
    email = email.strip().lower()
    check_password_policy(password, settings)
    if _email_taken(session, email):
        raise Conflict(f"a user with email {email} already exists", code="email_taken")
    user = User(
        org_id=org_id,
        email=email,
        password_hash=hash_password(password, rounds=settings.bcrypt_rounds),
        role=role,
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError:  # a concurrent signup with the same email won the race
        raise Conflict(f"a user with email {email} already exists", code="email_taken") from None
    return user


def signup(
    session: Session, *, email: str, password: str, organization_name: str, settings: Settings
) -> tuple[User, Organization]:
    """Create an organisation and its first admin."""
    check_password_policy(password, settings)
    if _email_taken(session, email.strip().lower()):
        raise Conflict(f"a user with email {email} already exists", code="email_taken")
    org = Organization(name=organization_name.strip())
    session.add(org)
    session.flush()
    user = create_user(
        session, org_id=org.id, email=email, password=password, role=Role.admin, settings=settings
    )
    return user, org


def authenticate(session: Session, *, email: str, password: str, settings: Settings) -> User:
    """The active user with these credentials, or Unauthorized (same message either way)."""
    user = session.exec(select(User).where(User.email == email.strip().lower())).first()
    if user is None:
        verify_password(password, dummy_password_hash(settings.bcrypt_rounds))
        raise Unauthorized(INVALID_LOGIN, code="invalid_credentials")
    if not verify_password(password, user.password_hash) or not user.is_active:
        raise Unauthorized(INVALID_LOGIN, code="invalid_credentials")
    return user


def issue_tokens(
    session: Session, *, user: User, settings: Settings, family_id: str | None = None
) -> TokenPair:
    """A new access token and a refresh token (a new family unless continuing one)."""
    now = utcnow()
    plain, digest = new_refresh_token()
    session.add(
        RefreshToken(
            user_id=user.id,
            family_id=family_id or uuid.uuid4().hex,
            token_hash=digest,
            issued_at=now,
            expires_at=now + timedelta(days=settings.refresh_token_days),
        )
    )
    session.flush()
    access = encode_access_token(
        settings, user_id=user.id, org_id=user.org_id, role=user.role, now=now
    )
    return TokenPair(
        access_token=access, refresh_token=plain, expires_in=settings.access_token_minutes * 60
    )


def login(session: Session, *, email: str, password: str, settings: Settings) -> TokenPair:
    # Same policy as signup: a password that could never have been set is a 400, not a 401.
    check_password_policy(password, settings)
    user = authenticate(session, email=email, password=password, settings=settings)
    user.last_login_at = utcnow()
    session.add(user)
    return issue_tokens(session, user=user, settings=settings)


def revoke_family(session: Session, *, family_id: str) -> None:
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def _find_refresh(session: Session, refresh_token: str) -> RefreshToken:
    digest = sha256_hex(refresh_token)
    row = session.exec(select(RefreshToken).where(RefreshToken.token_hash == digest)).first()
    if row is None or not digests_equal(row.token_hash, digest):
        raise Unauthorized("invalid refresh token", code="invalid_token")
    return row


def rotate_refresh(session: Session, *, refresh_token: str, settings: Settings) -> TokenPair:
    """Exchange a refresh token for a new pair.

    A token that was already rotated is being replayed: the whole family is revoked, so a
    stolen token stops working for the thief and the user alike (they log in again).
    `RefreshReuse` carries `commit_anyway`: the caller commits the revocation, then reports.
    """
    row = _find_refresh(session, refresh_token)
    now = utcnow()
    if row.rotated_at is not None:
        revoke_family(session, family_id=row.family_id)
        raise RefreshReuse("refresh token already used; this session has been revoked")
    if row.revoked_at is not None:
        raise Unauthorized("refresh token revoked", code="token_revoked")
    if row.expires_at <= now:
        raise Unauthorized("refresh token expired", code="token_expired")
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("user no longer active", code="invalid_token")
    # Conditional update: of two concurrent rotations of the same token only one wins.
    won = session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == row.id, RefreshToken.rotated_at.is_(None))
        .values(rotated_at=now)
    ).rowcount
    if won != 1:
        revoke_family(session, family_id=row.family_id)
        raise RefreshReuse("refresh token already used; this session has been revoked")
    return issue_tokens(session, user=user, settings=settings, family_id=row.family_id)


def logout(session: Session, *, refresh_token: str) -> None:
    """Revoke the session (refresh-token family) this token belongs to."""
    row = _find_refresh(session, refresh_token)
    revoke_family(session, family_id=row.family_id)


class RefreshReuse(Unauthorized):
    """A rotated refresh token came back. The family revocation must still be committed."""

    code = "token_reused"
    commit_anyway = True


def get_user(session: Session, *, org_id: int, user_id: int) -> User:
    user = session.exec(select(User).where(User.id == user_id, User.org_id == org_id)).first()
    if user is None:
        raise NotFound("user not found")
    return user


def get_org(session: Session, *, org_id: int) -> Organization:
    org = session.get(Organization, org_id)
    if org is None:
        raise NotFound("organisation not found")
    return org


def update_org(session: Session, *, org_id: int, data: OrganizationUpdate) -> Organization:
    org = get_org(session, org_id=org_id)
    org.sqlmodel_update(data.model_dump(exclude_unset=True, exclude_none=True))
    session.add(org)
    session.flush()
    return org


def find_org(session: Session, *, ref: str) -> Organization:
    """An org by numeric id or exact name (for the command line)."""
    if ref.isdigit():
        org = session.get(Organization, int(ref))
        if org:
            return org
    orgs = session.exec(select(Organization).where(Organization.name == ref)).all()
    if len(orgs) == 1:
        return orgs[0]
    if len(orgs) > 1:
        raise Conflict(f"{len(orgs)} organisations are named {ref!r}; use the id")
    raise NotFound(f"no organisation {ref!r}")
