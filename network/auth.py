"""Who is calling the network: an operator's bearer token, a node's signature, or anyone."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt
from flask import Flask, current_app, g, request
from sqlalchemy import Row, bindparam, exists, select

from grid_common.accounts import bearer_token
from grid_common.api import AUTHENTICATED, PUBLIC, SIGNED, route_spec
from grid_common.console import SignInRequired, is_page, session_user_id
from grid_common.db import db_session
from grid_common.errors import Forbidden, ServiceUnavailable, Unauthorized
from grid_common.security import decode_access_token
from grid_common.signing import SignedCaller, verify_flask_request
from network.context import config
from network.models import Operator, RefreshToken

OPERATOR = "operator"
DATA_SCIENTIST = "data_scientist"
SETUP_HINT = (
    "This network has no operator yet. Set GRID_OPERATOR_EMAIL and GRID_OPERATOR_PASSWORD "
    "before the first start, or POST {email, password} to /api/v1/setup once."
)

_OPERATORS = Operator.__table__.c
# Prebuilt and run through Core: it runs on every call, where an ORM lookup costs several
# times more than the query itself.
_OPERATOR_BY_ID = select(
    _OPERATORS.id, _OPERATORS.email, _OPERATORS.role, _OPERATORS.is_active
).where(_OPERATORS.id == bindparam("operator_id"))


class Permission(StrEnum):
    MANAGE_ASSOCIATIONS = "manage_associations"
    MANAGE_ACCOUNTS = "manage_accounts"
    SUBMIT_FEDERATED = "submit_federated"
    MANAGE_FEDERATED = "manage_federated"


ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    OPERATOR: frozenset(Permission),
    DATA_SCIENTIST: frozenset({Permission.SUBMIT_FEDERATED}),
}


def has_permission(role: str, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS.get(role, frozenset())


@dataclass(frozen=True)
class Principal:
    id: int
    email: str
    role: str


def current_operator() -> Principal:
    operator: Principal = g.operator
    return operator


def current_node() -> SignedCaller:
    node: SignedCaller = g.node
    return node


def client_address() -> str:
    return request.remote_addr or ""


def is_set_up(app: Flask) -> bool:
    if app.extensions.get("grid_set_up"):
        return True
    done = db_session().scalar(select(exists().where(Operator.is_active.is_(True))))
    if done:
        app.extensions["grid_set_up"] = True
    return bool(done)


def authenticate() -> Principal:
    secret, issuer = current_app.config["SECRET_KEY"], config().name
    try:
        claims = decode_access_token(secret, bearer_token(), issuer=issuer)
    except jwt.ExpiredSignatureError:
        raise Unauthorized(
            "Access token expired; refresh it at /api/v1/auth/refresh.", code="token_expired"
        ) from None
    except jwt.InvalidTokenError:
        raise Unauthorized("Access token is invalid for this network.") from None
    operator = _operator(int(claims["sub"]))
    if operator is None or not operator.is_active:
        raise Unauthorized("This operator account is unknown or deactivated.")
    return Principal(operator.id, operator.email, operator.role)


def _operator(operator_id: int) -> Row[Any, Any, Any, Any] | None:
    """The account as it stands now: never kept between requests, so deactivation is at once."""
    return db_session().connection().execute(_OPERATOR_BY_ID, {"operator_id": operator_id}).first()


def console_operator() -> Principal:
    """The account signed in to the console with this request's session cookie."""
    operator = _operator(session_user_id(db_session(), RefreshToken))
    if operator is None or not operator.is_active:
        raise SignInRequired("This operator account is unknown or deactivated.")
    return Principal(operator.id, operator.email, operator.role)


def authorize_request() -> None:
    """Runs before every view: the route's declared access decides who gets through."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if request.endpoint is None:
        return  # Flask answers 404/405 next
    spec = route_spec(app, request.endpoint)
    if spec is None:
        raise Forbidden(f"Endpoint {request.endpoint!r} declares no permission; access refused.")
    if spec.permission == PUBLIC:
        return
    if spec.permission == SIGNED:
        g.node = verify_flask_request(streamed=spec.body_kind == "binary")
        return
    if not is_set_up(app):
        raise ServiceUnavailable(SETUP_HINT, code="setup_required")
    # A console page trusts only its session cookie, an API route only its bearer token.
    g.operator = console_operator() if is_page(spec) else authenticate()
    if spec.permission == AUTHENTICATED:
        return
    permission = Permission(spec.permission)
    if not has_permission(g.operator.role, permission):
        raise Forbidden(f"Your role ({g.operator.role}) lacks the '{permission}' permission.")
