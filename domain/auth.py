"""Who is calling: bearer tokens and API keys resolved to a user, and every route's access check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
from flask import Flask, current_app, g, request
from sqlalchemy import exists, select

from domain.models import ApiKey, User
from domain.permissions import Permission, Role, has_permission
from domain.security import API_KEY_PREFIX, decode_access_token, token_digest
from grid_common.api import AUTHENTICATED, PUBLIC, route_spec
from grid_common.db import db_session
from grid_common.errors import Forbidden, ServiceUnavailable, Unauthorized

SETUP_HINT = (
    "This domain has no owner yet. Set GRID_OWNER_EMAIL and GRID_OWNER_PASSWORD before the "
    "first start, or POST {email, password} to /api/v1/setup once."
)
_API_KEY_TOUCH_INTERVAL = timedelta(minutes=1)


def current_user() -> User:
    user: User = g.user
    return user


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
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise Unauthorized("Sign in first: send 'Authorization: Bearer <access token or API key>'.")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Malformed Authorization header; expected 'Bearer <token>'.")
    return token.strip()


def _user_from_api_key(key: str) -> User:
    session = db_session()
    api_key = session.scalar(select(ApiKey).where(ApiKey.key_hash == token_digest(key)))
    if api_key is None or api_key.revoked_at is not None:
        raise Unauthorized("API key is unknown or revoked.")
    now = datetime.now(UTC)
    if api_key.last_used_at is None or now - api_key.last_used_at > _API_KEY_TOUCH_INTERVAL:
        api_key.last_used_at = now
        session.commit()
    return api_key.user


def _user_from_access_token(token: str) -> User:
    app = current_app
    try:
        claims = decode_access_token(
            app.config["SECRET_KEY"], token, issuer=app.config["GRID"].name
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized(
            "Access token expired; refresh it at /api/v1/auth/refresh.", code="token_expired"
        ) from None
    except jwt.InvalidTokenError:
        raise Unauthorized("Access token is invalid.") from None
    user = db_session().get(User, int(claims["sub"]))
    if user is None:
        raise Unauthorized("Access token is invalid.")
    return user


def authenticate() -> User:
    token = _bearer_token()
    if token.startswith(API_KEY_PREFIX):
        user = _user_from_api_key(token)
    else:
        user = _user_from_access_token(token)
    if not user.is_active:
        raise Unauthorized("This account is deactivated.")
    return user


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
    g.user = authenticate()
    if spec.permission == AUTHENTICATED:
        return
    permission = Permission(spec.permission)
    if not has_permission(g.user.role, permission):
        raise Forbidden(f"Your role ({g.user.role}) lacks the '{permission}' permission.")
