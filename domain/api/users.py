"""Accounts: the owner or an admin creates them, changes roles, invites; invitees sign up."""

from __future__ import annotations

from flask import Blueprint

from domain import users
from domain.auth import current_user
from domain.permissions import Permission
from grid_common.api import PUBLIC, route
from grid_common.db import db_session
from grid_common.schemas import (
    InviteCreate,
    InviteOut,
    SignupIn,
    UserCreate,
    UserList,
    UserOut,
    UserUpdate,
)

bp = Blueprint("users", __name__, url_prefix="/api/v1")


@route(bp, "/users", permission=Permission.MANAGE_USERS, summary="List accounts", response=UserList)
def list_users() -> UserList:
    return users.list_users(db_session())


@route(
    bp,
    "/users",
    methods=["POST"],
    permission=Permission.MANAGE_USERS,
    summary="Create an account with a role",
    body=UserCreate,
    response=UserOut,
    status=201,
)
def create_user(body: UserCreate) -> UserOut:
    return users.create_user(db_session(), current_user(), body)


@route(
    bp,
    "/users/<int:user_id>",
    methods=["PATCH"],
    permission=Permission.MANAGE_USERS,
    summary="Change an account's role or deactivate it",
    body=UserUpdate,
    response=UserOut,
)
def update_user(user_id: int, body: UserUpdate) -> UserOut:
    return users.update_user(db_session(), current_user(), user_id, body)


@route(
    bp,
    "/invites",
    methods=["POST"],
    permission=Permission.MANAGE_USERS,
    summary="Invite someone by email; they sign up with the returned token",
    body=InviteCreate,
    response=InviteOut,
    status=201,
)
def create_invite(body: InviteCreate) -> InviteOut:
    return users.create_invite(db_session(), current_user(), body)


@route(
    bp,
    "/signup",
    methods=["POST"],
    permission=PUBLIC,
    summary="Create your account with an invite token (or freely, if the owner allows sign-up)",
    body=SignupIn,
    response=UserOut,
    status=201,
)
def signup(body: SignupIn) -> UserOut:
    return users.signup(db_session(), body)
