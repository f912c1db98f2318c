"""Association: domains ask to join (signed), operators approve, reject or remove them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Blueprint, current_app
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from grid_common.api import SIGNED, route
from grid_common.db import db_session
from grid_common.errors import Conflict, NotFound, TooManyRequests
from grid_common.network_schemas import (
    AssociationList,
    AssociationOut,
    AssociationQuery,
    JoinRequest,
)
from grid_common.schemas import DecisionIn
from network.auth import Permission, client_address, current_node, current_operator
from network.context import config
from network.models import Association, IndexedDataset, JoinAttempt
from network.routing import domain_urls

bp = Blueprint("associations", __name__, url_prefix="/api/v1/associations")


def _counts(session: Session, ids: list[int]) -> dict[int, int]:
    if not ids:
        return {}
    rows = session.execute(
        select(IndexedDataset.association_id, func.count())
        .where(IndexedDataset.association_id.in_(ids))
        .group_by(IndexedDataset.association_id)
    )
    return {association_id: count for association_id, count in rows}


def _out(item: Association, dataset_count: int) -> AssociationOut:
    return AssociationOut(
        id=item.id,
        domain_id=item.domain_id,
        name=item.name,
        url=item.url,
        status=item.status,  # type: ignore[arg-type]
        signing_key=item.signing_key,
        encryption_key=item.encryption_key,
        requested_at=item.requested_at,
        decided_at=item.decided_at,
        decided_by=item.decided_by,
        decision_reason=item.decision_reason,
        online=item.online,
        last_seen=item.last_seen,
        dataset_count=dataset_count,
    )


def association_out(item: Association) -> AssociationOut:
    return _out(item, _counts(db_session(), [item.id]).get(item.id, 0))


def _check_join_rate(session: Session, domain_id: str, address: str) -> None:
    cfg = config()
    now = datetime.now(UTC)
    since = now - timedelta(seconds=cfg.join_window_s)
    session.execute(delete(JoinAttempt).where(JoinAttempt.at <= since))
    count = select(func.count()).select_from(JoinAttempt)
    by_address = session.scalar(count.where(JoinAttempt.address == address)) or 0
    by_domain = session.scalar(count.where(JoinAttempt.domain_id == domain_id)) or 0
    if by_address >= cfg.max_joins_per_address or by_domain >= cfg.max_joins_per_domain:
        session.commit()
        raise TooManyRequests(
            "Too many join requests; wait before asking again.",
            headers={"Retry-After": str(cfg.join_window_s)},
        )
    session.add(JoinAttempt(domain_id=domain_id, address=address, at=now))


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
    node = current_node()
    session = db_session()
    _check_join_rate(session, node.node_id, client_address())
    item = session.scalar(select(Association).where(Association.domain_id == node.node_id))
    if item is not None and item.status == "approved":
        session.commit()
        raise Conflict("This domain is already associated.", code="already_associated")
    if item is None:
        item = Association(domain_id=node.node_id)
        session.add(item)
    item.name, item.url = body.name, body.url
    item.signing_key, item.encryption_key = node.signing_key, body.encryption_key
    item.status, item.requested_at, item.requested_from = (
        "pending",
        datetime.now(UTC),
        client_address(),
    )
    item.decided_at = item.decided_by = item.decision_reason = None
    try:
        session.commit()
    except IntegrityError:  # the same domain asked twice at once: one request is enough
        session.rollback()
        raise Conflict("A join request of this domain is being filed.", code="duplicate") from None
    return association_out(item)


def _own_association(session: Session) -> Association:
    item = session.scalar(
        select(Association).where(Association.domain_id == current_node().node_id)
    )
    if item is None:
        raise NotFound("This domain never asked to join this network.")
    return item


@route(
    bp,
    "/self",
    permission=SIGNED,
    summary="The calling domain's own association (signed by the domain)",
    response=AssociationOut,
)
def own_association() -> AssociationOut:
    return association_out(_own_association(db_session()))


def _end(session: Session, item: Association, status: str, actor: str | None) -> None:
    session.execute(delete(IndexedDataset).where(IndexedDataset.association_id == item.id))
    item.status, item.online = status, False
    item.decided_at, item.decided_by = datetime.now(UTC), actor
    session.commit()
    domain_urls.forget(item.domain_id)


@route(
    bp,
    "/self",
    methods=["DELETE"],
    permission=SIGNED,
    summary="The calling domain leaves the network; its datasets leave the index",
    status=204,
)
def leave() -> None:
    session = db_session()
    item = _own_association(session)
    _end(session, item, "left", None)


@route(
    bp,
    "",
    permission=Permission.MANAGE_ASSOCIATIONS,
    summary="Association requests and associated domains, optionally of one status",
    query=AssociationQuery,
    response=AssociationList,
)
def list_associations(query: AssociationQuery) -> AssociationList:
    session = db_session()
    statement = select(Association).order_by(Association.id)
    if query.status:
        statement = statement.where(Association.status == query.status)
    items = session.scalars(statement).all()
    counts = _counts(session, [i.id for i in items])
    return AssociationList(items=[_out(i, counts.get(i.id, 0)) for i in items])


def _find(session: Session, association_id: int) -> Association:
    item = session.get(Association, association_id)
    if item is None:
        raise NotFound(f"No association with id {association_id}.")
    return item


@route(
    bp,
    "/<int:association_id>",
    permission=Permission.MANAGE_ASSOCIATIONS,
    summary="One association",
    response=AssociationOut,
)
def get_association(association_id: int) -> AssociationOut:
    return association_out(_find(db_session(), association_id))


def _decide(association_id: int, status: str, reason: str) -> AssociationOut:
    session = db_session()
    item = _find(session, association_id)
    if item.status != "pending":
        raise Conflict(
            f"Association {association_id} is {item.status}, not pending.", code="already_decided"
        )
    item.status, item.decision_reason = status, reason
    item.decided_at, item.decided_by = datetime.now(UTC), current_operator().email
    item.next_check_at = datetime.now(UTC)
    session.commit()
    if status == "approved":
        current_app.extensions["background"].wake()  # check its health now, not in a while
    return association_out(item)


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
    return _decide(association_id, "approved", body.reason)


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
    return _decide(association_id, "rejected", body.reason)


@route(
    bp,
    "/<int:association_id>",
    methods=["DELETE"],
    permission=Permission.MANAGE_ASSOCIATIONS,
    summary="Remove a domain: it is no longer routed to or searched",
    status=204,
)
def remove(association_id: int) -> None:
    session = db_session()
    item = _find(session, association_id)
    if item.status not in ("approved", "pending"):
        raise Conflict(f"Association {association_id} is already {item.status}.", code="ended")
    _end(session, item, "removed", current_operator().email)
