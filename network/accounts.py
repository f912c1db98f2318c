"""Network accounts: the first operator, adding accounts, checking a sign-in, issuing tokens."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import delete, exists, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from grid_common import accounts
from grid_common.db import db_session
from grid_common.errors import Conflict, Unauthorized
from grid_common.schemas import LoginIn, TokenPair
from grid_common.security import hash_password, verify_password
from network.auth import OPERATOR, client_address
from network.context import config
from network.models import LoginFailure, Operator, RefreshToken

_SETUP_LOCK_ID = 0x6772_6E73


def _token_settings() -> accounts.TokenSettings:
    cfg = config()
    return accounts.TokenSettings(
        secret=current_app.config["SECRET_KEY"],
        issuer=cfg.name,
        access_ttl_s=cfg.access_token_ttl_s,
        refresh_ttl_s=cfg.refresh_token_ttl_s,
    )


def tokens_for(session: Session, operator: Operator) -> TokenPair:
    """A fresh access and refresh token pair for `operator`; the caller commits."""
    return accounts.issue_tokens(
        session,
        RefreshToken,
        user_id=operator.id,
        role=operator.role,
        settings=_token_settings(),
    )


def add_operator(session: Session, email: str, password: str, role: str = OPERATOR) -> Operator:
    """A new account (operator or data scientist), committed; 409 when the email is taken."""
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
