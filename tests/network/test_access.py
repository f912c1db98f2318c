"""Every network route declares its access, and each kind of caller gets exactly its routes."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from grid_common.api import route_spec
from tests.network.conftest import Signer, approved

ALL = {"anonymous", "operator", "member", "stranger"}
OPERATOR = {"operator"}
NODES = {"member", "stranger"}

# Written out by hand on purpose: deriving it from the route declarations would test nothing.
EXPECTED: dict[tuple[str, str], set[str]] = {
    ("GET", "/healthz"): ALL,
    ("GET", "/api/v1/node"): ALL,
    ("GET", "/api/v1/openapi.json"): ALL,
    ("POST", "/api/v1/setup"): ALL,
    ("POST", "/api/v1/auth/login"): ALL,
    ("POST", "/api/v1/auth/refresh"): ALL,
    ("POST", "/api/v1/auth/logout"): OPERATOR,
    ("GET", "/api/v1/auth/me"): OPERATOR,
    ("GET", "/api/v1/operators"): OPERATOR,
    ("POST", "/api/v1/operators"): OPERATOR,
    ("POST", "/api/v1/associations"): NODES,
    ("GET", "/api/v1/associations/self"): NODES,
    ("DELETE", "/api/v1/associations/self"): NODES,
    ("GET", "/api/v1/associations"): OPERATOR,
    ("GET", "/api/v1/associations/<int:association_id>"): OPERATOR,
    ("POST", "/api/v1/associations/<int:association_id>/approve"): OPERATOR,
    ("POST", "/api/v1/associations/<int:association_id>/reject"): OPERATOR,
    ("DELETE", "/api/v1/associations/<int:association_id>"): OPERATOR,
    ("PUT", "/api/v1/index/<domain_id>/datasets"): {"member"},
    ("GET", "/api/v1/domains"): ALL,
    ("GET", "/api/v1/search"): ALL,
    **{
        (method, "/api/v1/domains/<domain_id>/<path:rest>"): ALL
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
    },
}


def routes(app: Flask) -> set[tuple[str, str]]:
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }


def test_every_route_declares_access_and_the_matrix_covers_them(network_app: Flask) -> None:
    undeclared = [
        r.rule
        for r in network_app.url_map.iter_rules()
        if route_spec(network_app, r.endpoint) is None
    ]
    assert undeclared == []
    assert routes(network_app) == set(EXPECTED)


@pytest.mark.parametrize("caller", sorted(ALL))
def test_caller_matrix(
    network: FlaskClient,
    operator: dict[str, str],
    make_signer: Callable[[], Signer],
    caller: str,
) -> None:
    member, stranger = make_signer(), make_signer()
    approved(member, network, operator, name="member")
    signers = {"member": member, "stranger": stranger}
    # Valid for the index route, so that its ownership check is what answers there.
    body = json.dumps({"datasets": []}).encode()
    leaving = ("DELETE", "/api/v1/associations/self")  # last: the member leaves with it
    for (method, rule), allowed in sorted(EXPECTED.items(), key=lambda item: item[0] == leaving):
        path = rule.replace("<int:association_id>", "999")
        path = path.replace("<path:rest>", "api/v1/node")
        # The index route names the member, so only the member may publish there; routing
        # goes to a domain that does not exist, so it ends in 404 for everyone.
        domain_id = member.id if rule.startswith("/api/v1/index/") else "0" * 32
        path = path.replace("<domain_id>", domain_id)
        headers = {"Content-Type": "application/json"}
        if caller == "operator":
            headers.update(operator)
        elif caller in signers:
            headers.update(signers[caller].headers(method, path, body))
        response = network.open(path, method=method, headers=headers, data=body)
        where = (
            f"{caller} {method} {path} -> {response.status_code} {response.get_data(as_text=True)}"
        )
        if caller in allowed:
            assert response.status_code not in (401, 403), where
        elif caller == "anonymous" or (caller == "operator") != (allowed == OPERATOR):
            assert response.status_code == 401, where
        else:
            assert response.status_code == 403, where
        assert response.status_code < 500, where
