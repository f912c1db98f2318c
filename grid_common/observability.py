"""Operations for every node: request ids, JSON logs, Prometheus metrics, readiness checks."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import requests
from flask import Flask, Response, g, jsonify, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
)
from prometheus_client import generate_latest as _generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, MetaData, Table, func, inspect, select
from sqlalchemy.orm import Session

from grid_common import logs
from grid_common.errors import error_response
from grid_common.migrations import schema_problem

log = logging.getLogger(__name__)
access_log = logging.getLogger("grid.access")

# Probes and scrapes arrive every few seconds; their access lines would drown the rest.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
CHAIN_TIMEOUT: tuple[float, float] = (2.0, 3.0)


# --- metrics --------------------------------------------------------------------

# `*_created` series double every counter's output and no Grid dashboard needs them.
disable_created_metrics()

REQUESTS = Counter(
    "grid_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
    registry=None,
)
LATENCY = Histogram(
    "grid_http_request_duration_seconds",
    "Time to answer an HTTP request (to the first byte of a streamed body), by route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=None,
)

Gauges = Callable[[], Iterable[Metric]]
"""A node's scrape-time gauges, read from its database."""


def gauge(name: str, documentation: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=list(labels))


class _ScrapeCollector:
    """Runs the node's gauges at scrape time; a failing database shows as `grid_database_up 0`."""

    def __init__(self, gauges: Gauges) -> None:
        self.gauges = gauges

    def collect(self) -> Iterable[Metric]:
        up = gauge("grid_database_up", "1 when the scrape could read the node's database.")
        try:
            families = list(self.gauges())
        except Exception as exc:
            log.warning("metrics: cannot read the database (%s)", type(exc).__name__)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *families]


def multiprocess_dir() -> str | None:
    """Where gunicorn's worker processes share their counters (see grid_common.gunicorn_conf)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def render_metrics(gauges: Gauges) -> Response:
    """The Prometheus text exposition of this node: request metrics plus its gauges."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        MultiProcessCollector(registry)
    else:
        registry.register(REQUESTS)
        registry.register(LATENCY)
    registry.register(_ScrapeCollector(gauges))
    return Response(_generate_latest(registry), mimetype=CONTENT_TYPE_LATEST.split(";")[0])


# --- readiness ------------------------------------------------------------------


class NotReady(Exception):
    """A readiness check failed; the message says why without naming secrets."""


def check_database(engine: Engine, script_location: Path) -> Callable[[], None]:
    def check() -> None:
        try:
            problem = schema_problem(engine, script_location)
        except Exception as exc:
            raise NotReady(f"database unreachable ({type(exc).__name__})") from None
        if problem:
            raise NotReady(problem)

    return check


def check_writable(directory: Path, what: str) -> Callable[[], None]:
    def check() -> None:
        try:
            fd, name = tempfile.mkstemp(dir=directory, prefix=".ready-")
            try:
                os.write(fd, b"ok")
            finally:
                os.close(fd)
                os.unlink(name)
        except OSError as exc:
            raise NotReady(f"{what} is not writable ({type(exc).__name__})") from None

    return check


def check_chain(rpc_url: str) -> Callable[[], None]:
    # The URL may carry a provider's API key, so no message names it.
    def check() -> None:
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
        try:
            response = requests.post(rpc_url, json=body, timeout=CHAIN_TIMEOUT)
        except requests.RequestException as exc:
            raise NotReady(f"chain RPC unreachable ({type(exc).__name__})") from None
        try:
            answer = response.json() if response.ok else None
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or "result" not in answer:
            raise NotReady(f"chain RPC gave no chain id (HTTP {response.status_code})")

    return check


def readiness(checks: Mapping[str, Callable[[], None]], skip: Iterable[str] = ()) -> Response:
    """200 with every check's result, or 503 naming the checks that failed."""
    skipped = set(skip)
    results: dict[str, dict[str, Any]] = {}
    for name, check in checks.items():
        if name in skipped:
            results[name] = {"ok": True, "skipped": True}
            continue
        try:
            check()
            results[name] = {"ok": True}
        except NotReady as exc:
            results[name] = {"ok": False, "error": str(exc)}
    failed = [f"{name}: {r['error']}" for name, r in results.items() if not r["ok"]]
    if failed:
        return error_response(503, "not_ready", "Not ready: " + "; ".join(failed), checks=results)
    return jsonify(status="ready", checks=results)


# --- the app hooks --------------------------------------------------------------


def init_app(app: Flask, gauges: Gauges) -> None:
    """Give every request an id, a log line and its metrics; call before any other hook."""
    app.extensions["metrics_gauges"] = gauges
    app.before_request(_begin)
    app.after_request(_finish)
    app.teardown_request(_end)


def _begin() -> None:
    rid = logs.accept_request_id(request.headers.get(logs.REQUEST_ID_HEADER))
    g.request_id = rid
    g.request_started = time.perf_counter()
    logs.set_request_id(rid)


def _finish(response: Response) -> Response:
    rid = g.get("request_id") or logs.accept_request_id(None)
    response.headers[logs.REQUEST_ID_HEADER] = rid
    elapsed = time.perf_counter() - g.get("request_started", time.perf_counter())
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    status = str(response.status_code)
    REQUESTS.labels(request.method, route, status).inc()
    LATENCY.labels(request.method, route).observe(elapsed)
    level = logging.DEBUG if request.path in _QUIET_PATHS else logging.INFO
    access_log.log(
        level,
        "%s %s %s %.1fms",
        request.method,
        request.path,
        status,
        elapsed * 1000,
        extra={
            "method": request.method,
            "path": request.path,
            "route": route,
            "status": response.status_code,
            "duration_ms": round(elapsed * 1000, 2),
        },
    )
    return response


def _end(_exc: BaseException | None) -> None:
    logs.set_request_id(None)


# --- shared pieces of the nodes' routes -------------------------------------------

CheckName = Literal["database", "blobs", "chain"]


class ReadyQuery(BaseModel):
    """`/readyz?skip=chain`: leave a check out (a chain outage only delays registry writes)."""

    model_config = ConfigDict(extra="forbid")

    skip: list[CheckName] = Field(default_factory=list, description="checks to leave out")


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    checks: dict[str, dict[str, Any]]


def counts_by(session: Session, table: str, column: str = "status") -> dict[str, int]:
    """Rows of `table` per value of `column`; empty when this node's schema has no such table
    (a table that a later migration adds is counted once it exists)."""
    connection = session.connection()
    if not inspect(connection).has_table(table):
        return {}
    target = Table(table, MetaData(), autoload_with=connection)
    if column not in target.c:
        return {}
    rows = connection.execute(select(target.c[column], func.count()).group_by(target.c[column]))
    return {str(value): int(count) for value, count in rows}
