"""The operator's pages: sign-in, overview, association requests, domains, dataset search."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from grid_common.api import AUTHENTICATED, PUBLIC
from grid_common.console import end_session, page, safe_next, start_session, validated
from grid_common.db import db_session
from grid_common.errors import BadRequest, TooManyRequests, Unauthorized, Unprocessable
from grid_common.network_schemas import AssociationQuery, AssociationStatus, SearchQuery
from grid_common.schemas import DecisionIn, LoginIn
from network import associations, index
from network.accounts import check_credentials
from network.auth import Permission, current_operator
from network.console.common import bp, may
from network.models import RefreshToken

_HINT = "Operators approve the domains that ask to join this network."
_STATUSES: tuple[AssociationStatus, ...] = ("pending", "approved", "rejected", "removed", "left")


@page(bp, "/login", permission=PUBLIC, summary="The sign-in form")
def sign_in() -> str:
    return render_template("console/sign_in.html", next=safe_next(), sign_in_hint=_HINT)


@page(bp, "/login", methods=["POST"], permission=PUBLIC, summary="Sign in to the console")
def sign_in_post() -> Any:
    email = request.form.get("email", "")
    try:
        body = validated(LoginIn, {"email": email, "password": request.form.get("password", "")})
        operator = check_credentials(body)
    except (Unauthorized, Unprocessable, TooManyRequests) as exc:
        flash(exc.message, "error")
        page_html = render_template(
            "console/sign_in.html", next=safe_next(), sign_in_hint=_HINT, email=email
        )
        return page_html, exc.status
    start_session(db_session(), RefreshToken, operator.id)
    db_session().commit()
    return redirect(safe_next() or url_for("console.overview"))


@page(bp, "/logout", methods=["POST"], permission=AUTHENTICATED, summary="Sign out")
def sign_out() -> Response:
    end_session(db_session(), RefreshToken)
    db_session().commit()
    flash("You are signed out.", "success")
    return redirect(url_for("console.sign_in"))


@page(bp, "/", permission=AUTHENTICATED, summary="Join requests and domains at a glance")
def overview() -> str:
    pending = []
    if may(Permission.MANAGE_ASSOCIATIONS):
        query = AssociationQuery(status="pending")
        pending = associations.list_associations(db_session(), query).items
    domains = index.list_domains(db_session()).items
    return render_template(
        "network_console/overview.html",
        pending=pending,
        domains=domains,
        online=[d for d in domains if d.online],
        datasets=sum(d.dataset_count for d in domains),
    )


@page(
    bp,
    "/associations",
    permission=Permission.MANAGE_ASSOCIATIONS,
    summary="Association requests and associated domains",
)
def associations_page() -> str:
    status = request.args.get("status")
    query = AssociationQuery(status=status if status in _STATUSES else None)
    items = sorted(
        associations.list_associations(db_session(), query).items, key=lambda a: a.id, reverse=True
    )
    return render_template(
        "network_console/associations.html", items=items, status=query.status, statuses=_STATUSES
    )


def _reason() -> DecisionIn:
    return validated(DecisionIn, {"reason": request.form.get("reason", "")})


@page(
    bp,
    "/associations/<int:association_id>/approve",
    methods=["POST"],
    permission=Permission.MANAGE_ASSOCIATIONS,
    summary="Approve a join request",
)
def approve_association(association_id: int) -> Response:
    item = associations.decide(
        db_session(), current_operator(), association_id, "approved", _reason().reason
    )
    flash(f"{item.name} joined the network.", "success")
    return redirect(url_for("console.associations_page"))


@page(
    bp,
    "/associations/<int:association_id>/reject",
    methods=["POST"],
    permission=Permission.MANAGE_ASSOCIATIONS,
    summary="Reject a join request",
)
def reject_association(association_id: int) -> Response:
    item = associations.decide(
        db_session(), current_operator(), association_id, "rejected", _reason().reason
    )
    flash(f"The join request of {item.name} is rejected.", "success")
    return redirect(url_for("console.associations_page"))


@page(
    bp,
    "/associations/<int:association_id>/remove",
    methods=["POST"],
    permission=Permission.MANAGE_ASSOCIATIONS,
    summary="Remove a domain from the network",
)
def remove_association(association_id: int) -> Response:
    associations.remove(db_session(), current_operator(), association_id)
    flash("The domain is removed: it is no longer searched or routed to.", "success")
    return redirect(url_for("console.associations_page"))


@page(bp, "/domains", permission=AUTHENTICATED, summary="Associated domains and their health")
def domains_page() -> str:
    return render_template(
        "network_console/domains.html", items=index.list_domains(db_session()).items
    )


@page(bp, "/search", permission=AUTHENTICATED, summary="Search the dataset index")
def search_page() -> Any:
    q = request.args.get("q", "")
    tags = [t.strip() for t in request.args.get("tags", "").split(",") if t.strip()]
    domain = request.args.get("domain") or None
    fields = {"q": q, "tag": tags, "domain": domain}
    hits, problem = None, None
    if q or tags or domain:
        try:
            hits = index.search_datasets(db_session(), validated(SearchQuery, fields)).items
        except (BadRequest, Unprocessable) as exc:
            problem = exc.message
    page_html = render_template(
        "network_console/search.html", q=q, tags=", ".join(tags), hits=hits, problem=problem
    )
    return page_html, 400 if problem else 200
