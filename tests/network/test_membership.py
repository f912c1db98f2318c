"""The domain's side: joining (with what can go wrong), what it publishes, leaving later."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

import grid_cli as grid
from domain.networks import published_datasets, sync_networks
from tests.domain.uploads import upload
from tests.network.conftest import OPERATOR_EMAIL, OPERATOR_PASSWORD, LiveNode


def test_join_then_publish_only_public_metadata(
    app: Flask,
    client: FlaskClient,
    headers: dict[str, dict[str, str]],
    live_network: LiveNode,
) -> None:
    owner = headers["owner"]
    response = upload(client, owner, name="digits-a", citation="Secret et al.")
    assert response.status_code == 201, response.json
    joined = client.post(
        "/api/v1/networks",
        json={"url": live_network.url + "/", "domain_url": "http://domain.example:8001"},
        headers=owner,
    )
    assert joined.status_code == 201, joined.json
    membership = joined.json
    assert membership["status"] == "pending"
    assert membership["url"] == live_network.url
    assert membership["domain_url"] == "http://domain.example:8001"
    again = client.post("/api/v1/networks", json={"url": live_network.url}, headers=owner)
    assert again.status_code == 201  # asking again while pending renews the request

    network = grid.connect(live_network.url)
    network.sign_in(OPERATOR_EMAIL, OPERATOR_PASSWORD)
    [request] = network.associations()
    assert request.url == "http://localhost"  # renewed without domain_url: the request's host
    network.approve(request.id)

    with app.app_context():
        assert sync_networks() == 1
    with app.extensions["database"].sessionmaker() as session:
        published = published_datasets(session)
    assert [set(entry) for entry in published] == [
        {"name", "description", "tags", "schema", "label", "has_mock"}
    ]
    listed = client.get("/api/v1/networks", headers=headers["data_scientist"]).json["items"]
    assert listed[0]["status"] == "approved" and listed[0]["last_push_at"] is not None
    [hit] = network.search("", domain=request.domain_id)
    assert hit.dataset.name == "digits-a"
    assert hit.dataset.label == "target"  # so a federated job can shape its example rows
    member = client.post("/api/v1/networks", json={"url": live_network.url}, headers=owner)
    assert member.status_code == 409 and member.json["error"]["code"] == "already_member"

    left = client.delete(f"/api/v1/networks/{membership['network_id']}", headers=owner)
    assert left.status_code == 204
    assert network.search("", domain=request.domain_id) == []
    assert client.get("/api/v1/networks", headers=owner).json["items"] == []
    entries = client.get("/api/v1/audit?action=networks.", headers=owner).json["items"]
    assert [e["action"] for e in entries] == [
        "networks.join_requested",
        "networks.join_requested",
        "networks.left",
    ]


def test_joining_something_that_is_no_network_fails_clearly(
    client: FlaskClient, headers: dict[str, dict[str, str]]
) -> None:
    owner = headers["owner"]
    unreachable = client.post("/api/v1/networks", json={"url": "http://127.0.0.1:9"}, headers=owner)
    assert unreachable.status_code == 502
    assert unreachable.json["error"]["code"] == "network_unavailable"
    bad = client.post("/api/v1/networks", json={"url": "file:///etc/passwd"}, headers=owner)
    assert bad.status_code == 422 and "url" in bad.json["error"]["message"]
    assert client.get("/api/v1/networks", headers=owner).json["items"] == []


def test_a_domain_is_no_network(
    client: FlaskClient, headers: dict[str, dict[str, str]], live_member: LiveNode
) -> None:
    response = client.post(
        "/api/v1/networks", json={"url": live_member.url}, headers=headers["owner"]
    )
    assert response.status_code == 502
    assert response.json["error"]["code"] == "network_refused"
    assert "not a Grid network" in response.json["error"]["message"]


def test_leaving_an_unreachable_network_is_retried(
    app: Flask, client: FlaskClient, headers: dict[str, dict[str, str]], live_network: LiveNode
) -> None:
    owner = headers["owner"]
    joined = client.post("/api/v1/networks", json={"url": live_network.url}, headers=owner).json
    live_network.stop()
    leaving = client.delete(f"/api/v1/networks/{joined['network_id']}", headers=owner)
    assert leaving.status_code == 202
    assert leaving.json["status"] == "leaving"
    assert "Cannot reach the network" in leaving.json["last_error"]
    listed = client.get("/api/v1/networks", headers=owner).json["items"]
    assert [m["status"] for m in listed] == ["leaving"]
