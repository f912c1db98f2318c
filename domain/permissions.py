"""Roles of a domain and the permission flags each one holds."""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    UPLOAD_DATA = "upload_data"
    READ_PRIVATE_DATA = "read_private_data"
    SUBMIT_REQUESTS = "submit_requests"
    TRIAGE_REQUESTS = "triage_requests"
    MANAGE_USERS = "manage_users"
    EDIT_SETTINGS = "edit_settings"
    MANAGE_WORKERS = "manage_workers"
    RELEASE_RESULTS = "release_results"
    READ_AUDIT_LOG = "read_audit_log"


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    COMPLIANCE_OFFICER = "compliance_officer"
    DATA_SCIENTIST = "data_scientist"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OWNER: frozenset(Permission),
    Role.ADMIN: frozenset(Permission) - {Permission.EDIT_SETTINGS},
    Role.COMPLIANCE_OFFICER: frozenset({Permission.TRIAGE_REQUESTS, Permission.READ_AUDIT_LOG}),
    Role.DATA_SCIENTIST: frozenset({Permission.SUBMIT_REQUESTS}),
}


def has_permission(role: str, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS.get(Role(role), frozenset())
