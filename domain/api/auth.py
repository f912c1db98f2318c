"""Sign-in: password login, token refresh with rotation, sign-out, and who am I."""

from __future__ import annotations

from flask import Blueprint

from domain.accounts import check_credentials, issue_tokens
from domain.api.common import get_or_404
from domain.auth import current_user
from domain.models import RefreshToken, User
from domain.users import user_out
from grid_common import accounts
from grid_common.api import AUTHENTICATED, PUBLIC, route
from grid_common.db import db_session
from grid_common.errors import Unauthorized
from grid_common.schemas import LoginIn, RefreshIn, TokenPair, UserOut

bp = Blueprint("auth", __name__, url_prefix="/api/v1/auth")


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
    tokens = issue_tokens(user)
    db_session().commit()
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
    user_id = accounts.redeem_refresh_token(session, RefreshToken, body.refresh_token)
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        raise Unauthorized("This account is deactivated.")
    tokens = issue_tokens(user)
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
