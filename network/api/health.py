"""Liveness, the node's public identity, and the OpenAPI document."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify

from grid_common.api import PUBLIC, build_openapi, route
from grid_common.network_schemas import NodeInfo
from grid_common.schemas import Health
from network.api.common import config, identity
from network.auth import is_set_up

bp = Blueprint("health", __name__)


@route(bp, "/healthz", permission=PUBLIC, summary="The process is up", response=Health)
def healthz() -> Health:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    return Health(node=config().name, kind="network", setup_required=not is_set_up(app))


@route(
    bp,
    "/api/v1/node",
    permission=PUBLIC,
    summary="This node's id and public keys",
    response=NodeInfo,
)
def node() -> NodeInfo:
    me = identity()
    return NodeInfo(
        id=me.node_id,
        name=config().name,
        kind="network",
        signing_key=me.signing_public_key,
        encryption_key=me.encryption_public_key,
    )


@route(bp, "/api/v1/openapi.json", permission=PUBLIC, summary="This API as OpenAPI 3")
def openapi() -> Any:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    document = app.extensions.get("openapi")
    if document is None:
        document = build_openapi(app, title=f"Grid network API ({config().name})", version="1")
        app.extensions["openapi"] = document
    return jsonify(document)
