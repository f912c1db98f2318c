"""Sign-in: password login, token refresh with rotation, sign-out, and who am I."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Blueprint, current_app
from sqlalchemy import delete, func, select, update

from domain import audit
from domain.api.common import config, get_or_404
from domain.api.users import user_out
from domain.auth import client_address, current_user
from domain.models import LoginFailure, RefreshToken, User
from domain.security import (
    issue_access_token,
    new_secret_token,
    token_digest,
    verify_password,
)
from grid_common.api import AUTHENTICATED, PUBLIC, route
from grid_common.db import db_session
from grid_common.errors import TooManyRequests, Unauthorized
from grid_common.schemas import LoginIn, RefreshIn, TokenPair, UserOut

bp = Blueprint("auth", __name__, url_prefix="/api/v1/auth")


def _issue_tokens(user: User) -> TokenPair:
    cfg = config()
    refresh = new_secret_token()
    db_session().add(
        RefreshToken(
            user_id=user.id,
            token_hash=token_digest(refresh),
            expires_at=datetime.now(UTC) + timedelta(seconds=cfg.refresh_token_ttl_s),
        )
    )
    access = issue_access_token(
        current_app.config["SECRET_KEY"],
        user_id=user.id,
        role=user.role,
        ttl_s=cfg.access_token_ttl_s,
        issuer=cfg.name,
    )
    return TokenPair(access_token=access, refresh_token=refresh, expires_in=cfg.access_token_ttl_s)


def _check_rate_limit(email: str, address: str) -> None:
    cfg = config()
    since = datetime.now(UTC) - timedelta(seconds=cfg.login_failure_window_s)
    session = db_session()
    count = select(func.count()).select_from(LoginFailure).where(LoginFailure.at > since)
    by_account = session.scalar(count.where(LoginFailure.email == email)) or 0
    by_address = session.scalar(count.where(LoginFailure.address == address)) or 0
    if (
        by_account >= cfg.max_login_failures_per_account
        or by_address >= cfg.max_login_failures_per_address
    ):
        raise TooManyRequests(
            "Too many failed sign-ins; wait a few minutes and try again.",
            headers={"Retry-After": str(cfg.login_failure_window_s)},
        )


@route(
    bp,
    "/login",
    methods=["POST"],
    permission=PUBLIC,
    summary="Exchange email and password for an access and a refresh token",
    body=LoginIn,
    response=TokenPair,
)
def login(body: LoginIn) -> TokenPair:
    session = db_session()
    email, address = body.email.lower(), client_address()
    _check_rate_limit(email, address)
    user = session.scalar(select(User).where(User.email == email))
    if user is None or not verify_password(user.password_hash, body.password) or not user.is_active:
        session.add(LoginFailure(email=email, address=address))
        audit.append(
            session, actor=email, action="auth.login_failed", target=email, address=address
        )
        session.commit()
        raise Unauthorized("Wrong email or password.", code="bad_credentials")
    session.execute(delete(LoginFailure).where(LoginFailure.email == email))
    tokens = _issue_tokens(user)
    audit.append(session, actor=email, action="auth.login", target=email, address=address)
    session.commit()
    return tokens


@route(
    bp,
    "/refresh",
    methods=["POST"],
    permission=PUBLIC,
    summary="Trade a refresh token for a new token pair (the old refresh token stops working)",
    body=RefreshIn,
    response=TokenPair,
)
def refresh(body: RefreshIn) -> TokenPair:
    session = db_session()
    token = session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == token_digest(body.refresh_token))
    )
    now = datetime.now(UTC)
    if token is None:
        raise Unauthorized("Refresh token is invalid; sign in again.")
    if token.revoked_at is not None:
        # A rotated token coming back means it was copied: end every session of that user.
        session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == token.user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        session.commit()
        raise Unauthorized("Refresh token was already used; sign in again.")
    if token.expires_at <= now:
        raise Unauthorized("Refresh token expired; sign in again.")
    user = session.get(User, token.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("This account is deactivated.")
    token.revoked_at = now
    tokens = _issue_tokens(user)
    session.commit()
    return tokens


@route(
    bp,
    "/logout",
    methods=["POST"],
    permission=AUTHENTICATED,
    summary="Revoke a refresh token",
    body=RefreshIn,
    status=204,
)
def logout(body: RefreshIn) -> None:
    session = db_session()
    session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.token_hash == token_digest(body.refresh_token),
            RefreshToken.user_id == current_user().id,
            RefreshToken.revoked_at.is_(None),
        )
        .values(revoked_at=datetime.now(UTC))
    )
    session.commit()


@route(bp, "/me", permission=AUTHENTICATED, summary="The signed-in account", response=UserOut)
def me() -> UserOut:
    return user_out(get_or_404(User, current_user().id, "user"))
