"""Association: domains ask to join (signed), operators approve, reject or remove them."""

from __future__ import annotations

from flask import Blueprint

from grid_common.api import SIGNED, route
from grid_common.db import db_session
from grid_common.network_schemas import (
    AssociationList,
    AssociationOut,
    AssociationQuery,
    JoinRequest,
)
from grid_common.schemas import DecisionIn
from network import associations
from network.auth import Permission, client_address, current_node, current_operator

bp = Blueprint("associations", __name__, url_prefix="/api/v1/associations")


@route(
    bp,
    "",
    methods=["POST"],
    permission=SIGNED,
    summary="A domain asks to join (signed by the domain); pending until an operator decides",
    body=JoinRequest,
    response=AssociationOut,
    status=201,
)
def request_join(body: JoinRequest) -> AssociationOut:
    return associations.request_join(db_session(), current_node(), client_address(), body)


@route(
    bp,
    "/self",
    permission=SIGNED,
    summary="The calling domain's own association (signed by the domain)",
    response=AssociationOut,
)
def own_association() -> AssociationOut:
    session = db_session()
    return associations.association_out(
        session, associations.own_association(session, current_node())
    )


@route(
    bp,
    "/self",
    methods=["DELETE"],
    permission=SIGNED,
    summary="The calling domain leaves the network; its datasets leave the index",
    status=204,
)
def leave() -> None:
    associations.leave(db_session(), current_node())


@route(
    bp,
    "",
    permission=Permission.MANAGE_ASSOCIATIONS,
    summary="Association requests and associated domains, optionally of one status",
    query=AssociationQuery,
    response=AssociationList,
)
def list_associations(query: AssociationQuery) -> AssociationList:
    return associations.list_associations(db_session(), query)


@route(
    bp,
    "/<int:association_id>",
    permission=Permission.MANAGE_ASSOCIATIONS,
    summary="One association",
    response=AssociationOut,
)
def get_association(association_id: int) -> AssociationOut:
    session = db_session()
    return associations.association_out(
        session, associations.find_association(session, association_id)
    )


@route(
    bp,
    "/<int:association_id>/approve",
    methods=["POST"],
    permission=Permission.MANAGE_ASSOCIATIONS,
    summary="Approve a pending request: the domain joins",
    body=DecisionIn,
    response=AssociationOut,
)
def approve(association_id: int, body: DecisionIn) -> AssociationOut:
    return associations.decide(
        db_session(), current_operator(), association_id, "approved", body.reason
    )


@route(
    bp,
    "/<int:association_id>/reject",
    methods=["POST"],
    permission=Permission.MANAGE_ASSOCIATIONS,
    summary="Reject a pending request",
    body=DecisionIn,
    response=AssociationOut,
)
def reject(association_id: int, body: DecisionIn) -> AssociationOut:
    return associations.decide(
        db_session(), current_operator(), association_id, "rejected", body.reason
    )


@route(
    bp,
    "/<int:association_id>",
    methods=["DELETE"],
    permission=Permission.MANAGE_ASSOCIATIONS,
    summary="Remove a domain: it is no longer routed to or searched",
    status=204,
)
def remove(association_id: int) -> None:
    associations.remove(db_session(), current_operator(), association_id)
