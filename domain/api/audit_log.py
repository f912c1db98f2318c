"""Reading and verifying the audit log."""

from __future__ import annotations

from flask import Blueprint

from domain import audit
from domain.permissions import Permission
from grid_common.api import route
from grid_common.db import db_session
from grid_common.schemas import AuditList, AuditQuery, AuditVerification

bp = Blueprint("audit", __name__, url_prefix="/api/v1/audit")


@route(
    bp,
    "",
    permission=Permission.READ_AUDIT_LOG,
    summary="Audit entries in order, filtered by actor and action",
    query=AuditQuery,
    response=AuditList,
)
def list_entries(query: AuditQuery) -> AuditList:
    return audit.list_entries(db_session(), query)


@route(
    bp,
    "/verify",
    permission=Permission.READ_AUDIT_LOG,
    summary="Recompute the hash chain and name the first broken entry",
    response=AuditVerification,
)
def verify() -> AuditVerification:
    return audit.verification(db_session())
