"""Accounts: creating them with a role, changing roles, inviting; invitees sign up.

Only an owner may make, invite or change an owner; nobody changes their own account here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from domain import audit
from domain.audit import record
from domain.auth import Principal, client_address
from domain.models import Invite, User
from domain.permissions import ROLE_PERMISSIONS, Role
from domain.security import hash_password, new_secret_token, token_digest
from domain.settings import load_settings
from grid_common.errors import Conflict, Forbidden, NotFound, Unauthorized
from grid_common.schemas import (
    InviteCreate,
    InviteOut,
    SignupIn,
    UserCreate,
    UserList,
    UserOut,
    UserUpdate,
)

INVITE_TTL = timedelta(days=7)


def user_out(user: User) -> UserOut:
    """An account as the API shows it, with the permissions its role holds."""
    return UserOut(
        id=user.id,
        email=user.email,
        role=user.role,  # type: ignore[arg-type]
        is_active=user.is_active,
        created_at=user.created_at,
        permissions=sorted(p.value for p in ROLE_PERMISSIONS[Role(user.role)]),
    )


def _check_may_grant(actor: Principal, role: str) -> None:
    if role == Role.OWNER and actor.role != Role.OWNER:
        raise Forbidden("Only an owner may make another owner.")


def _add_user(session: Session, email: str, password: str, role: str) -> User:
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


def list_users(session: Session) -> UserList:
    """Every account, in the order they were made."""
    users = session.scalars(select(User).order_by(User.id)).all()
    return UserList(items=[user_out(u) for u in users])


def create_user(session: Session, actor: Principal, body: UserCreate) -> UserOut:
    """An account made by `actor` (only an owner makes an owner); commits."""
    _check_may_grant(actor, body.role)
    user = _add_user(session, body.email.lower(), body.password, body.role)
    record(session, "users.created", user.email, role=body.role)
    session.commit()
    return user_out(user)


def update_user(session: Session, actor: Principal, user_id: int, body: UserUpdate) -> UserOut:
    """Change another account's role or active state; only an owner touches an owner. Commits."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"No user with id {user_id}.")
    if user.id == actor.id:
        raise Forbidden("You cannot change your own role or deactivate yourself.")
    if user.role == Role.OWNER or body.role is not None:
        _check_may_grant(actor, Role.OWNER if user.role == Role.OWNER else (body.role or user.role))
    changes: dict[str, object] = {}
    if body.role is not None and body.role != user.role:
        changes["role"] = [user.role, body.role]
        user.role = body.role
    if body.is_active is not None and body.is_active != user.is_active:
        changes["is_active"] = body.is_active
        user.is_active = body.is_active
    if changes:
        record(session, "users.updated", user.email, **changes)
    session.commit()
    return user_out(user)


def create_invite(session: Session, actor: Principal, body: InviteCreate) -> InviteOut:
    """An invite by `actor` for one email and role; the answer holds its token once. Commits."""
    _check_may_grant(actor, body.role)
    token = new_secret_token()
    invite = Invite(
        email=body.email.lower(),
        role=body.role,
        token_hash=token_digest(token),
        created_by=actor.id,
        expires_at=datetime.now(UTC) + INVITE_TTL,
    )
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


def signup(session: Session, body: SignupIn) -> UserOut:
    """Create an account with an invite's role, or as a data scientist where the owner allows
    sign-up without one; commits."""
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
    user = _add_user(session, email, body.password, role)
    audit.append(
        session, actor=email, action="users.signed_up", target=email, address=client_address()
    )
    session.commit()
    return user_out(user)
