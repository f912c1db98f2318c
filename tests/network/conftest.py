"""Fixtures: a fresh network database per test on each backend, apps, signed calls, live nodes."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from grid_common.db import make_engine
from grid_common.identity import NodeIdentity
from grid_common.signing import sign_headers
from network import NetworkConfig, create_app, migrate
from tests.conftest import (
    OWNER_EMAIL,
    OWNER_PASSWORD,
    PostgresDatabases,
    free_port,
    gunicorn_command,
    server_environment,
    stop_server,
    wait_for_http,
)

OPERATOR_EMAIL = "operator@example.org"
OPERATOR_PASSWORD = "operator-password"
NETWORK_NAME = "test-network"


@pytest.fixture(scope="session")
def network_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("network-template") / "network.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture
def network_database_url(
    database_url: str,
    tmp_path: Path,
    network_sqlite_template: Path,
    postgres: PostgresDatabases | None,
) -> Iterator[str]:
    """A fresh, migrated network database on the same backend as this test's `database_url`."""
    if database_url.startswith("sqlite"):
        path = tmp_path / "network-db" / "network.db"
        path.parent.mkdir()
        shutil.copy(network_sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    assert postgres is not None
    name = postgres.fresh(migrated=False)
    engine = make_engine(postgres.url(name))
    migrate.upgrade(engine)
    engine.dispose()
    yield postgres.url(name)
    postgres.drop(name)


@pytest.fixture
def network_config(network_database_url: str, tmp_path: Path) -> NetworkConfig:
    return NetworkConfig(
        data_dir=tmp_path / "network",
        name=NETWORK_NAME,
        database_url=network_database_url,
        operator_email=OPERATOR_EMAIL,
        operator_password=OPERATOR_PASSWORD,
        background=False,
    )


@pytest.fixture
def network_app(network_config: NetworkConfig) -> Iterator[Flask]:
    application = create_app(network_config)
    yield application
    application.extensions["background"].stop()
    application.extensions["database"].engine.dispose()


@pytest.fixture
def network(network_app: Flask) -> FlaskClient:
    return network_app.test_client()


@pytest.fixture
def operator(network: FlaskClient) -> dict[str, str]:
    """Authorization headers of the network's operator."""
    response = network.post(
        "/api/v1/auth/login", json={"email": OPERATOR_EMAIL, "password": OPERATOR_PASSWORD}
    )
    assert response.status_code == 200, response.json
    return {"Authorization": f"Bearer {response.json['access_token']}"}


class Signer:
    """Signed calls to the in-process network as one domain node."""

    def __init__(self, client: FlaskClient, recipient: str) -> None:
        self.client = client
        self.recipient = recipient
        self.identity = NodeIdentity.generate()

    @property
    def id(self) -> str:
        return self.identity.node_id

    def headers(self, method: str, path: str, body: bytes = b"", **over: Any) -> dict[str, str]:
        return sign_headers(
            self.identity, method=method, target=path, body=body, recipient=self.recipient, **over
        )

    def call(self, method: str, path: str, body: Any = None, **overrides: Any) -> TestResponse:
        raw = b"" if body is None else json.dumps(body).encode()
        headers = self.headers(method, path, raw, **overrides)
        if body is not None:
            headers["Content-Type"] = "application/json"
        return self.client.open(path, method=method, data=raw, headers=headers)

    def join(self, name: str = "hospital-a", url: str = "http://127.0.0.1:9") -> TestResponse:
        body = {"name": name, "url": url, "encryption_key": self.identity.encryption_public_key}
        return self.call("POST", "/api/v1/associations", body)

    def push(self, datasets: list[dict[str, Any]]) -> TestResponse:
        return self.call("PUT", f"/api/v1/index/{self.id}/datasets", {"datasets": datasets})


@pytest.fixture
def make_signer(network: FlaskClient, network_app: Flask) -> Callable[[], Signer]:
    recipient = network_app.extensions["identity"].node_id
    return lambda: Signer(network, recipient)


def approved(signer: Signer, network: FlaskClient, operator: dict[str, str], **join: str) -> int:
    """Join as `signer` and have the operator approve; returns the association id."""
    response = signer.join(**join)
    assert response.status_code == 201, response.json
    association_id: int = response.json["id"]
    decided = network.post(
        f"/api/v1/associations/{association_id}/approve", json={}, headers=operator
    )
    assert decided.status_code == 200, decided.json
    return association_id


def dataset(name: str, **fields: Any) -> dict[str, Any]:
    """A dataset's published metadata as a domain pushes it."""
    columns = fields.pop("columns", ["f0", "f1", "target"])
    return {
        "name": name,
        "description": fields.pop("description", ""),
        "tags": fields.pop("tags", []),
        "schema": {
            "format": "csv",
            "columns": [{"name": c, "dtype": "int64", "shape": []} for c in columns],
            "row_count": fields.pop("rows", 30),
        },
        "has_mock": fields.pop("has_mock", True),
        **fields,
    }


# --- live processes -------------------------------------------------------------


class LiveNode:
    """A node under gunicorn on a free loopback port."""

    def __init__(self, module: str, env: dict[str, str], log_path: Path, workers: int = 2) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            gunicorn_command(module, self.port, workers=workers, threads=4),
            env=server_environment(env),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_http(f"{self.url}/healthz", self.process)
        except BaseException:
            self.stop()
            raise

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(p) for p in children.read_text().split()]

    def stop(self) -> None:
        stop_server(self.process)
        self.log.close()


@pytest.fixture
def live_network(network_database_url: str, tmp_path: Path) -> Iterator[LiveNode]:
    node = LiveNode(
        "network",
        {
            "GRID_DATA_DIR": str(tmp_path / "live-network"),
            "GRID_DATABASE_URL": network_database_url,
            "GRID_NODE_NAME": NETWORK_NAME,
            "GRID_OPERATOR_EMAIL": OPERATOR_EMAIL,
            "GRID_OPERATOR_PASSWORD": OPERATOR_PASSWORD,
            "GRID_HEALTH_INTERVAL_S": "0.5",
        },
        tmp_path / "network.log",
    )
    yield node
    node.stop()


@pytest.fixture
def live_member(database_url: str, tmp_path: Path) -> Iterator[LiveNode]:
    """A domain that syncs with its networks twice a second."""
    node = LiveNode(
        "domain",
        {
            "GRID_DATA_DIR": str(tmp_path / "live-domain"),
            "GRID_DATABASE_URL": database_url,
            "GRID_NODE_NAME": "hospital-a",
            "GRID_OWNER_EMAIL": OWNER_EMAIL,
            "GRID_OWNER_PASSWORD": OWNER_PASSWORD,
            "GRID_NETWORK_SYNC_S": "0.5",
        },
        tmp_path / "domain.log",
    )
    yield node
    node.stop()
