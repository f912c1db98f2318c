"""Long-lived API keys for scripts; each acts as the account that made it."""

from __future__ import annotations

from flask import Blueprint

from domain import apikeys
from domain.auth import current_user
from grid_common.api import AUTHENTICATED, route
from grid_common.db import db_session
from grid_common.schemas import ApiKeyCreate, ApiKeyList, ApiKeyOut

bp = Blueprint("apikeys", __name__, url_prefix="/api/v1")


@route(bp, "/api-keys", permission=AUTHENTICATED, summary="Your API keys", response=ApiKeyList)
def list_keys() -> ApiKeyList:
    return apikeys.list_keys(db_session(), current_user())


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
    return apikeys.create_key(db_session(), current_user(), body)


@route(
    bp,
    "/api-keys/<int:key_id>",
    methods=["DELETE"],
    permission=AUTHENTICATED,
    summary="Revoke one of your API keys",
    status=204,
)
def revoke_key(key_id: int) -> None:
    apikeys.revoke_key(db_session(), current_user(), key_id)
