"""The domain console's blueprint, its menu, and what every page template gets."""

from __future__ import annotations

from typing import Any

from flask import g, request, url_for

from domain.api.common import config
from domain.auth import Principal
from domain.permissions import Permission, has_permission
from grid_common.api import AUTHENTICATED
from grid_common.console import NavItem
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


def _nav() -> list[dict[str, Any]]:
    items = []
    for item in NAV:
        if not may(item.permission):
            continue
        url = url_for(item.endpoint)
        current = request.path == url if url == "/" else request.path.startswith(url)
        items.append({"url": url, "label": item.label, "current": current})
    return items


@bp.context_processor
def _page_context() -> dict[str, Any]:
    return {
        "user": signed_in(),
        "nav": _nav(),
        "may": may,
        "home_url": url_for("console.overview"),
        "sign_out_url": url_for("console.sign_out"),
        "node_name": f"domain {config().name}",
    }
