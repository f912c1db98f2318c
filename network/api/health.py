"""Liveness, readiness, metrics, the node's public identity, and the OpenAPI document."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, get_args

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client.core import Metric
from sqlalchemy import func, select

from grid_common import observability
from grid_common.api import PUBLIC, build_openapi, route
from grid_common.db import Database, db_session
from grid_common.network_schemas import AssociationStatus, NodeInfo
from grid_common.observability import Readiness, ReadyQuery, counts_by, gauge
from grid_common.schemas import Health
from network import migrate
from network.auth import is_set_up
from network.context import blobs, config, node_identity
from network.models import Association, IndexedDataset
from network.registry_writes import current_registry

bp = Blueprint("health", __name__)


@route(bp, "/healthz", permission=PUBLIC, summary="The process is up", response=Health)
def healthz() -> Health:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    return Health(node=config().name, kind="network", setup_required=not is_set_up(app))


@route(
    bp,
    "/readyz",
    permission=PUBLIC,
    summary="Ready for traffic: database migrated, blob store writable; 503 names the checks "
    "that failed",
    query=ReadyQuery,
    response=Readiness,
)
def readyz(query: ReadyQuery) -> Response:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    database: Database = app.extensions["database"]
    checks: dict[str, Callable[[], None]] = {
        "database": observability.check_database(database.engine, migrate.MIGRATIONS),
        "blobs": observability.check_writable(blobs().tmp, "blob store"),
    }
    return observability.readiness(checks, query.skip)


@route(
    bp,
    "/metrics",
    permission=PUBLIC,
    summary="Prometheus metrics: requests, domains, indexed datasets, federated jobs and rounds "
    "(counts only)",
)
def metrics() -> Response:
    return observability.render_metrics(network_gauges)


def network_gauges() -> Iterable[Metric]:
    """Read at scrape time, so every replica and process reports the same numbers."""
    session = db_session()
    domains = gauge("grid_domains", "Domain associations by status.", ["status"])
    by_status = dict.fromkeys(get_args(AssociationStatus), 0)
    rows = select(Association.status, func.count()).group_by(Association.status)
    by_status.update({status: count for status, count in session.execute(rows)})
    for status, count in by_status.items():
        domains.add_metric([status], count)
    online = gauge("grid_domains_online", "Approved domains that answered their last check.")
    online.add_metric(
        [],
        session.scalar(
            select(func.count()).where(Association.status == "approved", Association.online)
        )
        or 0,
    )
    datasets = gauge("grid_indexed_datasets", "Datasets in the search index.")
    datasets.add_metric([], session.scalar(select(func.count(IndexedDataset.id))) or 0)
    jobs = gauge("grid_federated_jobs", "Federated jobs by status.", ["status"])
    for status, count in counts_by(session, "federated_jobs").items():
        jobs.add_metric([status], count)
    rounds = gauge("grid_federated_rounds", "Federated rounds by status.", ["status"])
    for status, count in counts_by(session, "federated_rounds").items():
        rounds.add_metric([status], count)
    session.close()  # a scrape must not hold a connection after it
    return [domains, online, datasets, jobs, rounds]


@route(
    bp,
    "/api/v1/node",
    permission=PUBLIC,
    summary="This node's id and public keys",
    response=NodeInfo,
)
def node() -> NodeInfo:
    me = node_identity()
    return NodeInfo(
        id=me.node_id,
        name=config().name,
        kind="network",
        signing_key=me.signing_public_key,
        encryption_key=me.encryption_public_key,
        eth_address=registry.address if (registry := current_registry()) else None,
    )


@route(bp, "/api/v1/openapi.json", permission=PUBLIC, summary="This API as OpenAPI 3")
def openapi() -> Any:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    document = app.extensions.get("openapi")
    if document is None:
        document = build_openapi(app, title=f"Grid network API ({config().name})", version="1")
        app.extensions["openapi"] = document
    return jsonify(document)
