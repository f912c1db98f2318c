"""Sign-in mechanics any node's accounts share: token pairs, refresh rotation, login limits.

Each node passes its own tables: a refresh-token model (`user_id`, `token_hash`,
`expires_at`, `revoked_at`) and a login-failure model (`email`, `address`, `at`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import request
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from grid_common.errors import TooManyRequests, Unauthorized
from grid_common.schemas import TokenPair
from grid_common.security import issue_access_token, new_secret_token, token_digest


@dataclass(frozen=True)
class TokenSettings:
    secret: str
    issuer: str
    access_ttl_s: int
    refresh_ttl_s: int


def bearer_token(what: str = "access token") -> str:
    """The token of the request's `Authorization: Bearer …` header; 401 naming what to send."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise Unauthorized(f"Sign in first: send 'Authorization: Bearer <{what}>'.")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Malformed Authorization header; expected 'Bearer <token>'.")
    return token.strip()


def issue_tokens(
    session: Session, refresh_model: Any, *, user_id: int, role: str, settings: TokenSettings
) -> TokenPair:
    """A new access token and a refresh token (stored only as its digest)."""
    refresh = new_secret_token()
    session.add(
        refresh_model(
            user_id=user_id,
            token_hash=token_digest(refresh),
            expires_at=datetime.now(UTC) + timedelta(seconds=settings.refresh_ttl_s),
        )
    )
    access = issue_access_token(
        settings.secret,
        user_id=user_id,
        role=role,
        ttl_s=settings.access_ttl_s,
        issuer=settings.issuer,
    )
    return TokenPair(access_token=access, refresh_token=refresh, expires_in=settings.access_ttl_s)


def check_login_rate(
    session: Session,
    failure_model: Any,
    *,
    email: str,
    address: str,
    window_s: int,
    per_account: int,
    per_address: int,
) -> None:
    """429 once an account or an address failed too often within the window."""
    since = datetime.now(UTC) - timedelta(seconds=window_s)
    count = select(func.count()).select_from(failure_model).where(failure_model.at > since)
    by_account = session.scalar(count.where(failure_model.email == email)) or 0
    by_address = session.scalar(count.where(failure_model.address == address)) or 0
    if by_account >= per_account or by_address >= per_address:
        raise TooManyRequests(
            "Too many failed sign-ins; wait a few minutes and try again.",
            headers={"Retry-After": str(window_s)},
        )


def redeem_refresh_token(session: Session, refresh_model: Any, token: str) -> int:
    """Revoke a refresh token and return its account id; a reused one ends every session.

    The caller commits (after issuing the new pair in the same transaction).
    """
    row = session.scalar(
        select(refresh_model).where(refresh_model.token_hash == token_digest(token))
    )
    now = datetime.now(UTC)
    if row is None:
        raise Unauthorized("Refresh token is invalid; sign in again.")
    if row.revoked_at is not None:
        # A rotated token coming back means it was copied: end every session of that account.
        session.execute(
            update(refresh_model)
            .where(refresh_model.user_id == row.user_id, refresh_model.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        session.commit()
        raise Unauthorized("Refresh token was already used; sign in again.")
    if row.expires_at <= now:
        raise Unauthorized("Refresh token expired; sign in again.")
    row.revoked_at = now
    user_id: int = row.user_id
    return user_id


def revoke_refresh_token(session: Session, refresh_model: Any, *, user_id: int, token: str) -> None:
    session.execute(
        update(refresh_model)
        .where(
            refresh_model.token_hash == token_digest(token),
            refresh_model.user_id == user_id,
            refresh_model.revoked_at.is_(None),
        )
        .values(revoked_at=datetime.now(UTC))
    )
