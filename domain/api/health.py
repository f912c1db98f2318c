"""Liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, get_args

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client.core import Metric
from sqlalchemy import func, select

from domain import migrate
from domain.auth import is_set_up
from domain.context import blobs, config
from domain.models import AccessRequest, Job, RegistryOutboxEntry, Worker
from domain.workers import heard_within
from grid_common import observability
from grid_common.api import PUBLIC, build_openapi, route
from grid_common.db import Database, db_session
from grid_common.observability import Readiness, ReadyQuery, gauge
from grid_common.schemas import Health, JobStatus

bp = Blueprint("health", __name__)


@route(
    bp,
    "/healthz",
    permission=PUBLIC,
    summary="The process is up",
    response=Health,
    before_setup=True,
)
def healthz() -> Health:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    return Health(node=config().name, setup_required=not is_set_up(app))


@route(
    bp,
    "/readyz",
    permission=PUBLIC,
    summary="Ready for traffic: database migrated, blob store writable, chain reachable (when "
    "configured); 503 names the checks that failed",
    query=ReadyQuery,
    response=Readiness,
    before_setup=True,
)
def readyz(query: ReadyQuery) -> Response:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    database: Database = app.extensions["database"]
    checks: dict[str, Callable[[], None]] = {
        "database": observability.check_database(database.engine, migrate.MIGRATIONS),
        "blobs": observability.check_writable(blobs().tmp, "blob store"),
    }
    if config().chain_rpc_url:
        checks["chain"] = observability.check_chain(config().chain_rpc_url)
    return observability.readiness(checks, query.skip)


@route(
    bp,
    "/metrics",
    permission=PUBLIC,
    summary="Prometheus metrics: requests, jobs by state, registry outbox, worker heartbeats "
    "(counts only)",
    before_setup=True,
)
def metrics() -> Response:
    return observability.render_metrics(domain_gauges)


def domain_gauges() -> Iterable[Metric]:
    """Read at scrape time, so every replica and process reports the same numbers."""
    session = db_session()
    jobs = gauge(
        "grid_jobs", "Jobs by state (pending_approval and denied are requests).", ["state"]
    )
    by_state = dict.fromkeys(get_args(JobStatus), 0)
    pending = select(AccessRequest.status, func.count()).where(
        AccessRequest.kind == "job", AccessRequest.status.in_(("pending", "denied"))
    )
    for status, count in session.execute(pending.group_by(AccessRequest.status)):
        by_state["pending_approval" if status == "pending" else "denied"] = count
    for status, count in session.execute(select(Job.status, func.count()).group_by(Job.status)):
        by_state[status] = count
    for state, count in by_state.items():
        jobs.add_metric([state], count)

    outbox = gauge(
        "grid_registry_outbox_entries", "Registry writes in the outbox, by status.", ["status"]
    )
    entries = dict.fromkeys(("pending", "signed", "confirmed", "failed"), 0)
    rows = select(RegistryOutboxEntry.status, func.count()).group_by(RegistryOutboxEntry.status)
    entries.update({status: count for status, count in session.execute(rows)})
    for status, count in entries.items():
        outbox.add_metric([status], count)
    depth = gauge("grid_registry_outbox_depth", "Registry writes not yet on chain.")
    depth.add_metric([], entries["pending"] + entries["signed"])

    live_after = datetime.now(UTC) - heard_within()
    workers = gauge(
        "grid_workers",
        "Registered workers: live (heard from within the job lease and the lease wait), stale, "
        "or never seen.",
        ["state"],
    )
    beats = gauge(
        "grid_worker_last_heartbeat_timestamp_seconds",
        "When each registered worker last sent a heartbeat (Unix time).",
        ["worker_id"],
    )
    states = dict.fromkeys(("live", "stale", "never"), 0)
    registered = select(Worker.id, Worker.last_heartbeat_at).where(Worker.revoked_at.is_(None))
    for worker_id, last in session.execute(registered.order_by(Worker.id)):
        if last is None:
            states["never"] += 1
            continue
        states["live" if last >= live_after else "stale"] += 1
        beats.add_metric([str(worker_id)], last.timestamp())
    for state, count in states.items():
        workers.add_metric([state], count)
    session.close()  # a scrape must not hold a connection (or SQLite's write lock) after it
    return [jobs, outbox, depth, workers, beats]


@route(
    bp,
    "/api/v1/openapi.json",
    permission=PUBLIC,
    summary="This API as OpenAPI 3",
    before_setup=True,
)
def openapi() -> Any:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    document = app.extensions.get("openapi")
    if document is None:
        document = build_openapi(app, title=f"Grid domain API ({config().name})", version="1")
        app.extensions["openapi"] = document
    return jsonify(document)
