"""The domain's OpenAPI document describes exactly what its API accepts (schemathesis)."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.api_fuzz import fuzz
from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_api_takes_what_it_documents_and_never_fails(app: Flask, client: FlaskClient) -> None:
    login = client.post(
        "/api/v1/auth/login", json={"email": OWNER_EMAIL, "password": OWNER_PASSWORD}
    )
    owner = {"Authorization": f"Bearer {login.json['access_token']}"}
    created = client.post("/api/v1/workers", json={"name": "fuzz-worker"}, headers=owner)
    worker = {"Authorization": f"Bearer {created.json['token']}"}
    # An empty queue: every lease the fuzzer sends would wait for a job (the long poll) in vain.
    app.config["GRID"].lease_wait_s = 0

    findings = fuzz(app, lambda path: worker if path.startswith("/api/v1/worker/") else owner)

    print(findings.summary())
    assert findings.server_errors == []
    assert findings.rejected_valid == []
    assert findings.unresolved_refs == []
    assert findings.method_not_allowed > 0
    assert findings.no_allow_header == []
    # Neither credential was lost on the way, which would have turned every call into a 401.
    assert client.get("/api/v1/users", headers=owner).status_code == 200
    assert client.post("/api/v1/worker/heartbeat", json={}, headers=worker).status_code == 204


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_joining_a_network_at_an_unparsable_host_is_a_502(client: FlaskClient) -> None:
    login = client.post(
        "/api/v1/auth/login", json={"email": OWNER_EMAIL, "password": OWNER_PASSWORD}
    )
    owner = {"Authorization": f"Bearer {login.json['access_token']}"}
    # A host label past 63 characters: urllib3 refuses it before any connection (found by
    # schemathesis's coverage phase).
    body = {"url": "http://" + "0" * 300, "domain_url": "http://127.0.0.1:9"}
    response = client.post("/api/v1/networks", json=body, headers=owner)
    assert response.status_code == 502
    assert response.json["error"]["code"] == "network_unavailable"
