"""The domain's registry writes as its operators see them: status, and anchoring on demand."""

from __future__ import annotations

from flask import Blueprint

from domain import registry_writes
from domain.auth import client_address, current_user
from domain.permissions import Permission
from grid_common.api import AUTHENTICATED, route
from grid_common.db import db_session
from grid_common.errors import Conflict
from grid_common.registry_schemas import AnchorQueued, RegistryStatus

bp = Blueprint("registry", __name__, url_prefix="/api/v1/registry")


@route(
    bp,
    "",
    permission=AUTHENTICATED,
    summary="Whether registry writes are on, the node's address and its outbox",
    response=RegistryStatus,
)
def status() -> RegistryStatus:
    return RegistryStatus.model_validate(registry_writes.registry_status(db_session()))


@route(
    bp,
    "/anchor",
    methods=["POST"],
    permission=Permission.READ_AUDIT_LOG,
    summary="Anchor the audit log's head hash on chain now",
    response=AnchorQueued,
    status=202,
)
def anchor() -> AnchorQueued:
    if registry_writes.current_registry() is None:
        raise Conflict(registry_writes.OFF_MESSAGE, code="registry_off")
    session = db_session()
    queued = registry_writes.anchor_now(
        session, actor=current_user().email, address=client_address()
    )
    session.commit()
    return AnchorQueued.model_validate(queued)
