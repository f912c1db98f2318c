"""The audit log in the console: browse by actor and kind, verify the hash chain."""

from __future__ import annotations

from flask import render_template, request

from domain import audit
from domain.console.common import bp
from domain.permissions import Permission
from grid_common.console import page, validated
from grid_common.db import db_session
from grid_common.schemas import AuditQuery, AuditVerification

PAGE_SIZE = 100
KINDS = (
    "auth.",
    "users.",
    "api_keys.",
    "datasets.",
    "requests.",
    "jobs.",
    "results.",
    "workers.",
    "privacy.",
    "networks.",
    "setup.",
)


def _render(verification: AuditVerification | None = None) -> str:
    args = {k: request.args.get(k, "").strip() for k in ("actor", "action", "after")}
    query = validated(AuditQuery, {**{k: v for k, v in args.items() if v}, "limit": str(PAGE_SIZE)})
    entries = audit.list_entries(db_session(), query).items
    return render_template(
        "domain_console/audit.html",
        entries=entries,
        query=query,
        kinds=KINDS,
        verification=verification,
        next_after=entries[-1].seq if len(entries) == PAGE_SIZE else None,
    )


@page(bp, "/audit", permission=Permission.READ_AUDIT_LOG, summary="Audit entries, filtered")
def audit_page() -> str:
    return _render()


@page(
    bp,
    "/audit/verify",
    permission=Permission.READ_AUDIT_LOG,
    summary="Recompute the audit hash chain and say whether it holds",
)
def verify_audit() -> str:
    return _render(audit.verification(db_session()))
