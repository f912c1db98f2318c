"""Liveness and the OpenAPI document."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify

from domain.api.common import config
from domain.auth import is_set_up
from grid_common.api import PUBLIC, build_openapi, route
from grid_common.schemas import Health

bp = Blueprint("health", __name__)


@route(
    bp,
    "/healthz",
    permission=PUBLIC,
    summary="The process is up",
    response=Health,
    before_setup=True,
)
def healthz() -> Health:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    return Health(node=config().name, setup_required=not is_set_up(app))


@route(
    bp,
    "/api/v1/openapi.json",
    permission=PUBLIC,
    summary="This API as OpenAPI 3",
    before_setup=True,
)
def openapi() -> Any:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    document = app.extensions.get("openapi")
    if document is None:
        document = build_openapi(app, title=f"Grid domain API ({config().name})", version="1")
        app.extensions["openapi"] = document
    return jsonify(document)
