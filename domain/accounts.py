"""Domain accounts: the first owner, checking a sign-in against its limits, issuing tokens."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from domain import audit
from domain.auth import client_address
from domain.context import config
from domain.models import LoginFailure, RefreshToken, User
from domain.permissions import Role
from domain.security import hash_password, verify_password
from grid_common import accounts
from grid_common.db import db_session
from grid_common.errors import Unauthorized
from grid_common.schemas import LoginIn, TokenPair


def issue_tokens(user: User) -> TokenPair:
    """A fresh access and refresh token pair for `user`; the caller commits."""
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


def create_first_owner(
    session: Session, email: str, password: str, *, actor: str, address: str = ""
) -> User | None:
    """Create the owner unless one exists (then None); concurrent callers take turns."""
    password_hash = hash_password(password)  # slow on purpose: hash before taking the lock
    email = email.strip().lower()
    # Appending to the audit chain locks its head row, so the check below cannot race.
    audit.append(session, actor=actor, action="setup.owner_created", target=email, address=address)
    if session.scalar(select(exists().where(User.role == Role.OWNER.value))):
        session.rollback()
        return None
    owner = User(email=email, role=Role.OWNER.value, password_hash=password_hash)
    session.add(owner)
    session.commit()
    return owner


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
