"""First-run setup: create the owner once."""

from __future__ import annotations

from flask import Blueprint, current_app
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from domain import audit
from domain.api.users import user_out
from domain.auth import client_address
from domain.models import User
from domain.permissions import Role
from domain.security import hash_password
from grid_common.api import PUBLIC, route
from grid_common.db import db_session
from grid_common.errors import Conflict
from grid_common.schemas import SetupIn, UserOut

bp = Blueprint("setup", __name__, url_prefix="/api/v1")


@route(
    bp,
    "/setup",
    methods=["POST"],
    permission=PUBLIC,
    summary="Create the owner account (only while none exists)",
    body=SetupIn,
    response=UserOut,
    status=201,
    before_setup=True,
)
def setup(body: SetupIn) -> UserOut:
    owner = create_first_owner(
        db_session(), body.email, body.password, actor=body.email.lower(), address=client_address()
    )
    if owner is None:
        raise Conflict("This domain already has an owner; sign in instead.", code="already_set_up")
    current_app.extensions["grid_set_up"] = True
    return user_out(owner)


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
