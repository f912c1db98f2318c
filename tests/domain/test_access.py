"""Every route declares its permission, and each role gets exactly the routes it should."""

from __future__ import annotations

import pytest
from flask import Blueprint, Flask
from flask.testing import FlaskClient

from domain import DomainConfig, create_app
from grid_common.api import route_spec
from grid_common.console import is_page

PEOPLE = {"anonymous", "owner", "admin", "compliance_officer", "data_scientist"}
ALL = PEOPLE | {"worker"}
SIGNED_IN = PEOPLE - {"anonymous"}
MANAGERS = {"owner", "admin"}
REVIEWERS = {"owner", "admin", "compliance_officer"}
SUBMITTERS = {"owner", "admin", "data_scientist"}
WORKERS = {"worker"}

# Written out by hand on purpose: deriving it from ROLE_PERMISSIONS would test nothing.
EXPECTED: dict[tuple[str, str], set[str]] = {
    ("GET", "/healthz"): ALL,
    ("GET", "/readyz"): ALL,
    ("GET", "/metrics"): ALL,
    ("GET", "/api/v1/openapi.json"): ALL,
    ("POST", "/api/v1/setup"): ALL,
    ("POST", "/api/v1/auth/login"): ALL,
    ("POST", "/api/v1/auth/refresh"): ALL,
    ("POST", "/api/v1/auth/logout"): SIGNED_IN,
    ("GET", "/api/v1/auth/me"): SIGNED_IN,
    ("GET", "/api/v1/users"): MANAGERS,
    ("POST", "/api/v1/users"): MANAGERS,
    ("PATCH", "/api/v1/users/<int:user_id>"): MANAGERS,
    ("POST", "/api/v1/invites"): MANAGERS,
    ("POST", "/api/v1/signup"): ALL,
    ("GET", "/api/v1/api-keys"): SIGNED_IN,
    ("POST", "/api/v1/api-keys"): SIGNED_IN,
    ("DELETE", "/api/v1/api-keys/<int:key_id>"): SIGNED_IN,
    ("GET", "/api/v1/settings"): REVIEWERS,
    ("PUT", "/api/v1/settings"): {"owner"},
    ("GET", "/api/v1/datasets"): SIGNED_IN,
    ("POST", "/api/v1/datasets"): MANAGERS,
    ("GET", "/api/v1/datasets/<name>"): SIGNED_IN,
    ("GET", "/api/v1/datasets/<name>/mock"): SIGNED_IN,
    ("GET", "/api/v1/datasets/<name>/data"): MANAGERS,
    ("DELETE", "/api/v1/datasets/<name>"): MANAGERS,
    ("POST", "/api/v1/requests/jobs"): SUBMITTERS,
    ("GET", "/api/v1/requests"): SIGNED_IN,
    ("GET", "/api/v1/requests/<int:request_id>"): SIGNED_IN,
    ("POST", "/api/v1/requests/<int:request_id>/approve"): REVIEWERS,
    ("POST", "/api/v1/requests/<int:request_id>/deny"): REVIEWERS,
    ("GET", "/api/v1/jobs"): SIGNED_IN,
    ("GET", "/api/v1/jobs/<int:job_id>"): SIGNED_IN,
    ("GET", "/api/v1/jobs/<int:job_id>/events"): SIGNED_IN,
    ("POST", "/api/v1/jobs/<int:job_id>/cancel"): SIGNED_IN,
    ("POST", "/api/v1/jobs/<int:job_id>/release"): MANAGERS,
    ("GET", "/api/v1/jobs/<int:job_id>/result"): SIGNED_IN,
    ("GET", "/api/v1/datasets/<name>/privacy-budget"): SIGNED_IN,
    ("PUT", "/api/v1/datasets/<name>/privacy-budget"): {"owner"},
    ("GET", "/api/v1/workers"): MANAGERS,
    ("POST", "/api/v1/workers"): MANAGERS,
    ("DELETE", "/api/v1/workers/<int:worker_id>"): MANAGERS,
    ("POST", "/api/v1/worker/heartbeat"): WORKERS,
    ("POST", "/api/v1/worker/lease"): WORKERS,
    ("POST", "/api/v1/worker/jobs/<int:job_id>/heartbeat"): WORKERS,
    ("POST", "/api/v1/worker/jobs/<int:job_id>/events"): WORKERS,
    ("GET", "/api/v1/worker/jobs/<int:job_id>/model"): WORKERS,
    ("GET", "/api/v1/worker/jobs/<int:job_id>/weights"): WORKERS,
    ("GET", "/api/v1/worker/jobs/<int:job_id>/datasets/<name>"): WORKERS,
    ("PUT", "/api/v1/worker/jobs/<int:job_id>/attempts/<int:attempt>/result"): WORKERS,
    ("POST", "/api/v1/worker/jobs/<int:job_id>/attempts/<int:attempt>/failure"): WORKERS,
    ("GET", "/api/v1/worker/jobs/<int:job_id>/federated/state"): WORKERS,
    ("GET", "/api/v1/worker/jobs/<int:job_id>/federated/context"): WORKERS,
    ("GET", "/api/v1/worker/jobs/<int:job_id>/federated/rounds/<int:number>/aggregate"): WORKERS,
    ("PUT", "/api/v1/worker/jobs/<int:job_id>/federated/rounds/<int:number>/update"): WORKERS,
    ("POST", "/api/v1/worker/jobs/<int:job_id>/federated/withheld"): WORKERS,
    ("GET", "/api/v1/audit"): REVIEWERS,
    ("GET", "/api/v1/audit/verify"): REVIEWERS,
    ("GET", "/api/v1/registry"): SIGNED_IN,
    ("POST", "/api/v1/registry/anchor"): REVIEWERS,
    ("GET", "/api/v1/node"): ALL,
    ("GET", "/api/v1/networks"): SIGNED_IN,
    ("POST", "/api/v1/networks"): {"owner"},
    ("DELETE", "/api/v1/networks/<network_id>"): {"owner"},
    ("POST", "/api/v1/networks/nudge"): set(),
}
# Routes only a node's signature opens (a network this domain joined: tests/network/
# test_nudges.py): a person's or a worker's token authenticates no one there.
NODE_SIGNED = {("POST", "/api/v1/networks/nudge")}

# Path values that exist nowhere, so an authorized call ends in 404/422, never in a change.
PATH_VALUES = {
    "<int:user_id>": "999",
    "<int:key_id>": "999",
    "<int:request_id>": "999",
    "<int:job_id>": "999",
    "<int:worker_id>": "999",
    "<int:attempt>": "1",
    "<int:number>": "1",
    "<network_id>": "no-such-network",
    "<name>": "no-such-dataset",
}


def routes(app: Flask) -> set[tuple[str, str]]:
    """The API's routes; console pages have their own matrix in tests/console."""
    found = set()
    for rule in app.url_map.iter_rules():
        if is_page(route_spec(app, rule.endpoint)):
            continue
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            found.add((method, rule.rule))
    return found


@pytest.fixture(scope="module")
def bare_app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    return create_app(DomainConfig(data_dir=tmp_path_factory.mktemp("bare")))


def test_every_route_declares_a_permission(bare_app: Flask) -> None:
    undeclared = [
        rule.rule
        for rule in bare_app.url_map.iter_rules()
        if route_spec(bare_app, rule.endpoint) is None
    ]
    assert undeclared == []


def test_the_expected_matrix_covers_every_route(bare_app: Flask) -> None:
    assert routes(bare_app) == set(EXPECTED)


def test_a_route_without_a_declared_permission_is_refused(tmp_path) -> None:
    app = create_app(
        DomainConfig(data_dir=tmp_path, owner_email="o@example.org", owner_password="password1")
    )
    rogue = Blueprint("rogue", __name__)
    rogue.add_url_rule("/rogue", "rogue", lambda: "secret")
    app.register_blueprint(rogue)
    response = app.test_client().get("/rogue")
    assert response.status_code == 403
    assert "declares no permission" in response.json["error"]["message"]


@pytest.mark.parametrize("role", sorted(ALL))
def test_role_matrix(client: FlaskClient, headers: dict[str, dict[str, str]], role: str) -> None:
    for (method, rule), allowed in sorted(EXPECTED.items()):
        path = rule
        for placeholder, value in PATH_VALUES.items():
            path = path.replace(placeholder, value)
        response = client.open(path, method=method, headers=headers[role], json={})
        where = (
            f"{role} {method} {path} -> {response.status_code} {response.get_data(as_text=True)}"
        )
        if role in allowed:
            assert response.status_code not in (401, 403), where
        elif role == "anonymous" or (method, rule) in NODE_SIGNED:
            assert response.status_code == 401, where
        else:
            assert response.status_code == 403, where
        assert response.status_code < 500, where
