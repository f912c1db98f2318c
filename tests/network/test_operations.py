"""A network's probes and metrics, and one request id across domain and network logs."""

from __future__ import annotations

import io
import json
import logging
import shutil
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.serving import make_server

from tests.network.conftest import Signer, approved

ACCESS = "grid.access"


@pytest.fixture
def access_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The access log of every node in this process, as parsed JSON lines."""
    from grid_common.logs import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(ACCESS)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def serve(app: Flask) -> Iterator[str]:
    """Serve `app` over real HTTP from a thread; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def network_url(network_app: Flask) -> Iterator[str]:
    yield from serve(network_app)


@pytest.fixture
def domain_url(app: Flask) -> Iterator[str]:
    yield from serve(app)


def test_healthz_readyz_and_metrics(network: FlaskClient, network_app: Flask) -> None:
    assert network.get("/healthz").status_code == 200
    ready = network.get("/readyz")
    assert ready.status_code == 200, ready.json
    assert set(ready.json["checks"]) == {"database", "blobs"}

    body = network.get("/metrics").get_data(as_text=True)
    names = {family.name for family in text_string_to_metric_families(body)}
    assert {
        "grid_http_requests",
        "grid_http_request_duration_seconds",
        "grid_database_up",
        "grid_domains",
        "grid_domains_online",
        "grid_indexed_datasets",
        "grid_federated_rounds",
    } <= names
    assert 'grid_http_requests_total{method="GET",route="/readyz",status="200"}' in body


def test_metrics_count_domains_by_status(
    network: FlaskClient, operator: dict[str, str], make_signer: Callable[[], Signer]
) -> None:
    approved(make_signer(), network, operator, name="a")
    make_signer().join(name="b")
    samples = {
        (s.name, tuple(s.labels.items())): s.value
        for family in text_string_to_metric_families(network.get("/metrics").get_data(as_text=True))
        for s in family.samples
    }
    assert samples[("grid_domains", (("status", "approved"),))] == 1
    assert samples[("grid_domains", (("status", "pending"),))] == 1


def test_readyz_names_a_blob_store_that_cannot_be_written(
    network: FlaskClient, network_app: Flask
) -> None:
    staging = network_app.extensions["blobs"].tmp
    shutil.rmtree(staging)
    staging.write_text("a file where the staging directory belongs")  # even root cannot write
    response = network.get("/readyz")
    assert response.status_code == 503
    assert response.json["error"]["checks"]["blobs"]["ok"] is False
    assert "blobs" in response.json["error"]["message"]
    assert network.get("/healthz").status_code == 200


def test_a_domain_request_id_reaches_the_network_log(
    client: FlaskClient,
    headers: dict[str, dict[str, str]],
    network_url: str,
    access_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    joined = client.post(
        "/api/v1/networks",
        json={"url": network_url, "domain_url": "http://127.0.0.1:9"},
        headers={**headers["owner"], "X-Request-Id": "join-trace-42"},
    )
    assert joined.status_code == 201, joined.json
    assert joined.headers["X-Request-Id"] == "join-trace-42"
    traced = {(line["path"], line["request_id"]) for line in access_lines()}
    # The network's lines for the domain's calls carry the id the owner's call came with.
    assert ("/api/v1/node", "join-trace-42") in traced
    assert ("/api/v1/associations", "join-trace-42") in traced
    assert ("/api/v1/networks", "join-trace-42") in traced


@pytest.mark.parametrize("given", ["route-trace-7", "not valid!"])
def test_a_routed_call_carries_the_networks_request_id_to_the_domain(
    network: FlaskClient,
    operator: dict[str, str],
    make_signer: Callable[[], Signer],
    domain_url: str,
    access_lines: Callable[[], list[dict[str, Any]]],
    given: str,
) -> None:
    member = make_signer()
    approved(member, network, operator, url=domain_url)
    routed = network.get(f"/api/v1/domains/{member.id}/healthz", headers={"X-Request-Id": given})
    assert routed.status_code == 200
    rid = routed.headers["X-Request-Id"]
    assert rid == given if given == "route-trace-7" else len(rid) == 32
    at_domain = [line for line in access_lines() if line["path"] == "/healthz"]
    assert [line["request_id"] for line in at_domain] == [rid]
