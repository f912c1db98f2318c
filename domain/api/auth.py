"""Sign-in: password login, token refresh with rotation, sign-out, and who am I."""

from __future__ import annotations

from flask import Blueprint, current_app
from sqlalchemy import delete, select

from domain import audit
from domain.api.common import get_or_404
from domain.api.users import user_out
from domain.auth import client_address, current_user
from domain.context import config
from domain.models import LoginFailure, RefreshToken, User
from domain.security import verify_password
from grid_common import accounts
from grid_common.api import AUTHENTICATED, PUBLIC, route
from grid_common.db import db_session
from grid_common.errors import Unauthorized
from grid_common.schemas import LoginIn, RefreshIn, TokenPair, UserOut

bp = Blueprint("auth", __name__, url_prefix="/api/v1/auth")


def _issue_tokens(user: User) -> TokenPair:
    cfg = config()
    settings = accounts.TokenSettings(
        secret=current_app.config["SECRET_KEY"],
        issuer=cfg.name,
        access_ttl_s=cfg.access_token_ttl_s,
        refresh_ttl_s=cfg.refresh_token_ttl_s,
    )
    return accounts.issue_tokens(
        db_session(), RefreshToken, user_id=user.id, role=user.role, settings=settings
    )


def _check_rate_limit(email: str, address: str) -> None:
    cfg = config()
    accounts.check_login_rate(
        db_session(),
        LoginFailure,
        email=email,
        address=address,
        window_s=cfg.login_failure_window_s,
        per_account=cfg.max_login_failures_per_account,
        per_address=cfg.max_login_failures_per_address,
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
    user = check_credentials(body)
    tokens = _issue_tokens(user)
    db_session().commit()
    return tokens


def check_credentials(body: LoginIn, via: str = "api") -> User:
    """The active account these credentials open, its sign-in audited; the caller commits.

    A failure is counted towards the sign-in limits, audited and committed, then refused.
    """
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
    details = {"via": via} if via != "api" else None
    audit.append(
        session, actor=email, action="auth.login", target=email, address=address, details=details
    )
    return user


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
    user_id = accounts.redeem_refresh_token(session, RefreshToken, body.refresh_token)
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        raise Unauthorized("This account is deactivated.")
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
    accounts.revoke_refresh_token(
        session, RefreshToken, user_id=current_user().id, token=body.refresh_token
    )
    session.commit()


@route(bp, "/me", permission=AUTHENTICATED, summary="The signed-in account", response=UserOut)
def me() -> UserOut:
    return user_out(get_or_404(User, current_user().id, "user"))
