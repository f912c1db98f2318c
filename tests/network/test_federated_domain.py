"""The domain's side of federated jobs against a live network: invitations become requests,
decisions reach the network, and nothing forged or undelivered is taken as done."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

import grid_cli as grid
from domain import federated
from domain.models import FederatedParticipation, NetworkMembership
from domain.networks import sync_networks
from grid_common.federated_schemas import Invitation
from tests.domain.conftest import model_files  # noqa: F401  (the fixture)
from tests.domain.uploads import upload
from tests.network.conftest import OPERATOR_EMAIL, OPERATOR_PASSWORD, LiveNode

SCIENTIST, PASSWORD = "scientist@lab.org", "scientist-password"


def _sync(app: Flask) -> None:
    """Run the domain's network sync now, as its background loop would when due."""
    with app.extensions["database"].sessionmaker() as session:
        session.query(NetworkMembership).update({"next_sync_at": datetime.now(UTC)})
        session.commit()
    with app.app_context():
        sync_networks()


def _member(client: FlaskClient, owner: dict[str, str], network_url: str) -> str:
    """Join the live network with the in-process domain and have the operator approve."""
    joined = client.post("/api/v1/networks", json={"url": network_url}, headers=owner)
    assert joined.status_code == 201, joined.json
    operator = grid.login_network(network_url, OPERATOR_EMAIL, OPERATOR_PASSWORD)
    [association] = operator.associations(status="pending")
    operator.approve(association.id)
    operator.create_account(SCIENTIST, PASSWORD, role="data_scientist")
    return association.domain_id


def _submit(network_url: str, domain_id: str, files: tuple[bytes, bytes], mode: str) -> int:
    scientist = grid.login_network(network_url, SCIENTIST, PASSWORD)
    spec = {
        "plan": {"loss": "cross_entropy", "epochs": 1},
        "datasets": [{"domain": domain_id, "dataset": "digits-a"}],
        "rounds": 2,
        "secure_aggregation": mode,
        "reason": "a shared model",
    }
    response = requests.post(
        f"{network_url}/api/v1/fl/jobs",
        data={"spec": json.dumps(spec)},
        files={"model": files[0], "weights": files[1]},
        headers={"Authorization": f"Bearer {scientist.access_token}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_invitation_becomes_a_request_whose_decision_reaches_the_network(
    app: Flask,
    client: FlaskClient,
    headers: dict[str, dict[str, str]],
    live_network: LiveNode,
    model_files: tuple[bytes, bytes],  # noqa: F811
) -> None:
    owner = headers["owner"]
    assert upload(client, owner, name="digits-a").status_code == 201
    domain_id = _member(client, owner, live_network.url)
    _sync(app)  # learns it was approved and publishes digits-a
    job_id = _submit(live_network.url, domain_id, model_files, "none")

    _sync(app)
    [item] = client.get("/api/v1/requests?status=pending", headers=owner).json["items"]
    assert item["kind"] == "federated"
    assert item["requester"] == f"{SCIENTIST} via network test-network"
    assert item["datasets"] == ["digits-a"] and item["reason"] == "a shared model"
    with app.extensions["database"].sessionmaker() as session:
        participation = session.get(FederatedParticipation, item["id"])
        assert participation is not None and participation.network_job_id == job_id
    # The owner is told what a peer domain could learn: here there is none.
    shown = client.get(f"/api/v1/requests/{item['id']}", headers=owner).json
    assert "only one" in shown["peers"]
    _sync(app)  # the same invitation again files nothing new
    assert len(client.get("/api/v1/requests", headers=owner).json["items"]) == 1

    # The network goes away: the approval stands here and is told once it is back.
    with app.extensions["database"].sessionmaker() as session:
        membership = session.query(NetworkMembership).one()
        membership.url = "http://127.0.0.1:9"
        session.commit()
    approved = client.post(f"/api/v1/requests/{item['id']}/approve", json={}, headers=owner)
    assert approved.status_code == 200, approved.json
    with app.extensions["database"].sessionmaker() as session:
        participation = session.get(FederatedParticipation, item["id"])
        assert participation is not None and not participation.decision_reported
        session.query(NetworkMembership).one().url = live_network.url
        session.commit()
    _sync(app)
    with app.extensions["database"].sessionmaker() as session:
        participation = session.get(FederatedParticipation, item["id"])
        assert participation is not None and participation.decision_reported
    scientist = grid.login_network(live_network.url, SCIENTIST, PASSWORD)
    info = scientist.federated_job_info(job_id)
    assert info.status == "running" and info.participants[0].status == "approved"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_forged_invitation_or_a_missing_dataset_files_no_job(
    app: Flask,
    client: FlaskClient,
    headers: dict[str, dict[str, str]],
    live_network: LiveNode,
    model_files: tuple[bytes, bytes],  # noqa: F811
) -> None:
    owner = headers["owner"]
    assert upload(client, owner, name="digits-a").status_code == 201
    domain_id = _member(client, owner, live_network.url)
    _sync(app)
    job_id = _submit(live_network.url, domain_id, model_files, "ckks")
    # The dataset goes before the invitation arrives: the request is denied, saying why.
    assert client.delete("/api/v1/datasets/digits-a", headers=owner).status_code == 204
    _sync(app)
    [item] = client.get("/api/v1/requests", headers=owner).json["items"]
    assert item["status"] == "denied"
    assert "no dataset named 'digits-a'" in item["decision_reason"]
    scientist = grid.login_network(live_network.url, SCIENTIST, PASSWORD)
    info = scientist.federated_job_info(job_id)
    assert info.status == "failed" and info.participants[0].status == "denied"

    with app.extensions["database"].sessionmaker() as session:
        participation = session.get(FederatedParticipation, item["id"])
        membership = session.query(NetworkMembership).one()
        assert participation is not None
        invitation = Invitation.model_validate(participation.invitation)
        assert federated.verified(invitation, membership)
        for forged in (
            invitation.model_copy(update={"rounds": 1000}),
            invitation.model_copy(update={"model_digest": "0" * 64}),
            invitation.model_copy(update={"network_id": "f" * 32}),
        ):
            assert not federated.verified(forged, membership)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_analysis_becomes_an_analytics_request_under_the_owners_disclosure_terms(
    app: Flask,
    client: FlaskClient,
    headers: dict[str, dict[str, str]],
    live_network: LiveNode,
) -> None:
    owner = headers["owner"]
    assert upload(client, owner, name="digits-a").status_code == 201
    settings = client.get("/api/v1/settings", headers=owner).json
    rule = {"kind": "analytics", "release_on_completion": True}
    settings.update(min_group_size=7, auto_approval=[rule])
    assert client.put("/api/v1/settings", json=settings, headers=owner).status_code == 200
    budget = {"epsilon": 2.0, "data_scientist": None}
    assert (
        client.put(
            "/api/v1/datasets/digits-a/privacy-budget", json=budget, headers=owner
        ).status_code
        == 200
    )
    domain_id = _member(client, owner, live_network.url)
    _sync(app)
    scientist = grid.login_network(live_network.url, SCIENTIST, PASSWORD)
    job = scientist.submit_analysis([(domain_id, "digits-a")], statistics=["mean", "class_count"])

    _sync(app)
    # The rule covers analyses, but the budget needs differential privacy: the owner decides.
    [item] = client.get("/api/v1/requests?status=pending", headers=owner).json["items"]
    assert item["kind"] == "analytics" and item["plan"] == job.info.plan
    assert item["plan"]["features"] == ["x1", "x2"] and item["plan"]["classes"] == [0, 1]
    with app.extensions["database"].sessionmaker() as session:
        participation = session.get(FederatedParticipation, item["id"])
        assert participation is not None and participation.min_group_size == 7
    approve = f"/api/v1/requests/{item['id']}/approve"
    refused = client.post(approve, json={}, headers=owner)
    assert refused.status_code == 409
    assert "must use differential privacy" in refused.json["error"]["message"]

    budget["epsilon"] = None
    client.put("/api/v1/datasets/digits-a/privacy-budget", json=budget, headers=owner)
    assert client.post(approve, json={}, headers=owner).status_code == 200
    shown = client.get(f"/api/v1/jobs/{item['id']}", headers=owner)
    assert shown.status_code == 200 and shown.json["kind"] == "analytics"
    _sync(app)
    info = scientist.federated_job_info(job.id)
    assert info.participants[0].status == "approved" and info.status == "key_setup"
