"""First-run setup: create the owner once."""

from __future__ import annotations

from flask import Blueprint, current_app
from sqlalchemy import exists, select

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
    session = db_session()
    if session.scalar(select(exists().where(User.role == Role.OWNER.value))):
        raise Conflict("This domain already has an owner; sign in instead.", code="already_set_up")
    owner = User(
        email=body.email.lower(), role=Role.OWNER.value, password_hash=hash_password(body.password)
    )
    session.add(owner)
    audit.append(
        session,
        actor=owner.email,
        action="setup.owner_created",
        target=owner.email,
        address=client_address(),
    )
    session.commit()
    current_app.extensions["grid_set_up"] = True
    return user_out(owner)
