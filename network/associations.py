"""Association: a domain asks to join (its call signed), an operator approves, rejects or
removes it, and a domain may leave; an ended association's datasets leave the index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import current_app
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from grid_common.errors import Conflict, NotFound, TooManyRequests
from grid_common.network_schemas import (
    AssociationList,
    AssociationOut,
    AssociationQuery,
    JoinRequest,
)
from grid_common.signing import SignedCaller
from network import nudges, registry_writes
from network.auth import Principal
from network.context import config
from network.models import Association, IndexedDataset, JoinAttempt
from network.routing import domain_urls


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
        eth_address=item.eth_address,
    )


def association_out(session: Session, item: Association) -> AssociationOut:
    """An association as the API shows it, with how many datasets it publishes."""
    return _out(item, _counts(session, [item.id]).get(item.id, 0))


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


def request_join(
    session: Session, node: SignedCaller, address: str, body: JoinRequest
) -> AssociationOut:
    """File (or file again) the join request of the signed `node`, calling from `address`;
    limited per address and per domain, pending until an operator decides. Commits."""
    _check_join_rate(session, node.node_id, address)
    item = session.scalar(select(Association).where(Association.domain_id == node.node_id))
    if item is not None and item.status == "approved":
        session.commit()
        raise Conflict("This domain is already associated.", code="already_associated")
    if item is None:
        item = Association(domain_id=node.node_id)
        session.add(item)
    item.name, item.url = body.name, body.url
    item.signing_key, item.encryption_key = node.signing_key, body.encryption_key
    item.eth_address = body.eth_address.lower() if body.eth_address else None
    item.status, item.requested_at, item.requested_from = "pending", datetime.now(UTC), address
    item.decided_at = item.decided_by = item.decision_reason = None
    try:
        session.commit()
    except IntegrityError:  # the same domain asked twice at once: one request is enough
        session.rollback()
        raise Conflict("A join request of this domain is being filed.", code="duplicate") from None
    return association_out(session, item)


def own_association(session: Session, node: SignedCaller) -> Association:
    """The signed `node`'s own association, or NotFound if it never asked to join."""
    item = session.scalar(select(Association).where(Association.domain_id == node.node_id))
    if item is None:
        raise NotFound("This domain never asked to join this network.")
    return item


def _end(session: Session, item: Association, status: str, actor: str | None) -> None:
    session.execute(delete(IndexedDataset).where(IndexedDataset.association_id == item.id))
    if item.status == "approved":  # on chain only once approved: nothing to undo before
        registry_writes.enqueue_association(session, item, False)
    item.status, item.online = status, False
    item.decided_at, item.decided_by = datetime.now(UTC), actor
    session.commit()
    domain_urls.forget(item.domain_id)


def leave(session: Session, node: SignedCaller) -> None:
    """The signed `node` leaves the network; its datasets leave the index. Commits."""
    _end(session, own_association(session, node), "left", None)


def list_associations(session: Session, query: AssociationQuery) -> AssociationList:
    """Association requests and associated domains, optionally of one status."""
    statement = select(Association).order_by(Association.id)
    if query.status:
        statement = statement.where(Association.status == query.status)
    items = session.scalars(statement).all()
    counts = _counts(session, [i.id for i in items])
    return AssociationList(items=[_out(i, counts.get(i.id, 0)) for i in items])


def find_association(session: Session, association_id: int) -> Association:
    """The association with this id, or NotFound."""
    item = session.get(Association, association_id)
    if item is None:
        raise NotFound(f"No association with id {association_id}.")
    return item


def decide(
    session: Session, operator: Principal, association_id: int, status: str, reason: str
) -> AssociationOut:
    """Approve or reject a pending join request for `operator`; an approved domain's health
    is checked at once. Commits."""
    item = find_association(session, association_id)
    if item.status != "pending":
        raise Conflict(
            f"Association {association_id} is {item.status}, not pending.", code="already_decided"
        )
    item.status, item.decision_reason = status, reason
    item.decided_at, item.decided_by = datetime.now(UTC), operator.email
    item.next_check_at = datetime.now(UTC)
    if status == "approved":
        registry_writes.enqueue_association(session, item, True)
    session.commit()
    if status == "approved":
        current_app.extensions["background"].wake()  # check its health now, not in a while
        nudges.nudge([(item.domain_id, item.url)])  # it learns so, and publishes, now
    return association_out(session, item)


def remove(session: Session, operator: Principal, association_id: int) -> None:
    """`operator` removes a domain: it is no longer routed to or searched. Commits."""
    item = find_association(session, association_id)
    if item.status not in ("approved", "pending"):
        raise Conflict(f"Association {association_id} is already {item.status}.", code="ended")
    _end(session, item, "removed", operator.email)
