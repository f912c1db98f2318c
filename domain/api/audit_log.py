"""Reading and verifying the audit log."""

from __future__ import annotations

import json

from flask import Blueprint
from sqlalchemy import select

from domain.audit import verify_chain
from domain.models import AuditEntry
from domain.permissions import Permission
from grid_common.api import route
from grid_common.db import db_session
from grid_common.schemas import AuditEntryOut, AuditList, AuditQuery, AuditVerification

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
    statement = select(AuditEntry).where(AuditEntry.seq > query.after)
    if query.actor:
        statement = statement.where(AuditEntry.actor == query.actor)
    if query.action:
        statement = statement.where(AuditEntry.action.startswith(query.action))
    entries = db_session().scalars(statement.order_by(AuditEntry.seq).limit(query.limit))
    return AuditList(
        items=[
            AuditEntryOut(
                seq=e.seq,
                at=e.at,
                actor=e.actor,
                action=e.action,
                target=e.target,
                address=e.address,
                details=json.loads(e.details),
                prev_hash=e.prev_hash,
                hash=e.hash,
            )
            for e in entries
        ]
    )


@route(
    bp,
    "/verify",
    permission=Permission.READ_AUDIT_LOG,
    summary="Recompute the hash chain and name the first broken entry",
    response=AuditVerification,
)
def verify() -> AuditVerification:
    report = verify_chain(db_session())
    return AuditVerification(
        ok=report.ok,
        entries=report.entries,
        head_hash=report.head_hash,
        first_broken_seq=report.first_broken_seq,
        problem=report.problem,
    )
