"""Password hashing, JWT access tokens and opaque secrets (refresh and integration tokens)."""

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

import bcrypt
import jwt

from core.db import utcnow
from core.errors import InvalidInput, Unauthorized
from core.models import BCRYPT_MAX_BYTES, Role
from core.settings import Settings

JWT_ALGORITHM = "HS256"  # pinned: the decoder accepts nothing else (no alg confusion, no "none")
INTEGRATION_TOKEN_PREFIX = "cei_int_"  # noqa: S105 (public prefix)
REFRESH_TOKEN_PREFIX = "cei_rt_"  # noqa: S105 (public prefix)
PREFIX_SHOWN_CHARS = 8  # characters of the secret kept visible in lists, after "cei_int_"


def _password_bytes(password: str) -> bytes:
    raw = password.encode("utf-8")
    if len(raw) > BCRYPT_MAX_BYTES:
        # bcrypt 5 raises on longer input; say so instead of failing with a 500.
        raise InvalidInput(
            f"password must be at most {BCRYPT_MAX_BYTES} bytes in UTF-8", code="password_too_long"
        )
    return raw


def hash_password(password: str, *, rounds: int) -> str:
    """bcrypt hash of a password (at most 72 bytes) with the given cost."""
    return bcrypt.hashpw(_password_bytes(password), bcrypt.gensalt(rounds=rounds)).decode("ascii")


def verify_password(password: str, password_hash: str) -> bool:
    """True when the password matches; constant-time inside bcrypt."""
    return bcrypt.checkpw(_password_bytes(password), password_hash.encode("ascii"))


@cache
def dummy_password_hash(rounds: int) -> str:
    """Verified against for unknown emails, so a login for a missing user costs the same time."""
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=rounds)).decode("ascii")


def sha256_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def digests_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("ascii"), b.encode("ascii"))


@dataclass(frozen=True)
class AccessClaims:
    user_id: int
    org_id: int
    role: Role


def encode_access_token(
    settings: Settings, *, user_id: int, org_id: int, role: Role, now: datetime | None = None
) -> str:
    """A short-lived HS256 JWT naming the user, their org and role."""
    now = now or utcnow()
    claims = {
        "sub": str(user_id),
        "org": org_id,
        "role": str(role),
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(minutes=settings.access_token_minutes),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "jti": uuid.uuid4().hex,
        "typ": "access",
    }
    return jwt.encode(claims, settings.signing_secret, algorithm=JWT_ALGORITHM)


def decode_access_token(settings: Settings, token: str) -> AccessClaims:
    """Verify signature, algorithm, expiry, issuer and audience; raise Unauthorized otherwise."""
    try:
        claims = jwt.decode(
            token,
            settings.signing_secret,
            algorithms=[JWT_ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
        if claims.get("typ") != "access":
            raise jwt.InvalidTokenError("not an access token")
        return AccessClaims(
            user_id=int(claims["sub"]), org_id=int(claims["org"]), role=Role(claims["role"])
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("access token expired", code="token_expired") from None
    except (jwt.InvalidTokenError, KeyError, ValueError, TypeError):
        raise Unauthorized("invalid access token", code="invalid_token") from None


def new_refresh_token() -> tuple[str, str]:
    """(plaintext, sha256) of a fresh opaque refresh token."""
    plain = REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)
    return plain, sha256_hex(plain)


def new_integration_token() -> tuple[str, str, str]:
    """(plaintext, display prefix, sha256) of a fresh integration token."""
    plain = INTEGRATION_TOKEN_PREFIX + secrets.token_urlsafe(32)
    prefix = plain[: len(INTEGRATION_TOKEN_PREFIX) + PREFIX_SHOWN_CHARS]
    return plain, prefix, sha256_hex(plain)
