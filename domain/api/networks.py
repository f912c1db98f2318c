"""The domain's identity and its network memberships: join, list, leave."""

from __future__ import annotations

from flask import Blueprint, Response, g, request
from sqlalchemy import select

from domain.audit import record
from domain.context import config, node_identity
from domain.models import NetworkMembership
from domain.network_nudges import NUDGE_PATH, accept_nudge
from domain.networks import request_join, try_leave
from domain.permissions import Permission
from domain.registry_writes import current_registry
from grid_common.api import AUTHENTICATED, PUBLIC, SIGNED, route
from grid_common.db import db_session
from grid_common.errors import NotFound
from grid_common.network_schemas import (
    JoinNetworkIn,
    MembershipList,
    MembershipOut,
    NodeInfo,
)
from grid_common.signing import SignedCaller

bp = Blueprint("networks", __name__, url_prefix="/api/v1")


def membership_out(membership: NetworkMembership) -> MembershipOut:
    return MembershipOut(
        network_id=membership.network_id,
        name=membership.name,
        url=membership.url,
        status=membership.status,  # type: ignore[arg-type]
        domain_url=membership.domain_url,
        association_id=membership.association_id,
        signing_key=membership.signing_key,
        encryption_key=membership.encryption_key,
        requested_at=membership.requested_at,
        last_push_at=membership.last_push_at,
        last_error=membership.last_error,
    )


@route(
    bp,
    "/node",
    permission=PUBLIC,
    summary="This node's id and public keys",
    response=NodeInfo,
    before_setup=True,
)
def node() -> NodeInfo:
    me = node_identity()
    return NodeInfo(
        id=me.node_id,
        name=config().name,
        kind="domain",
        signing_key=me.signing_public_key,
        encryption_key=me.encryption_public_key,
        eth_address=registry.address if (registry := current_registry()) else None,
    )


@route(
    bp,
    "/networks",
    permission=AUTHENTICATED,
    summary="Networks this domain belongs to or asked to join",
    response=MembershipList,
)
def list_networks() -> MembershipList:
    rows = db_session().scalars(select(NetworkMembership).order_by(NetworkMembership.id))
    return MembershipList(items=[membership_out(m) for m in rows])


@route(
    bp,
    "/networks",
    methods=["POST"],
    permission=Permission.EDIT_SETTINGS,
    summary="Ask a network to take this domain in (pending until its operator decides)",
    body=JoinNetworkIn,
    response=MembershipOut,
    status=201,
)
def join_network(body: JoinNetworkIn) -> MembershipOut:
    domain_url = body.domain_url or config().public_url or request.host_url
    session = db_session()
    membership = request_join(session, body.url, domain_url.rstrip("/"))
    record(session, "networks.join_requested", membership.network_id, url=body.url)
    session.commit()
    return membership_out(membership)


@route(
    bp,
    NUDGE_PATH.removeprefix("/api/v1"),
    methods=["POST"],
    permission=SIGNED,
    summary="A network this domain joined asks it to sync now (it has news for the domain)",
    status=204,
)
def nudge() -> None:
    caller: SignedCaller = g.node
    accept_nudge(db_session(), caller)


@route(
    bp,
    "/networks/<network_id>",
    methods=["DELETE"],
    permission=Permission.EDIT_SETTINGS,
    summary="Leave a network (202 while the network cannot be told yet; retried)",
    response=MembershipOut,
    status=202,
)
def leave_network(network_id: str) -> Response | MembershipOut:
    session = db_session()
    membership = session.scalar(
        select(NetworkMembership).where(NetworkMembership.network_id == network_id)
    )
    if membership is None:
        raise NotFound(f"This domain is no member of a network with id {network_id!r}.")
    record(session, "networks.left", network_id, url=membership.url)
    if try_leave(session, membership):
        return Response(status=204)
    return membership_out(membership)
