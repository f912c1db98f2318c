"""Signing in and out of the domain console, and the overview page."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from domain import datasets, job_access, privacy, request_access, workers
from domain.accounts import check_credentials
from domain.auth import current_user
from domain.console.common import bp, may
from domain.models import RefreshToken
from domain.permissions import Permission
from grid_common.api import AUTHENTICATED, PUBLIC
from grid_common.console import end_session, page, safe_next, start_session, validated
from grid_common.db import db_session
from grid_common.errors import TooManyRequests, Unauthorized, Unprocessable
from grid_common.schemas import JobQuery, LoginIn, RequestQuery

_HINT = "Owners, admins and compliance officers review requests and jobs here."


@page(bp, "/login", permission=PUBLIC, summary="The sign-in form")
def sign_in() -> str:
    return render_template("console/sign_in.html", next=safe_next(), sign_in_hint=_HINT)


@page(bp, "/login", methods=["POST"], permission=PUBLIC, summary="Sign in to the console")
def sign_in_post() -> Any:
    email = request.form.get("email", "")
    try:
        body = validated(LoginIn, {"email": email, "password": request.form.get("password", "")})
        user = check_credentials(body, via="console")
    except (Unauthorized, Unprocessable, TooManyRequests) as exc:
        flash(exc.message, "error")
        page_html = render_template(
            "console/sign_in.html", next=safe_next(), sign_in_hint=_HINT, email=email
        )
        return page_html, exc.status
    start_session(db_session(), RefreshToken, user.id)
    db_session().commit()
    return redirect(safe_next() or url_for("console.overview"))


@page(bp, "/logout", methods=["POST"], permission=AUTHENTICATED, summary="Sign out")
def sign_out() -> Response:
    end_session(db_session(), RefreshToken)
    db_session().commit()
    flash("You are signed out.", "success")
    return redirect(url_for("console.sign_in"))


@page(bp, "/", permission=AUTHENTICATED, summary="What needs attention on this domain")
def overview() -> str:
    session, user = db_session(), current_user()
    pending = request_access.list_requests(session, user, RequestQuery(status="pending")).items
    listed = job_access.list_jobs(session, user, JobQuery()).items
    active = [j for j in listed if j.status in ("queued", "running")]
    worker_list = workers.list_workers(session).items if may(Permission.MANAGE_WORKERS) else None
    budgets = [
        (dataset, privacy.budget_out(session, user, dataset.name))
        for dataset in datasets.list_datasets(session).items
    ]
    return render_template(
        "domain_console/overview.html",
        pending=pending,
        active=active,
        workers=worker_list,
        online=[w for w in worker_list or [] if w.status in ("online", "busy")],
        budgets=budgets,
    )
