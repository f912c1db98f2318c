"""Sign-in mechanics any node's accounts share: token pairs, refresh rotation, login limits.

Each node defines its own two tables from the mixins here, on its own declarative base
(`class RefreshToken(RefreshTokenMixin, Base)`, naming its accounts table), and passes them in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from flask import request
from sqlalchemy import ForeignKey, Index, String, func, insert, select, update
from sqlalchemy.orm import Mapped, Session, declared_attr, mapped_column

from grid_common.db import utcnow
from grid_common.errors import TooManyRequests, Unauthorized
from grid_common.schemas import TokenPair
from grid_common.security import issue_access_token, new_secret_token, token_digest


class RefreshTokenMixin:
    """A refresh token, stored only as its digest; `accounts_table` names whose account it is."""

    __tablename__ = "refresh_tokens"
    accounts_table: ClassVar[str]

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @declared_attr
    def user_id(cls) -> Mapped[int]:
        return mapped_column(ForeignKey(f"{cls.accounts_table}.id", ondelete="CASCADE"), index=True)


class LoginFailureMixin:
    """One failed sign-in, counted per account and per address within the limits' window."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Index, ...]:
        return (
            Index("ix_login_failures_email_at", "email", "at"),
            Index("ix_login_failures_address_at", "address", "at"),
        )


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
    session: Session,
    refresh_model: type[RefreshTokenMixin],
    *,
    user_id: int,
    role: str,
    settings: TokenSettings,
) -> TokenPair:
    """A new access token and a refresh token (stored only as its digest)."""
    refresh = new_secret_token()
    session.execute(
        insert(refresh_model).values(
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
    failure_model: type[LoginFailureMixin],
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


def redeem_refresh_token(
    session: Session, refresh_model: type[RefreshTokenMixin], token: str
) -> int:
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


def revoke_refresh_token(
    session: Session, refresh_model: type[RefreshTokenMixin], *, user_id: int, token: str
) -> None:
    session.execute(
        update(refresh_model)
        .where(
            refresh_model.token_hash == token_digest(token),
            refresh_model.user_id == user_id,
            refresh_model.revoked_at.is_(None),
        )
        .values(revoked_at=datetime.now(UTC))
    )
