"""Who is calling: bearer tokens and API keys resolved to a user, and every route's access check."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from flask import Flask, current_app, g, request
from sqlalchemy import bindparam, exists, select, update

from domain.context import config
from domain.models import ApiKey, RefreshToken, User, Worker
from domain.permissions import Permission, Role, has_permission
from domain.security import (
    API_KEY_PREFIX,
    WORKER_TOKEN_PREFIX,
    decode_access_token,
    token_digest,
)
from grid_common.accounts import bearer_token
from grid_common.api import AUTHENTICATED, PUBLIC, SIGNED, route_spec
from grid_common.console import SignInRequired, is_page, session_user_id
from grid_common.db import db_session
from grid_common.errors import Forbidden, ServiceUnavailable, Unauthorized
from grid_common.signing import verify_flask_request

SETUP_HINT = (
    "This domain has no owner yet. Set GRID_OWNER_EMAIL and GRID_OWNER_PASSWORD before the "
    "first start, or POST {email, password} to /api/v1/setup once."
)
WORKER = "worker"
"""Access marker: only a registered worker, with its unrevoked token, may call the route."""
_API_KEY_TOUCH_INTERVAL = timedelta(minutes=1)
_USERS = User.__table__.c
_API_KEYS = ApiKey.__table__
_KEYS = _API_KEYS.c
# Prebuilt Core selects: they run on every request, where building a statement or going
# through the ORM costs several times more than the query itself.
_PRINCIPAL = select(_USERS.id, _USERS.email, _USERS.role, _USERS.is_active)
_PRINCIPAL_BY_ID = _PRINCIPAL.where(_USERS.id == bindparam("user_id"))
_PRINCIPAL_BY_KEY = (
    _PRINCIPAL.add_columns(_KEYS.id.label("key_id"), _KEYS.last_used_at)
    .join_from(User.__table__, _API_KEYS, _KEYS.user_id == _USERS.id)
    .where(_KEYS.key_hash == bindparam("key_hash"), _KEYS.revoked_at.is_(None))
)
_WORKERS = Worker.__table__.c
_WORKER_BY_TOKEN = select(_WORKERS.id, _WORKERS.name).where(
    _WORKERS.token_digest == bindparam("digest"), _WORKERS.revoked_at.is_(None)
)


@dataclass(frozen=True)
class Principal:
    """The caller, as read fresh from the database on each request."""

    id: int
    email: str
    role: str
    is_active: bool


@dataclass(frozen=True)
class WorkerPrincipal:
    """A worker calling the worker API."""

    id: int
    name: str


def current_user() -> Principal:
    user: Principal = g.user
    return user


def current_worker() -> WorkerPrincipal:
    worker: WorkerPrincipal = g.worker
    return worker


def client_address() -> str:
    return request.remote_addr or ""


def is_set_up(app: Flask) -> bool:
    if app.extensions.get("grid_set_up"):
        return True
    done = db_session().scalar(select(exists().where(User.role == Role.OWNER.value)))
    if done:
        app.extensions["grid_set_up"] = True
    return bool(done)


def _bearer_token() -> str:
    return bearer_token("access token or API key")


def _user_from_api_key(key: str) -> Principal:
    connection = db_session().connection()
    row = connection.execute(_PRINCIPAL_BY_KEY, {"key_hash": token_digest(key)}).first()
    if row is None:
        raise Unauthorized("API key is unknown or revoked.")
    now = datetime.now(UTC)
    if row.last_used_at is None or now - row.last_used_at > _API_KEY_TOUCH_INTERVAL:
        connection.execute(update(ApiKey).where(_KEYS.id == row.key_id).values(last_used_at=now))
        db_session().commit()
    return Principal(row.id, row.email, row.role, row.is_active)


def _user_from_access_token(token: str) -> Principal:
    app = current_app
    try:
        claims = decode_access_token(app.config["SECRET_KEY"], token, issuer=config().name)
    except jwt.ExpiredSignatureError:
        raise Unauthorized(
            "Access token expired; refresh it at /api/v1/auth/refresh.", code="token_expired"
        ) from None
    except jwt.InvalidTokenError:
        raise Unauthorized("Access token is invalid.") from None
    user_id = int(claims["sub"])
    row = db_session().connection().execute(_PRINCIPAL_BY_ID, {"user_id": user_id}).first()
    if row is None:
        raise Unauthorized("Access token is invalid.")
    return Principal(row.id, row.email, row.role, row.is_active)


def authenticate_worker() -> WorkerPrincipal:
    token = _bearer_token()
    if not token.startswith(WORKER_TOKEN_PREFIX):
        raise Forbidden(
            "Only workers may call this endpoint, with a token from `grid workers add`."
        )
    row = db_session().connection().execute(_WORKER_BY_TOKEN, {"digest": token_digest(token)})
    found = row.first()
    if found is None:
        raise Unauthorized("Worker token is unknown or revoked.")
    return WorkerPrincipal(found.id, found.name)


def authenticate() -> Principal:
    token = _bearer_token()
    if token.startswith(WORKER_TOKEN_PREFIX):
        raise Forbidden("A worker token only opens the worker API.")
    if token.startswith(API_KEY_PREFIX):
        user = _user_from_api_key(token)
    else:
        user = _user_from_access_token(token)
    if not user.is_active:
        raise Unauthorized("This account is deactivated.")
    return user


def console_user() -> Principal:
    """The account signed in to the console with this request's session cookie."""
    user_id = session_user_id(db_session(), RefreshToken)
    row = db_session().connection().execute(_PRINCIPAL_BY_ID, {"user_id": user_id}).first()
    if row is None or not row.is_active:
        raise SignInRequired("This account is deactivated.")
    return Principal(row.id, row.email, row.role, row.is_active)


def authorize_request() -> None:
    """Runs before every view: setup gate, then authentication, then the route's permission."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if request.endpoint is None:
        return  # Flask answers 404/405 next
    spec = route_spec(app, request.endpoint)
    if spec is None:
        raise Forbidden(f"Endpoint {request.endpoint!r} declares no permission; access refused.")
    if not spec.before_setup and not is_set_up(app):
        raise ServiceUnavailable(SETUP_HINT, code="setup_required")
    if spec.permission == PUBLIC:
        return
    if spec.permission == WORKER:
        g.worker = authenticate_worker()
        return
    if spec.permission == SIGNED:  # another node: its own checks decide what it may ask
        g.node = verify_flask_request()
        return
    # A console page trusts only its session cookie, an API route only its bearer token.
    g.user = console_user() if is_page(spec) else authenticate()
    if spec.permission == AUTHENTICATED:
        return
    permission = Permission(spec.permission)
    if not has_permission(g.user.role, permission):
        raise Forbidden(f"Your role ({g.user.role}) lacks the '{permission}' permission.")
