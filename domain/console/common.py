"""The domain console's blueprint, its menu, and what every page template gets."""

from __future__ import annotations

from typing import Any

from flask import g

from domain.auth import Principal
from domain.context import config
from domain.permissions import Permission, has_permission
from grid_common.api import AUTHENTICATED
from grid_common.console import NavItem, page_context
from grid_common.console.pages import make_blueprint

bp = make_blueprint("console", __name__, sign_in_endpoint="console.sign_in")

NAV = (
    NavItem("console.overview", "Overview", AUTHENTICATED),
    NavItem("console.requests_page", "Requests", AUTHENTICATED),
    NavItem("console.jobs_page", "Jobs", AUTHENTICATED),
    NavItem("console.datasets_page", "Datasets", AUTHENTICATED),
    NavItem("console.workers_page", "Workers", Permission.MANAGE_WORKERS),
    NavItem("console.users_page", "Users", Permission.MANAGE_USERS),
    NavItem("console.api_keys_page", "API keys", AUTHENTICATED),
    NavItem("console.audit_page", "Audit log", Permission.READ_AUDIT_LOG),
)


def signed_in() -> Principal | None:
    user: Principal | None = g.get("user")
    return user


def may(permission: str) -> bool:
    """Whether the signed-in account holds `permission` (pages use it to show what it may do)."""
    user = signed_in()
    if user is None:
        return False
    return permission == AUTHENTICATED or has_permission(user.role, Permission(permission))


@bp.context_processor
def _page_context() -> dict[str, Any]:
    return page_context(NAV, may, signed_in(), f"domain {config().name}")
