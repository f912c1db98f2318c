"""Accounts: first-run setup, sign-in with refresh rotation, operators and data scientists."""

from __future__ import annotations

from flask import Blueprint, current_app
from sqlalchemy import delete, exists, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from grid_common import accounts
from grid_common.api import AUTHENTICATED, PUBLIC, route
from grid_common.db import db_session
from grid_common.errors import Conflict, Unauthorized
from grid_common.network_schemas import AccountCreate
from grid_common.schemas import LoginIn, RefreshIn, SetupIn, TokenPair, UserList, UserOut
from grid_common.security import hash_password, verify_password
from network.auth import OPERATOR, ROLE_PERMISSIONS, Permission, client_address, current_operator
from network.context import config
from network.models import LoginFailure, Operator, RefreshToken

bp = Blueprint("accounts", __name__, url_prefix="/api/v1")

_SETUP_LOCK_ID = 0x6772_6E73


def operator_out(operator: Operator) -> UserOut:
    return UserOut(
        id=operator.id,
        email=operator.email,
        role=operator.role,  # type: ignore[arg-type]
        is_active=operator.is_active,
        created_at=operator.created_at,
        permissions=sorted(p.value for p in ROLE_PERMISSIONS[operator.role]),
    )


def _token_settings() -> accounts.TokenSettings:
    cfg = config()
    return accounts.TokenSettings(
        secret=current_app.config["SECRET_KEY"],
        issuer=cfg.name,
        access_ttl_s=cfg.access_token_ttl_s,
        refresh_ttl_s=cfg.refresh_token_ttl_s,
    )


def _tokens_for(session: Session, operator: Operator) -> TokenPair:
    return accounts.issue_tokens(
        session,
        RefreshToken,
        user_id=operator.id,
        role=operator.role,
        settings=_token_settings(),
    )


def add_operator(session: Session, email: str, password: str, role: str = OPERATOR) -> Operator:
    email = email.strip().lower()
    if session.scalar(select(exists().where(Operator.email == email))):
        raise Conflict(f"An account {email} already exists.", code="duplicate_email")
    operator = Operator(email=email, role=role, password_hash=hash_password(password))
    session.add(operator)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"An account {email} already exists.", code="duplicate_email") from None
    return operator


def create_first_operator(session: Session, email: str, password: str) -> Operator | None:
    """The first operator, unless one exists (then None); concurrent callers take turns.

    SQLite transactions already begin with the write lock; PostgreSQL takes an advisory one.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _SETUP_LOCK_ID})
    if session.scalar(select(exists().where(Operator.id.is_not(None)))):
        return None
    try:
        return add_operator(session, email, password)
    except Conflict:
        return None


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
    tokens = _tokens_for(session, check_credentials(body))
    session.commit()
    return tokens


def check_credentials(body: LoginIn) -> Operator:
    """The active account these credentials open; failures count towards the sign-in limits."""
    cfg = config()
    session = db_session()
    email, address = body.email.lower(), client_address()
    accounts.check_login_rate(
        session,
        LoginFailure,
        email=email,
        address=address,
        window_s=cfg.login_failure_window_s,
        per_account=cfg.max_login_failures_per_account,
        per_address=cfg.max_login_failures_per_address,
    )
    operator = session.scalar(select(Operator).where(Operator.email == email))
    if (
        operator is None
        or not verify_password(operator.password_hash, body.password)
        or not operator.is_active
    ):
        session.add(LoginFailure(email=email, address=address))
        session.commit()
        raise Unauthorized("Wrong email or password.", code="bad_credentials")
    session.execute(delete(LoginFailure).where(LoginFailure.email == email))
    return operator


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
    tokens = _tokens_for(session, operator)
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
