"""People and machines in the console: accounts and roles, your API keys, worker tokens."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from domain import apikeys, users, workers
from domain.auth import current_user
from domain.console.common import bp, signed_in
from domain.permissions import Permission, Role
from grid_common.api import AUTHENTICATED
from grid_common.console import page, validated
from grid_common.db import db_session
from grid_common.schemas import ApiKeyCreate, UserCreate, UserUpdate, WorkerCreate


def _grantable_roles() -> list[str]:
    """Roles the signed-in account may give: only an owner makes another owner."""
    user = signed_in()
    return [r.value for r in Role if r is not Role.OWNER or (user and user.role == Role.OWNER)]


@page(bp, "/users", permission=Permission.MANAGE_USERS, summary="Accounts and their roles")
def users_page() -> str:
    return render_template(
        "domain_console/users.html",
        items=users.list_users(db_session()).items,
        roles=_grantable_roles(),
    )


@page(
    bp, "/users", methods=["POST"], permission=Permission.MANAGE_USERS, summary="Create an account"
)
def create_user() -> Response:
    fields = {k: request.form.get(k, "") for k in ("email", "password", "role")}
    created = users.create_user(db_session(), current_user(), validated(UserCreate, fields))
    flash(f"Account {created.email} created as {created.role.replace('_', ' ')}.", "success")
    return redirect(url_for("console.users_page"))


@page(
    bp,
    "/users/<int:user_id>",
    methods=["POST"],
    permission=Permission.MANAGE_USERS,
    summary="Change an account's role, or deactivate or reactivate it",
)
def update_user(user_id: int) -> Response:
    fields = {"role": request.form.get("role"), "is_active": request.form.get("is_active")}
    updated = users.update_user(
        db_session(), current_user(), user_id, validated(UserUpdate, fields)
    )
    state = "active" if updated.is_active else "deactivated"
    flash(f"{updated.email} is {updated.role.replace('_', ' ')}, {state}.", "success")
    return redirect(url_for("console.users_page"))


@page(bp, "/keys", permission=AUTHENTICATED, summary="Your API keys")
def api_keys_page() -> str:
    return render_template(
        "domain_console/api_keys.html", items=apikeys.list_keys(db_session(), current_user()).items
    )


@page(bp, "/keys", methods=["POST"], permission=AUTHENTICATED, summary="Create an API key")
def create_api_key() -> str:
    created = apikeys.create_key(
        db_session(),
        current_user(),
        validated(ApiKeyCreate, {"name": request.form.get("name", "")}),
    )
    # Shown in this response only: a redirect would have to carry the key in the cookie.
    return render_template(
        "domain_console/api_keys.html",
        items=apikeys.list_keys(db_session(), current_user()).items,
        created=created,
    )


@page(
    bp,
    "/keys/<int:key_id>/revoke",
    methods=["POST"],
    permission=AUTHENTICATED,
    summary="Revoke one of your API keys",
)
def revoke_api_key(key_id: int) -> Response:
    apikeys.revoke_key(db_session(), current_user(), key_id)
    flash("API key revoked.", "success")
    return redirect(url_for("console.api_keys_page"))


@page(bp, "/workers", permission=Permission.MANAGE_WORKERS, summary="Workers and their state")
def workers_page() -> str:
    return render_template(
        "domain_console/workers.html", items=workers.list_workers(db_session()).items
    )


@page(
    bp,
    "/workers",
    methods=["POST"],
    permission=Permission.MANAGE_WORKERS,
    summary="Register a worker",
)
def register_worker() -> str:
    created = workers.register_worker(
        db_session(),
        current_user(),
        validated(WorkerCreate, {"name": request.form.get("name", "")}),
    )
    return render_template(
        "domain_console/workers.html",
        items=workers.list_workers(db_session()).items,
        created=created,
    )


@page(
    bp,
    "/workers/<int:worker_id>/revoke",
    methods=["POST"],
    permission=Permission.MANAGE_WORKERS,
    summary="Revoke a worker's token",
)
def revoke_worker(worker_id: int) -> Response:
    workers.revoke_worker(db_session(), worker_id)
    flash("Worker token revoked.", "success")
    return redirect(url_for("console.workers_page"))
