"""Accounts: first-run setup, sign-in with refresh rotation, operators and data scientists."""

from __future__ import annotations

from flask import Blueprint, current_app
from sqlalchemy import select

from grid_common import accounts
from grid_common.api import AUTHENTICATED, PUBLIC, route
from grid_common.db import db_session
from grid_common.errors import Conflict, Unauthorized
from grid_common.network_schemas import AccountCreate
from grid_common.schemas import LoginIn, RefreshIn, SetupIn, TokenPair, UserList, UserOut
from network.accounts import add_operator, check_credentials, create_first_operator, tokens_for
from network.auth import ROLE_PERMISSIONS, Permission, current_operator
from network.models import Operator, RefreshToken

bp = Blueprint("accounts", __name__, url_prefix="/api/v1")


def operator_out(operator: Operator) -> UserOut:
    return UserOut(
        id=operator.id,
        email=operator.email,
        role=operator.role,  # type: ignore[arg-type]
        is_active=operator.is_active,
        created_at=operator.created_at,
        permissions=sorted(p.value for p in ROLE_PERMISSIONS[operator.role]),
    )


@route(
    bp,
    "/setup",
    methods=["POST"],
    permission=PUBLIC,
    summary="Create the first operator account (only while none exists)",
    body=SetupIn,
    response=UserOut,
    status=201,
)
def setup(body: SetupIn) -> UserOut:
    operator = create_first_operator(db_session(), body.email, body.password)
    if operator is None:
        raise Conflict("This network already has an operator; sign in.", code="already_set_up")
    current_app.extensions["grid_set_up"] = True
    return operator_out(operator)


@route(
    bp,
    "/auth/login",
    methods=["POST"],
    permission=PUBLIC,
    summary="Exchange an operator's email and password for an access and a refresh token",
    body=LoginIn,
    response=TokenPair,
)
def login(body: LoginIn) -> TokenPair:
    session = db_session()
    tokens = tokens_for(session, check_credentials(body))
    session.commit()
    return tokens


@route(
    bp,
    "/auth/refresh",
    methods=["POST"],
    permission=PUBLIC,
    summary="Trade a refresh token for a new token pair (the old refresh token stops working)",
    body=RefreshIn,
    response=TokenPair,
)
def refresh(body: RefreshIn) -> TokenPair:
    session = db_session()
    operator_id = accounts.redeem_refresh_token(session, RefreshToken, body.refresh_token)
    operator = session.get(Operator, operator_id)
    if operator is None or not operator.is_active:
        raise Unauthorized("This operator account is deactivated.")
    tokens = tokens_for(session, operator)
    session.commit()
    return tokens


@route(
    bp,
    "/auth/logout",
    methods=["POST"],
    permission=AUTHENTICATED,
    summary="Revoke a refresh token",
    body=RefreshIn,
    status=204,
)
def logout(body: RefreshIn) -> None:
    session = db_session()
    accounts.revoke_refresh_token(
        session, RefreshToken, user_id=current_operator().id, token=body.refresh_token
    )
    session.commit()


@route(bp, "/auth/me", permission=AUTHENTICATED, summary="The signed-in operator", response=UserOut)
def me() -> UserOut:
    operator = db_session().get(Operator, current_operator().id)
    assert operator is not None  # authentication just loaded it
    return operator_out(operator)


@route(
    bp,
    "/accounts",
    permission=Permission.MANAGE_ACCOUNTS,
    summary="The network's accounts: operators and data scientists",
    response=UserList,
)
def list_operators() -> UserList:
    operators = db_session().scalars(select(Operator).order_by(Operator.id))
    return UserList(items=[operator_out(o) for o in operators])


@route(
    bp,
    "/accounts",
    methods=["POST"],
    permission=Permission.MANAGE_ACCOUNTS,
    summary="Add an operator or a data scientist (who may submit federated jobs)",
    body=AccountCreate,
    response=UserOut,
    status=201,
)
def create_account(body: AccountCreate) -> UserOut:
    return operator_out(add_operator(db_session(), body.email, body.password, body.role))
