"""What every node's accounts use: password hashing, access tokens (JWT), secret digests."""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# Verifying against this keeps an unknown account as slow as a wrong password.
_DUMMY_HASH = _hasher.hash("grid-dummy-password")


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
    """Raises `jwt.InvalidTokenError` (expired, forged, wrong issuer) with a message.

    A token's claims depend only on the secret, the issuer and the token itself, so a token
    verified once is not verified again until it expires (`_verified`): the signature check is
    a sizeable share of every authenticated request. Nothing about the account is kept here;
    callers read the account fresh on each request, so deactivation and role changes still
    take effect at once, and a rotated secret or another issuer never matches a kept entry.
    """
    key = (secret, issuer, token)
    claims = _verified.get(key)
    if claims is None:
        claims = _decode(secret, token, issuer=issuer)
        _verified.put(key, claims)
    elif claims["exp"] <= _now():
        raise jwt.ExpiredSignatureError("Signature has expired")
    return dict(claims)


def _decode(secret: str, token: str, *, issuer: str) -> dict[str, Any]:
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


def _now() -> float:
    return time.time()


class _VerifiedTokens:
    """Claims of access tokens whose signature and issuer were checked, oldest dropped first.

    Only tokens that passed are kept, so forged or garbled ones cost a full check each time
    and cannot push good ones out faster than good ones arrive.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._claims: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str]) -> dict[str, Any] | None:
        return self._claims.get(key)

    def put(self, key: tuple[str, str, str], claims: dict[str, Any]) -> None:
        with self._lock:
            if len(self._claims) >= self.size:
                del self._claims[next(iter(self._claims))]  # dicts keep insertion order
            self._claims[key] = claims

    def clear(self) -> None:
        with self._lock:
            self._claims.clear()


# A few thousand callers' tokens, at about 1 KiB each.
_verified = _VerifiedTokens(4096)


def read_or_create_secret(path: Path) -> str:
    """A random secret kept in a 0600 file, made on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32))
    return path.read_text().strip()
