"""Accounts: the owner or an admin creates them, changes roles, invites; invitees sign up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Blueprint
from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError

from domain import audit
from domain.api.common import get_or_404
from domain.audit import record
from domain.auth import client_address, current_user
from domain.models import Invite, User
from domain.permissions import ROLE_PERMISSIONS, Permission, Role
from domain.security import hash_password, new_secret_token, token_digest
from domain.settings import load_settings
from grid_common.api import PUBLIC, route
from grid_common.db import db_session
from grid_common.errors import Conflict, Forbidden, Unauthorized
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

INVITE_TTL = timedelta(days=7)


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        email=user.email,
        role=user.role,  # type: ignore[arg-type]
        is_active=user.is_active,
        created_at=user.created_at,
        permissions=sorted(p.value for p in ROLE_PERMISSIONS[Role(user.role)]),
    )


def _check_may_grant(role: str) -> None:
    if role == Role.OWNER and current_user().role != Role.OWNER:
        raise Forbidden("Only an owner may make another owner.")


def _add_user(email: str, password: str, role: str) -> User:
    session = db_session()
    if session.scalar(select(exists().where(User.email == email))):
        raise Conflict(f"An account for {email} already exists.", code="duplicate_email")
    user = User(email=email, role=role, password_hash=hash_password(password))
    session.add(user)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"An account for {email} already exists.", code="duplicate_email") from None
    return user


@route(bp, "/users", permission=Permission.MANAGE_USERS, summary="List accounts", response=UserList)
def list_users() -> UserList:
    users = db_session().scalars(select(User).order_by(User.id)).all()
    return UserList(items=[user_out(u) for u in users])


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
    _check_may_grant(body.role)
    user = _add_user(body.email.lower(), body.password, body.role)
    record(db_session(), "users.created", user.email, role=body.role)
    db_session().commit()
    return user_out(user)


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
    user = get_or_404(User, user_id, "user")
    if user.id == current_user().id:
        raise Forbidden("You cannot change your own role or deactivate yourself.")
    if user.role == Role.OWNER or body.role is not None:
        _check_may_grant(Role.OWNER if user.role == Role.OWNER else (body.role or user.role))
    changes: dict[str, object] = {}
    if body.role is not None and body.role != user.role:
        changes["role"] = [user.role, body.role]
        user.role = body.role
    if body.is_active is not None and body.is_active != user.is_active:
        changes["is_active"] = body.is_active
        user.is_active = body.is_active
    if changes:
        record(db_session(), "users.updated", user.email, **changes)
    db_session().commit()
    return user_out(user)


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
    _check_may_grant(body.role)
    token = new_secret_token()
    invite = Invite(
        email=body.email.lower(),
        role=body.role,
        token_hash=token_digest(token),
        created_by=current_user().id,
        expires_at=datetime.now(UTC) + INVITE_TTL,
    )
    session = db_session()
    session.add(invite)
    record(session, "users.invited", invite.email, role=body.role)
    session.commit()
    return InviteOut(
        id=invite.id,
        email=invite.email,
        role=invite.role,  # type: ignore[arg-type]
        expires_at=invite.expires_at,
        token=token,
    )


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
    session = db_session()
    email = body.email.lower()
    role = Role.DATA_SCIENTIST.value
    if body.invite_token:
        invite = session.scalar(
            select(Invite).where(Invite.token_hash == token_digest(body.invite_token))
        )
        now = datetime.now(UTC)
        if invite is None or invite.accepted_at is not None or invite.expires_at <= now:
            raise Unauthorized("Invite token is invalid, used or expired; ask for a new invite.")
        if invite.email != email:
            raise Forbidden("This invite was made for another email address.")
        invite.accepted_at, role = now, invite.role
    elif not load_settings(session).allow_signup:
        raise Forbidden("Sign-up needs an invite on this domain; ask its owner for one.")
    user = _add_user(email, body.password, role)
    audit.append(
        session, actor=email, action="users.signed_up", target=email, address=client_address()
    )
    session.commit()
    return user_out(user)
