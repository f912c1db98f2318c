"""What an operator's probes, Prometheus and log shipper get from a domain."""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from domain import DomainConfig, create_app
from grid_cli.local.launch import DomainLaunch
from grid_common.logs import JsonFormatter
from tests.conftest import free_port, wait_for_http
from tests.domain.test_jobs import approved_job, lease
from tests.domain.uploads import file_job, upload


def scrape(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, keyed by name and sorted labels."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def requests_counted(samples: dict, route: str, status: str) -> float:
    labels = (("method", "GET"), ("route", route), ("status", status))
    return samples.get(("grid_http_requests_total", labels), 0.0)


@pytest.fixture
def access_lines() -> Iterator[io.StringIO]:
    """What the domain's access log writes, formatted as JSON lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(node="test-domain"))
    logger = logging.getLogger("grid.access")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_healthz_and_readyz_on_a_healthy_domain(client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == 200, response.json
    assert response.json == {
        "status": "ready",
        "checks": {"database": {"ok": True}, "blobs": {"ok": True}},
    }


def test_readyz_names_a_blob_store_that_cannot_be_written(app: Flask, client: FlaskClient) -> None:
    staging = app.extensions["blobs"].tmp
    shutil.rmtree(staging)
    staging.write_text("a file where the staging directory belongs")  # even root cannot write
    response = client.get("/readyz")
    assert response.status_code == 503
    error = response.json["error"]
    assert error["code"] == "not_ready"
    assert "blobs" in error["message"]
    assert error["checks"]["blobs"]["ok"] is False
    assert error["checks"]["database"] == {"ok": True}
    assert client.get("/healthz").status_code == 200  # alive, just not ready


def test_readyz_names_a_database_that_is_not_migrated(app: Flask, client: FlaskClient) -> None:
    engine = app.extensions["database"].engine
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json["error"]["checks"]
    assert checks["database"] == {"ok": False, "error": checks["database"]["error"]}
    assert "revision 0001" in checks["database"]["error"]


def test_readyz_names_a_configured_chain_that_cannot_be_reached(
    domain_config: DomainConfig,
) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}/secret-api-key"
    config = replace(
        domain_config,
        chain_rpc_url=unreachable,
        registry_address="0x" + "11" * 20,
        background=False,
    )
    app = create_app(config)
    try:
        client = app.test_client()
        response = client.get("/readyz")
        assert response.status_code == 503
        error = response.json["error"]
        assert error["checks"]["chain"]["ok"] is False
        assert "chain" in error["message"]
        assert "secret-api-key" not in response.get_data(as_text=True)
        # An operator may keep serving through a chain outage: writes wait in the outbox.
        skipped = client.get("/readyz?skip=chain")
        assert skipped.status_code == 200
        assert skipped.json["checks"]["chain"] == {"ok": True, "skipped": True}
        assert "grid_registry_outbox_depth" in client.get("/metrics").get_data(as_text=True)
    finally:
        app.extensions["database"].engine.dispose()


@pytest.mark.parametrize("skip", ["everything", "", "database,blobs"])
def test_readyz_refuses_unknown_checks_to_skip(client: FlaskClient, skip: str) -> None:
    response = client.get(f"/readyz?skip={skip}")
    assert response.status_code == 422
    assert response.json["error"]["code"] == "invalid"


def test_metrics_count_requests_by_route_and_status(
    client: FlaskClient, headers: dict[str, dict[str, str]]
) -> None:
    before = scrape(client)
    for _ in range(3):
        assert client.get("/api/v1/jobs", headers=headers["owner"]).status_code == 200
    assert client.get("/api/v1/jobs").status_code == 401
    assert client.get("/api/v1/datasets/nope", headers=headers["owner"]).status_code == 404
    after = scrape(client)

    def added(route: str, status: str) -> float:
        return requests_counted(after, route, status) - requests_counted(before, route, status)

    assert added("/api/v1/jobs", "200") == 3
    assert added("/api/v1/jobs", "401") == 1
    # Routes are templates, so a dataset's name never becomes a label.
    assert added("/api/v1/datasets/<name>", "404") == 1
    assert not any("nope" in str(labels) for _, labels in after)
    latency = (
        "grid_http_request_duration_seconds_count",
        (("method", "GET"), ("route", "/api/v1/jobs")),
    )
    assert after[latency] - before.get(latency, 0) == 4


def test_metrics_show_jobs_by_state_and_worker_heartbeats(
    client: FlaskClient, headers: dict[str, dict[str, str]], model_files: tuple[bytes, bytes]
) -> None:
    assert upload(client, headers["owner"], "digits-a").status_code == 201
    filed = file_job(client, headers["data_scientist"], model_files, {"loss": "cross_entropy"})
    assert filed.status_code == 201, filed.json
    approved_job(client, headers, model_files)
    approved_job(client, headers, model_files)
    samples = scrape(client)
    assert samples[("grid_jobs", (("state", "pending_approval"),))] == 1
    assert samples[("grid_jobs", (("state", "queued"),))] == 2
    assert samples[("grid_workers", (("state", "never"),))] == 1
    assert samples[("grid_database_up", ())] == 1

    assert lease(client, headers["worker"]) is not None
    samples = scrape(client)
    assert samples[("grid_jobs", (("state", "queued"),))] == 1
    assert samples[("grid_jobs", (("state", "running"),))] == 1
    assert samples[("grid_workers", (("state", "live"),))] == 1
    beats = [v for (name, _), v in samples.items() if name.startswith("grid_worker_last_heart")]
    assert len(beats) == 1 and beats[0] > 0
    assert samples[("grid_registry_outbox_depth", ())] == 0  # no chain configured


def test_metrics_hold_nothing_private(
    client: FlaskClient, headers: dict[str, dict[str, str]]
) -> None:
    assert upload(client, headers["owner"], "secret-cohort").status_code == 201
    body = client.get("/metrics").get_data(as_text=True)
    for private in ("secret-cohort", "owner@example.org", "test-worker", "Bearer"):
        assert private not in body


def test_a_request_id_is_kept_or_made_and_in_every_access_line(
    client: FlaskClient, access_lines: io.StringIO
) -> None:
    kept = client.get("/api/v1/jobs", headers={"X-Request-Id": "trace-0001.a:b"})
    assert kept.headers["X-Request-Id"] == "trace-0001.a:b"
    made = client.get("/api/v1/jobs")
    assert len(made.headers["X-Request-Id"]) == 32
    lines = [json.loads(line) for line in access_lines.getvalue().splitlines()]
    assert [line["request_id"] for line in lines] == [
        "trace-0001.a:b",
        made.headers["X-Request-Id"],
    ]
    first = lines[0]
    assert first["route"] == "/api/v1/jobs"
    assert first["status"] == 401
    assert first["level"] == "info"
    assert first["node"] == "test-domain"
    assert "Authorization" not in json.dumps(lines)


@pytest.mark.parametrize(
    "bad", ["has space", "x" * 129, "-leading-dash", "semi;colon", 'quo"te', "ümlaut"]
)
def test_a_malformed_request_id_is_replaced(client: FlaskClient, bad: str) -> None:
    response = client.get("/healthz", headers={"X-Request-Id": bad.encode().decode("latin-1")})
    assert response.status_code == 200
    rid = response.headers["X-Request-Id"]
    assert rid != bad and len(rid) == 32


def test_gunicorn_workers_add_up_their_metrics_and_log_json(
    database_url: str, tmp_path: Path
) -> None:
    launch = DomainLaunch(name="live-ops", port=free_port(), data_dir=tmp_path / "node", workers=3)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {
        **launch.environment(),
        "GRID_DATABASE_URL": database_url,
        "GRID_LOG_FORMAT": "json",
        "TMPDIR": str(scratch),  # where gunicorn_conf makes the shared metrics directory
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    url = f"http://127.0.0.1:{launch.port}"
    log_path = tmp_path / "node.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(launch.gunicorn_command(), env=env, stdout=log, stderr=log)
        try:
            wait_for_http(f"{url}/healthz", process)
            with requests.Session() as session:
                for n in range(30):
                    answer = session.get(f"{url}/api/v1/jobs", headers={"X-Request-Id": f"n-{n}"})
                    assert answer.status_code == 503  # no owner yet: setup_required
                metrics = session.get(f"{url}/metrics").text
            assert any(scratch.iterdir())
        finally:
            process.terminate()
            process.wait(timeout=30)
    counted = re.search(
        r'grid_http_requests_total\{method="GET",route="/api/v1/jobs",status="503"\} (\S+)',
        metrics,
    )
    assert counted is not None and float(counted.group(1)) == 30  # whichever worker answered
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    traced = {line["request_id"] for line in lines if line.get("route") == "/api/v1/jobs"}
    assert traced == {f"n-{n}" for n in range(30)}
    assert {line["logger"] for line in lines} >= {"gunicorn.error", "grid.access"}
    assert list(scratch.iterdir()) == []  # removed when gunicorn stopped
