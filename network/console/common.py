"""The network console's blueprint, its menu, and what every page template gets."""

from __future__ import annotations

from typing import Any

from flask import g

from grid_common.api import AUTHENTICATED
from grid_common.console import NavItem, page_context
from grid_common.console.pages import make_blueprint
from network.auth import Permission, Principal, has_permission
from network.context import config

bp = make_blueprint("console", __name__, sign_in_endpoint="console.sign_in")

NAV = (
    NavItem("console.overview", "Overview", AUTHENTICATED),
    NavItem("console.associations_page", "Associations", Permission.MANAGE_ASSOCIATIONS),
    NavItem("console.domains_page", "Domains", AUTHENTICATED),
    NavItem("console.search_page", "Search", AUTHENTICATED),
    NavItem("console.federated_jobs", "Federated jobs", Permission.SUBMIT_FEDERATED),
)


def signed_in() -> Principal | None:
    operator: Principal | None = g.get("operator")
    return operator


def may(permission: str) -> bool:
    operator = signed_in()
    if operator is None:
        return False
    return permission == AUTHENTICATED or has_permission(operator.role, Permission(permission))


@bp.context_processor
def _page_context() -> dict[str, Any]:
    return page_context(NAV, may, signed_in(), f"network {config().name}")
