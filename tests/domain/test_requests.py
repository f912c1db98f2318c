"""Requests: filing, visibility per role, decisions and auto-approval rules."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.domain.uploads import file_job, upload


@pytest.fixture
def datasets(client: FlaskClient, headers) -> None:
    upload(client, headers["owner"], "digits-a", tags=["digits"])
    upload(client, headers["owner"], "private-b", tags=["restricted"])


@pytest.fixture
def file_request(model_files):
    """File a small job request, the simplest request there is."""
    return lambda client, headers: file_job(client, headers, model_files, {"loss": "mse"})


def test_request_lifecycle(client: FlaskClient, headers, datasets, file_request) -> None:
    filed = file_request(client, headers["data_scientist"])
    assert filed.status_code == 201
    assert filed.json["status"] == "pending" and filed.json["datasets"] == ["digits-a"]
    pending = client.get("/api/v1/requests?status=pending", headers=headers["compliance_officer"])
    assert [r["id"] for r in pending.json["items"]] == [filed.json["id"]]

    decided = client.post(
        f"/api/v1/requests/{filed.json['id']}/approve",
        json={"reason": "fine for research"},
        headers=headers["compliance_officer"],
    )
    assert decided.status_code == 200
    seen = client.get(
        f"/api/v1/requests/{filed.json['id']}", headers=headers["data_scientist"]
    ).json
    assert seen["status"] == "approved"
    assert seen["decision_reason"] == "fine for research"
    assert seen["decided_by"] == "compliance_officer@example.org"

    again = client.post(
        f"/api/v1/requests/{filed.json['id']}/deny", json={"reason": "x"}, headers=headers["owner"]
    )
    assert again.status_code == 409


def test_denial_carries_its_reason(client: FlaskClient, headers, datasets, file_request) -> None:
    filed = file_request(client, headers["data_scientist"]).json
    client.post(
        f"/api/v1/requests/{filed['id']}/deny",
        json={"reason": "no identifiable data"},
        headers=headers["owner"],
    )
    seen = client.get(f"/api/v1/requests/{filed['id']}", headers=headers["data_scientist"]).json
    assert (seen["status"], seen["decision_reason"]) == ("denied", "no identifiable data")


def test_requesters_see_only_their_own(
    client: FlaskClient, headers, datasets, file_request
) -> None:
    mine = file_request(client, headers["data_scientist"]).json
    theirs = file_request(client, headers["admin"]).json
    listed = client.get("/api/v1/requests", headers=headers["data_scientist"]).json["items"]
    assert [r["id"] for r in listed] == [mine["id"]]
    other = client.get(f"/api/v1/requests/{theirs['id']}", headers=headers["data_scientist"])
    assert other.status_code == 404
    assert len(client.get("/api/v1/requests", headers=headers["owner"]).json["items"]) == 2


def test_a_job_request_on_a_missing_dataset_is_refused(
    client: FlaskClient, headers, datasets, model_files
) -> None:
    response = file_job(
        client, headers["data_scientist"], model_files, {"loss": "mse"}, datasets=("nope",)
    )
    assert response.status_code == 404 and "'nope'" in response.json["error"]["message"]
    assert client.get("/api/v1/requests", headers=headers["owner"]).json["items"] == []


def test_job_request_is_stored_with_its_plan(client: FlaskClient, headers, datasets, model_files):
    plan = {"loss": "cross_entropy", "optimizer": "adam", "epochs": 3, "lr": 0.001}
    response = file_job(client, headers["data_scientist"], model_files, plan)
    assert response.status_code == 201, response.json
    assert response.json["kind"] == "job"
    assert response.json["plan"]["optimizer"] == "adam" and response.json["plan"]["epochs"] == 3


@pytest.mark.parametrize(
    ("plan", "needle"),
    [
        ({"loss": "hinge"}, "plan.loss"),
        ({"loss": "mse", "optimizer": "lbfgs"}, "plan.optimizer"),
        ({"loss": "mse", "epochs": 0}, "plan.epochs"),
        ({"loss": "mse", "run": "import os"}, "plan.run"),
        ("{not json", "plan"),
    ],
)
def test_job_plans_outside_the_allow_list_are_refused(
    client: FlaskClient, headers, datasets, model_files, plan, needle
) -> None:
    response = file_job(client, headers["data_scientist"], model_files, plan)
    assert response.status_code == 422
    assert needle in response.json["error"]["message"]


def test_job_with_files_that_are_not_a_model_is_refused(
    client: FlaskClient, headers, datasets, model_files
) -> None:
    bad_weights = file_job(client, headers["data_scientist"], model_files, {"loss": "mse"}, b"xx")
    assert bad_weights.status_code == 422 and "safetensors" in bad_weights.json["error"]["message"]
    response = file_job(
        client, headers["data_scientist"], (b"pickle!", model_files[1]), {"loss": "mse"}
    )
    assert response.status_code == 422 and ".pt2" in response.json["error"]["message"]


AUTO_RULES = [
    {"dataset_tag": "digits", "kind": "job", "max_epsilon": 1.0},
    {"data_scientist": "data_scientist@example.org", "max_epochs": 5},
]
DP = {"epsilon": 1.0, "delta": 1e-5}


@pytest.mark.parametrize(
    ("datasets_", "epochs", "dp", "approved"),
    [
        (("digits-a",), 9, DP, True),
        (("digits-a", "private-b"), 9, DP, False),
        (("digits-a",), 9, {**DP, "epsilon": 2.0}, False),
        (("digits-a",), 5, None, True),
        (("digits-a",), 6, None, False),
    ],
)
def test_auto_approval_rules(
    client: FlaskClient, headers, datasets, model_files, datasets_, epochs, dp, approved
) -> None:
    settings = client.put(
        "/api/v1/settings", json={"auto_approval": AUTO_RULES}, headers=headers["owner"]
    )
    assert settings.status_code == 200
    plan = {"loss": "cross_entropy", "epochs": epochs, "dp": dp}
    response = file_job(client, headers["data_scientist"], model_files, plan, datasets=datasets_)
    assert response.status_code == 201
    assert response.json["auto_approved"] is approved
    assert response.json["status"] == ("approved" if approved else "pending")


def test_only_the_owner_edits_auto_approval(client: FlaskClient, headers) -> None:
    body = {"auto_approval": [{"kind": "job"}]}
    assert client.put("/api/v1/settings", json=body, headers=headers["admin"]).status_code == 403
    bad = client.put(
        "/api/v1/settings", json={"auto_approval": [{"max_epochs": 0}]}, headers=headers["owner"]
    )
    assert bad.status_code == 422 and "max_epochs" in bad.json["error"]["message"]
