"""Association: signed join requests, operator decisions, leaving, removal, rate limits."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient

from tests.network.conftest import Signer, approved, dataset


def test_a_domain_joins_once_the_operator_approves(
    network: FlaskClient, operator: dict[str, str], make_signer: Callable[[], Signer]
) -> None:
    domain = make_signer()
    response = domain.join(name="hospital-a", url="http://127.0.0.1:9/")
    assert response.status_code == 201, response.json
    request = response.json
    assert request["status"] == "pending"
    assert request["domain_id"] == domain.id
    assert request["url"] == "http://127.0.0.1:9"
    assert request["signing_key"] == domain.identity.signing_public_key
    assert request["encryption_key"] == domain.identity.encryption_public_key

    # Pending: not listed, not searchable, not allowed to publish.
    assert network.get("/api/v1/domains").json["items"] == []
    refused = domain.push([dataset("digits")])
    assert refused.status_code == 403 and refused.json["error"]["code"] == "not_associated"

    pending = network.get("/api/v1/associations?status=pending", headers=operator).json["items"]
    assert [a["domain_id"] for a in pending] == [domain.id]
    decided = network.post(
        f"/api/v1/associations/{request['id']}/approve", json={"reason": "ok"}, headers=operator
    )
    assert decided.status_code == 200
    assert decided.json["status"] == "approved"
    assert decided.json["decided_by"] == "operator@example.org"
    assert decided.json["decision_reason"] == "ok"
    again = network.post(f"/api/v1/associations/{request['id']}/reject", json={}, headers=operator)
    assert again.status_code == 409 and again.json["error"]["code"] == "already_decided"

    own = domain.call("GET", "/api/v1/associations/self")
    assert own.status_code == 200 and own.json["status"] == "approved"
    listed = network.get("/api/v1/domains").json["items"]
    assert [(d["id"], d["name"], d["online"]) for d in listed] == [(domain.id, "hospital-a", False)]
    rejoin = domain.join()
    assert rejoin.status_code == 409 and rejoin.json["error"]["code"] == "already_associated"


def test_rejected_domains_may_ask_again_and_stay_out_meanwhile(
    network: FlaskClient, operator: dict[str, str], make_signer: Callable[[], Signer]
) -> None:
    domain = make_signer()
    first = domain.join().json
    rejected = network.post(
        f"/api/v1/associations/{first['id']}/reject", json={"reason": "who?"}, headers=operator
    )
    assert rejected.json["status"] == "rejected"
    assert domain.push([]).status_code == 403
    second = domain.join(name="hospital-a2")
    assert second.status_code == 201
    assert (second.json["id"], second.json["status"]) == (first["id"], "pending")
    assert second.json["name"] == "hospital-a2"
    assert second.json["decision_reason"] is None


def test_leaving_and_removal_take_datasets_out_of_the_index(
    network: FlaskClient, operator: dict[str, str], make_signer: Callable[[], Signer]
) -> None:
    leaver, removed = make_signer(), make_signer()
    approved(leaver, network, operator, name="leaver")
    removed_id = approved(removed, network, operator, name="removed")
    assert leaver.push([dataset("a", description="handwritten digits")]).status_code == 200
    assert removed.push([dataset("b", description="handwritten digits")]).status_code == 200
    assert len(network.get("/api/v1/search?q=digits").json["items"]) == 2

    assert leaver.call("DELETE", "/api/v1/associations/self").status_code == 204
    assert leaver.call("GET", "/api/v1/associations/self").json["status"] == "left"
    assert network.delete(f"/api/v1/associations/{removed_id}", headers=operator).status_code == 204
    assert network.delete(f"/api/v1/associations/{removed_id}", headers=operator).status_code == 409
    assert network.get("/api/v1/search?q=digits").json["items"] == []
    assert network.get("/api/v1/domains").json["items"] == []
    statuses = {
        a["name"]: a["status"]
        for a in network.get("/api/v1/associations", headers=operator).json["items"]
    }
    assert statuses == {"leaver": "left", "removed": "removed"}
    assert removed.push([dataset("b")]).status_code == 403
    assert removed.call("GET", "/api/v1/associations/self").json["status"] == "removed"
    stranger = make_signer()
    assert stranger.call("DELETE", "/api/v1/associations/self").status_code == 404


def test_join_requests_are_rate_limited(
    network_app: Flask, network: FlaskClient, make_signer: Callable[[], Signer]
) -> None:
    network_app.config["GRID"].max_joins_per_address = 3
    for _ in range(3):
        assert make_signer().join().status_code == 201
    limited = make_signer().join()
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "3600"
    one = make_signer()
    network_app.config["GRID"].max_joins_per_address = 100
    for _ in range(5):
        assert one.join().status_code == 201  # asking again refreshes the same request
    assert one.join().status_code == 429  # five per domain and window


def test_bad_join_requests_are_refused_with_the_field_named(
    network: FlaskClient, make_signer: Callable[[], Signer]
) -> None:
    domain = make_signer()
    key = domain.identity.encryption_public_key
    cases = [
        ({"name": "x", "url": "ftp://example.org", "encryption_key": key}, "url"),
        ({"name": "", "url": "http://example.org", "encryption_key": key}, "name"),
        (
            {"name": "x", "url": "http://example.org", "encryption_key": "not a key"},
            "encryption_key",
        ),
        ({"name": "x", "url": "http://example.org", "encryption_key": key, "extra": 1}, "extra"),
    ]
    for body, field in cases:
        response = domain.call("POST", "/api/v1/associations", body)
        assert response.status_code == 422, body
        assert field in response.json["error"]["message"]


def test_operator_ids_that_do_not_exist_are_404(
    network: FlaskClient, operator: dict[str, str]
) -> None:
    assert network.get("/api/v1/associations/99", headers=operator).status_code == 404
    assert (
        network.post("/api/v1/associations/99/approve", json={}, headers=operator).status_code
        == 404
    )
    assert network.delete("/api/v1/associations/99", headers=operator).status_code == 404
