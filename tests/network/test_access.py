"""Every network route declares its access, and each kind of caller gets exactly its routes."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from grid_common.api import route_spec
from grid_common.console import is_page
from tests.network.conftest import Signer, approved

ALL = {"anonymous", "operator", "data_scientist", "member", "stranger"}
OPERATOR = {"operator"}
ACCOUNTS = {"operator", "data_scientist"}
NODES = {"member", "stranger"}
FL_JOB = "/api/v1/fl/jobs/<int:job_id>"

# Written out by hand on purpose: deriving it from the route declarations would test nothing.
EXPECTED: dict[tuple[str, str], set[str]] = {
    ("GET", "/healthz"): ALL,
    ("GET", "/readyz"): ALL,
    ("GET", "/metrics"): ALL,
    ("GET", "/api/v1/node"): ALL,
    ("GET", "/api/v1/openapi.json"): ALL,
    ("POST", "/api/v1/setup"): ALL,
    ("POST", "/api/v1/auth/login"): ALL,
    ("POST", "/api/v1/auth/refresh"): ALL,
    ("POST", "/api/v1/auth/logout"): ACCOUNTS,
    ("GET", "/api/v1/auth/me"): ACCOUNTS,
    ("GET", "/api/v1/accounts"): OPERATOR,
    ("POST", "/api/v1/accounts"): OPERATOR,
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
    ("POST", "/api/v1/fl/jobs"): ACCOUNTS,
    ("POST", "/api/v1/fl/analytics"): ACCOUNTS,
    ("GET", "/api/v1/fl/jobs"): ACCOUNTS,
    ("GET", FL_JOB): ACCOUNTS,
    ("GET", f"{FL_JOB}/rounds"): ACCOUNTS,
    ("POST", f"{FL_JOB}/cancel"): ACCOUNTS,
    ("GET", f"{FL_JOB}/model"): ACCOUNTS,
    ("GET", f"{FL_JOB}/result"): ACCOUNTS,
    # Signed federated routes: a domain associated with the network gets past access (to a 404
    # for the job that does not exist); any other node is refused.
    ("GET", "/api/v1/fl/invitations"): {"member"},
    ("GET", f"{FL_JOB}/files/<any(model, weights):part>"): {"member"},
    ("POST", f"{FL_JOB}/decision"): {"member"},
    ("GET", f"{FL_JOB}/state"): {"member"},
    ("PUT", f"{FL_JOB}/keys/sealed/<domain_id>"): {"member"},
    ("PUT", f"{FL_JOB}/keys/public"): {"member"},
    ("GET", f"{FL_JOB}/keys/sealed"): {"member"},
    ("GET", f"{FL_JOB}/keys/public"): {"member"},
    ("POST", f"{FL_JOB}/keys/refused"): {"member"},
    ("PUT", f"{FL_JOB}/rounds/<int:number>/update"): {"member"},
    ("GET", f"{FL_JOB}/rounds/<int:number>/aggregate"): {"member"},
    ("POST", f"{FL_JOB}/attestation"): {"member"},
    ("POST", f"{FL_JOB}/release"): {"member"},
    ("POST", f"{FL_JOB}/withheld"): {"member"},
    ("PUT", f"{FL_JOB}/result"): {"member"},
}
# Routes whose body is validated before the caller's place is checked get a valid one.
BODIES = {
    f"{FL_JOB}/decision": {"approved": False},
    f"{FL_JOB}/attestation": {"model_hash": "0" * 64},
    f"{FL_JOB}/release": {"model_hash": "0" * 64},
    f"{FL_JOB}/withheld": {"reason": "too few rows"},
    f"{FL_JOB}/keys/refused": {"reason": "the dealer's signature does not verify"},
}


def scientist_headers(network: FlaskClient, operator: dict[str, str]) -> dict[str, str]:
    """A data scientist's account: it may submit federated jobs and nothing an operator does."""
    account = {"email": "scientist@example.org", "password": "scientist-password"}
    made = network.post(
        "/api/v1/accounts", json={**account, "role": "data_scientist"}, headers=operator
    )
    assert made.status_code == 201, made.json
    login = network.post("/api/v1/auth/login", json=account)
    assert login.status_code == 200, login.json
    return {"Authorization": f"Bearer {login.json['access_token']}"}


def routes(app: Flask) -> set[tuple[str, str]]:
    """The API's routes; console pages have their own matrix in tests/console."""
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if not is_page(route_spec(app, rule.endpoint))
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
    accounts = {"operator": operator}
    if caller == "data_scientist":
        accounts[caller] = scientist_headers(network, operator)
    # Valid for the index route, so that its ownership check is what answers there.
    default = json.dumps({"datasets": []}).encode()
    leaving = ("DELETE", "/api/v1/associations/self")  # last: the member leaves with it
    for (method, rule), allowed in sorted(EXPECTED.items(), key=lambda item: item[0] == leaving):
        body = json.dumps(BODIES[rule]).encode() if rule in BODIES else default
        path = rule.replace("<int:association_id>", "999").replace("<int:job_id>", "999")
        path = path.replace("<int:number>", "1").replace("<any(model, weights):part>", "model")
        path = path.replace("<path:rest>", "api/v1/node")
        if rule.endswith("/update"):
            path += "?samples=1"  # a valid query, so that access is what answers
        if (method, rule) == ("PUT", f"{FL_JOB}/keys/public"):
            path += "?signature=" + "A" * 86  # well formed; only the job's dealer gets it checked
        # The index route names the member, so only the member may publish there; routing
        # goes to a domain that does not exist, so it ends in 404 for everyone.
        domain_id = member.id if rule.startswith("/api/v1/index/") else "0" * 32
        path = path.replace("<domain_id>", domain_id)
        headers = {"Content-Type": "application/json"}
        if caller in accounts:
            headers.update(accounts[caller])
        elif caller in signers:
            headers.update(signers[caller].headers(method, path, body))
        response = network.open(path, method=method, headers=headers, data=body)
        where = (
            f"{caller} {method} {path} -> {response.status_code} {response.get_data(as_text=True)}"
        )
        if caller in allowed:
            assert response.status_code not in (401, 403), where
        elif caller == "anonymous" or (caller in ACCOUNTS) != (allowed <= ACCOUNTS):
            assert response.status_code == 401, where
        else:
            assert response.status_code == 403, where
        assert response.status_code < 500, where
