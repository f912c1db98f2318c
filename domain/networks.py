"""The domain's side of network membership: joining, leaving, and the sync loop.

Every `GRID_NETWORK_SYNC_S` the loop asks pending networks for their decision, pushes the
public metadata of every dataset to networks that approved the domain when it changed (and
every `GRID_NETWORK_PUSH_INTERVAL_S` regardless), and retries leaving where that failed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from urllib3.exceptions import LocationValueError

from domain import federated, registry_writes
from domain.context import config, node_identity
from domain.models import Dataset, NetworkMembership
from domain.network_calls import (
    TIMEOUT,
    NetworkRefused,
    NetworkUnavailable,
    call_network,
    error_message,
    raise_for,
)
from grid_common.db import db_session
from grid_common.errors import ApiError, Conflict
from grid_common.identity import node_id_for, verify_key_from_text
from grid_common.logs import request_id_headers
from grid_common.network_schemas import AssociationOut, NodeInfo, PublishedDataset

log = logging.getLogger(__name__)
# What a membership becomes when its network reports an association status.
_STATUS_FROM_NETWORK = {
    "pending": "pending",
    "approved": "approved",
    "rejected": "rejected",
    "removed": "removed",
    "left": "removed",
}


def fetch_network_info(url: str) -> NodeInfo:
    """Who answers at `url`; refuses anything but a network whose id matches its key."""
    try:
        response = requests.get(f"{url}/api/v1/node", headers=request_id_headers(), timeout=TIMEOUT)
    except (requests.RequestException, LocationValueError) as exc:
        # urllib3 raises LocationValueError itself (unwrapped) for a host it cannot parse.
        raise NetworkUnavailable(f"Cannot reach {url} ({type(exc).__name__}).") from None
    try:
        info = NodeInfo.model_validate(response.json()) if response.ok else None
    except ValueError:
        info = None
    if info is None or info.kind != "network":
        raise NetworkRefused(f"{url} is not a Grid network (GET /api/v1/node did not say so).")
    try:
        valid = node_id_for(bytes(verify_key_from_text(info.signing_key))) == info.id
    except ValueError:
        valid = False
    if not valid:
        raise NetworkRefused(f"{url} claims an id that its signing key does not match.")
    return info


def request_join(session: Session, network_url: str, domain_url: str) -> NetworkMembership:
    """Ask a network to take this domain in; the membership is pending until it decides."""
    info = fetch_network_info(network_url)
    membership = session.scalar(
        select(NetworkMembership).where(NetworkMembership.network_id == info.id)
    )
    if membership is not None and membership.status == "approved":
        raise Conflict(f"This domain is already a member of {info.name}.", code="already_member")
    body = {
        "name": config().name,
        "url": domain_url,
        "encryption_key": node_identity().encryption_public_key,
    }
    registry = registry_writes.current_registry()
    if registry is not None:  # so that the network can record the association on chain
        body["eth_address"] = registry.address
    response = call_network("POST", network_url, info.id, "/api/v1/associations", json_body=body)
    if response.status_code == 409 and error_message(response)[0] == "already_associated":
        # The network knows this domain as a member though this domain forgot: take it back.
        response = call_network("GET", network_url, info.id, "/api/v1/associations/self")
    raise_for(response)
    association = AssociationOut.model_validate(response.json())
    if membership is None:
        membership = NetworkMembership(network_id=info.id)
        session.add(membership)
    membership.name, membership.url, membership.domain_url = info.name, network_url, domain_url
    membership.signing_key, membership.encryption_key = info.signing_key, info.encryption_key
    membership.eth_address = info.eth_address.lower() if info.eth_address else None
    membership.status = _STATUS_FROM_NETWORK[association.status]
    membership.association_id = association.id
    membership.requested_at = datetime.now(UTC)
    membership.last_push_digest = membership.last_push_at = membership.last_error = None
    membership.next_sync_at = datetime.now(UTC)
    session.commit()
    return membership


def try_leave(session: Session, membership: NetworkMembership) -> bool:
    """Tell the network this domain leaves; forget it once told. False: try again later."""
    try:
        response = call_network(
            "DELETE", membership.url, membership.network_id, "/api/v1/associations/self"
        )
        error = None if response.status_code in (204, 404) else error_message(response)[1]
    except NetworkUnavailable as exc:
        error = exc.message
    if error is None:
        session.delete(membership)
        session.commit()
        return True
    membership.status, membership.last_error = "leaving", error
    membership.next_sync_at = datetime.now(UTC) + timedelta(seconds=config().network_sync_s)
    session.commit()
    return False


def published_datasets(session: Session) -> list[dict[str, Any]]:
    """What networks may know of each dataset: name, description, tags, schema, has a mock."""
    rows = session.execute(
        select(
            Dataset.name,
            Dataset.description,
            Dataset.tags,
            Dataset.schema,
            Dataset.label,
            Dataset.mock_digest,
        ).order_by(Dataset.name)
    )
    return [
        PublishedDataset(
            name=row.name,
            description=row.description,
            tags=row.tags,
            schema=row.schema,
            label=row.label,
            has_mock=row.mock_digest is not None,
        ).model_dump(mode="json")
        for row in rows
    ]


def _refresh_status(session: Session, membership: NetworkMembership) -> None:
    response = call_network(
        "GET", membership.url, membership.network_id, "/api/v1/associations/self"
    )
    if response.status_code == 404:
        membership.status = "removed"
        return
    raise_for(response)
    association = AssociationOut.model_validate(response.json())
    membership.status = _STATUS_FROM_NETWORK[association.status]
    membership.association_id = association.id


def _push(session: Session, membership: NetworkMembership) -> None:
    datasets = published_datasets(session)
    canonical = json.dumps(datasets, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    now = datetime.now(UTC)
    interval = timedelta(seconds=config().network_push_interval_s)
    recent = membership.last_push_at is not None and now - membership.last_push_at < interval
    if digest == membership.last_push_digest and recent:
        return
    path = f"/api/v1/index/{node_identity().node_id}/datasets"
    response = call_network(
        "PUT", membership.url, membership.network_id, path, json_body={"datasets": datasets}
    )
    if response.status_code == 403:
        _refresh_status(session, membership)  # removed or not yet approved: learn which
        return
    raise_for(response)
    membership.last_push_at, membership.last_push_digest = now, digest


def sync_membership(session: Session, membership: NetworkMembership) -> None:
    """Bring one membership up to date with its network; errors end up in `last_error`."""
    if membership.status == "leaving":
        try_leave(session, membership)
        return
    try:
        if membership.status == "pending":
            _refresh_status(session, membership)
        if membership.status == "approved":
            _push(session, membership)
            session.commit()
            federated.sync(session, membership)
        membership.last_error = None
    except ApiError as exc:
        membership.last_error = exc.message
        log.info("sync with network %s: %s", membership.network_id, exc.message)
    session.commit()


def sync_networks() -> int:
    """The background task: sync every membership that is due; returns how many were."""
    session = db_session()
    now = datetime.now(UTC)
    table = NetworkMembership.__table__.c
    due = (
        session.execute(
            update(NetworkMembership)
            .where(
                table.next_sync_at <= now,
                table.status.in_(("pending", "approved", "leaving")),
            )
            .values(next_sync_at=now + timedelta(seconds=config().network_sync_s))
            .returning(table.id)
        )
        .scalars()
        .all()
    )
    session.commit()
    for membership_id in due:
        membership = session.get(NetworkMembership, membership_id)
        if membership is not None:
            sync_membership(session, membership)
    return len(due)
