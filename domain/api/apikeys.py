"""Long-lived API keys for scripts; each acts as the account that made it."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint
from sqlalchemy import select

from domain.audit import record
from domain.auth import current_user
from domain.models import ApiKey
from domain.security import new_api_key, token_digest
from grid_common.api import AUTHENTICATED, route
from grid_common.db import db_session
from grid_common.errors import NotFound
from grid_common.schemas import ApiKeyCreate, ApiKeyList, ApiKeyOut

bp = Blueprint("apikeys", __name__, url_prefix="/api/v1")


def _out(key: ApiKey, secret: str | None = None) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
        revoked=key.revoked_at is not None,
        key=secret,
    )


@route(bp, "/api-keys", permission=AUTHENTICATED, summary="Your API keys", response=ApiKeyList)
def list_keys() -> ApiKeyList:
    keys = db_session().scalars(
        select(ApiKey).where(ApiKey.user_id == current_user().id).order_by(ApiKey.id)
    )
    return ApiKeyList(items=[_out(k) for k in keys])


@route(
    bp,
    "/api-keys",
    methods=["POST"],
    permission=AUTHENTICATED,
    summary="Create an API key (shown once)",
    body=ApiKeyCreate,
    response=ApiKeyOut,
    status=201,
)
def create_key(body: ApiKeyCreate) -> ApiKeyOut:
    secret = new_api_key()
    key = ApiKey(
        user_id=current_user().id,
        name=body.name,
        prefix=secret[:12],
        key_hash=token_digest(secret),
    )
    session = db_session()
    session.add(key)
    record(session, "api_keys.created", body.name)
    session.commit()
    return _out(key, secret)


@route(
    bp,
    "/api-keys/<int:key_id>",
    methods=["DELETE"],
    permission=AUTHENTICATED,
    summary="Revoke one of your API keys",
    status=204,
)
def revoke_key(key_id: int) -> None:
    session = db_session()
    key = session.get(ApiKey, key_id)
    if key is None or key.user_id != current_user().id:
        raise NotFound(f"You have no API key with id {key_id}.")
    if key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
        record(session, "api_keys.revoked", key.name)
        session.commit()
