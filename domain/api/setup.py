"""First-run setup: create the owner once."""

from __future__ import annotations

from flask import Blueprint, current_app

from domain.accounts import create_first_owner
from domain.auth import client_address
from domain.users import user_out
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
