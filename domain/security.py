"""Password hashing, access tokens (JWT), refresh tokens and API keys."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# Verifying against this keeps an unknown account as slow as a wrong password.
_DUMMY_HASH = _hasher.hash("grid-dummy-password")

API_KEY_PREFIX = "grid_"
WORKER_TOKEN_PREFIX = "gridw_"
MIN_PASSWORD_LENGTH = 8


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def token_digest(token: str) -> str:
    """Tokens and keys are stored only as their sha256: a leaked table grants nothing."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_secret_token() -> str:
    return secrets.token_urlsafe(32)


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def new_worker_token() -> str:
    return WORKER_TOKEN_PREFIX + secrets.token_urlsafe(32)


def issue_access_token(secret: str, *, user_id: int, role: str, ttl_s: int, issuer: str) -> str:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "role": role,
        "iss": issuer,
        "iat": now,
        "exp": now + timedelta(seconds=ttl_s),
        "typ": "access",
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def decode_access_token(secret: str, token: str, *, issuer: str) -> dict[str, Any]:
    """Raises `jwt.InvalidTokenError` (expired, forged, wrong issuer) with a message."""
    claims: dict[str, Any] = jwt.decode(
        token,
        secret,
        algorithms=["HS256"],
        issuer=issuer,
        options={"require": ["exp", "sub", "iss"]},
    )
    if claims.get("typ") != "access":
        raise jwt.InvalidTokenError("not an access token")
    return claims
