"""Path 8, the owner's levers: auto-approval rules that bind what a joint job may do (and none
without a condition, even one stored before the upgrade), a joint result that waits for every
owner's release, per-scientist budgets that bind a network's data scientists, and no access
request that looks like a grant but grants nothing. Each test tries the path the way its
attacker would: through the API, with the network and its data scientist as real processes
where the path crosses them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.orm import Session

import grid_cli as grid
from domain import migrate
from domain.models import AccessRequest, Setting
from grid_common.db import make_engine
from grid_common.schemas import AutoApprovalRule, Settings
from tests.conftest import PostgresDatabases
from tests.domain.conftest import model_files  # noqa: F401  (one model for both sides)
from tests.domain.uploads import upload
from tests.network.conftest import (  # noqa: F401  (fixtures)
    LiveNode,
    live_network,
    make_signer,
    network,
    network_app,
    network_config,
    network_database_url,
    network_sqlite_template,
    operator,
)
from tests.network.test_federated import (  # noqa: F401  (fixtures)
    Job,
    _finish,
    created,
    domains,
    error,
    job_keys,
    scientist,
    send,
    start_job,
)
from tests.network.test_federated_domain import PASSWORD, SCIENTIST, _member, _sync

# --- rules -------------------------------------------------------------------------------


def test_a_rule_without_a_condition_is_refused(
    client: FlaskClient, headers: dict[str, dict[str, str]]
) -> None:
    owner = headers["owner"]
    for rule in ({}, {"release_on_completion": True}):
        response = client.put("/api/v1/settings", json={"auto_approval": [rule]}, headers=owner)
        assert response.status_code == 422, response.json
        assert "needs at least one condition" in response.json["error"]["message"]
    assert client.get("/api/v1/settings", headers=owner).json["auto_approval"] == []


def _submit(network_url: str, domain_id: str, files: tuple[bytes, bytes], **spec: Any) -> int:
    """The data scientist submits a DP federated job on the domain's digits-a."""
    token = grid.login_network(network_url, SCIENTIST, PASSWORD).access_token
    body = {
        "plan": {"loss": "cross_entropy", "epochs": 1, "dp": {"epsilon": 1.0, "delta": 1e-5}},
        "datasets": [{"domain": domain_id, "dataset": "digits-a"}],
        "rounds": 2,
        "secure_aggregation": "ckks",
        "reason": "a shared model",
        **spec,
    }
    response = requests.post(
        f"{network_url}/api/v1/fl/jobs",
        data={"spec": json.dumps(body)},
        files={"model": files[0], "weights": files[1]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _request_of(client: FlaskClient, owner: dict[str, str], job_id: int) -> dict[str, Any]:
    """The domain's request filed for the network's job `job_id` (its reason names no id, so
    requests are matched in filing order)."""
    items = client.get("/api/v1/requests", headers=owner).json["items"]
    return dict(sorted(items, key=lambda r: r["id"])[job_id - 1])


def test_a_federated_request_that_breaks_a_rules_condition_waits_for_the_owner(
    app: Flask,
    client: FlaskClient,
    headers: dict[str, dict[str, str]],
    live_network: LiveNode,  # noqa: F811
    model_files: tuple[bytes, bytes],  # noqa: F811
) -> None:
    owner = headers["owner"]
    assert upload(client, owner, name="digits-a").status_code == 201
    rule = {
        "kind": "federated",
        "secure_aggregation": "ckks",
        "max_epsilon": 2.0,
        "max_rounds": 3,
        "min_peers": 1,
    }
    settings = client.put("/api/v1/settings", json={"auto_approval": [rule]}, headers=owner)
    assert settings.status_code == 200, settings.json
    domain_id = _member(client, owner, live_network.url)
    _sync(app)
    url, files = live_network.url, model_files
    dp = {"epsilon": 4.0, "delta": 1e-5}
    cases = {
        _submit(url, domain_id, files): "approved",  # every condition holds
        _submit(url, domain_id, files, secure_aggregation="none"): "pending",
        _submit(url, domain_id, files, plan={"loss": "cross_entropy", "dp": dp}): "pending",
        _submit(url, domain_id, files, plan={"loss": "cross_entropy"}): "pending",  # no DP
        _submit(url, domain_id, files, rounds=10): "pending",
    }
    _sync(app)
    for job_id, status in cases.items():
        assert _request_of(client, owner, job_id)["status"] == status, job_id
    # At least K peers: this job's quorum is one domain, fewer than the rule asks.
    rule["min_peers"] = 2
    settings = client.put("/api/v1/settings", json={"auto_approval": [rule]}, headers=owner)
    assert settings.status_code == 200, settings.json
    job_id = _submit(url, domain_id, files)
    _sync(app)
    assert _request_of(client, owner, job_id)["status"] == "pending"


# --- the joint result --------------------------------------------------------------------


def test_a_joint_result_waits_for_every_owners_release(
    start_job: Callable[..., Job],  # noqa: F811
) -> None:
    job = start_job("none", rounds=1)
    final = _finish(job)
    digest = hashlib.sha256(final).hexdigest()
    for signer in job.domains:
        answer = signer.call("POST", job.path("/attestation"), {"model_hash": digest})
        assert answer.status_code == 200, answer.json
    result, release = job.path("/result"), job.path("/release")
    # One owner releases, and their domain uploads the weights at once (as domains did before).
    assert send(job.domains[0], "PUT", result, final).status_code == 200
    assert error(job.network.get(result, headers=job.scientist), 403) == "result_unavailable"
    # A second owner releases: each release is the domain's own signed call.
    second = job.domains[1].call("POST", release, {"model_hash": digest})
    assert second.status_code == 200 and second.json["unreleased"] == 1, second.json
    assert error(job.network.get(result, headers=job.scientist), 403) == "result_unavailable"
    view = job.view()
    assert view["result"] == "awaiting_release"
    assert [p["released"] for p in view["participants"]] == [True, True, False]
    # Releasing another hash than the one attested releases nothing.
    wrong = job.domains[2].call("POST", release, {"model_hash": "c" * 64})
    assert error(wrong, 422) == "hash_mismatch"
    assert error(job.network.get(result, headers=job.scientist), 403) == "result_unavailable"
    last = job.domains[2].call("POST", release, {"model_hash": digest})
    assert last.status_code == 200 and last.json["status"] == "completed"
    fetched = job.network.get(result, headers=job.scientist)
    assert fetched.status_code == 200 and fetched.data == final


def test_the_last_owner_to_release_uploads_the_result(
    start_job: Callable[..., Job],  # noqa: F811
) -> None:
    """Domains release before any upload: the network holds no plaintext result until the
    last owner released, and the data scientist gets it only then."""
    job = start_job("none", rounds=1)
    final = _finish(job)
    digest = hashlib.sha256(final).hexdigest()
    for signer in job.domains:
        assert signer.call("POST", job.path("/attestation"), {"model_hash": digest}).json
    states = [
        signer.call("POST", job.path("/release"), {"model_hash": digest}).json
        for signer in job.domains
    ]
    assert [s["unreleased"] for s in states] == [2, 1, 0]
    assert not any(s["result_uploaded"] for s in states)
    result = job.path("/result")
    assert error(job.network.get(result, headers=job.scientist), 403) == "result_unavailable"
    uploaded = send(job.domains[2], "PUT", result, final)
    assert uploaded.status_code == 200 and uploaded.json["status"] == "completed"
    assert job.network.get(result, headers=job.scientist).data == final


# --- budgets of a network's data scientists ---------------------------------------------


def test_a_network_scientist_over_their_budget_is_refused(
    app: Flask,
    client: FlaskClient,
    headers: dict[str, dict[str, str]],
    live_network: LiveNode,  # noqa: F811
    model_files: tuple[bytes, bytes],  # noqa: F811
) -> None:
    owner = headers["owner"]
    assert upload(client, owner, name="digits-a").status_code == 201
    domain_id = _member(client, owner, live_network.url)
    _sync(app)
    budget = "/api/v1/datasets/digits-a/privacy-budget"
    unknown = {"epsilon": 1.5, "data_scientist": SCIENTIST, "network": "elsewhere"}
    assert client.put(budget, json=unknown, headers=owner).status_code == 404
    mine = {"epsilon": 1.5, "data_scientist": SCIENTIST.upper(), "network": "test-network"}
    response = client.put(budget, json=mine, headers=owner)
    assert response.status_code == 200, response.json
    [line] = response.json["budgets"]
    assert (line["data_scientist"], line["network"]) == (SCIENTIST, "test-network")

    first = _submit(live_network.url, domain_id, model_files)
    second = _submit(live_network.url, domain_id, model_files)
    _sync(app)
    approve = "/api/v1/requests/{}/approve"
    spent = client.post(
        approve.format(_request_of(client, owner, first)["id"]), json={}, headers=owner
    )
    assert spent.status_code == 200, spent.json
    refused = client.post(
        approve.format(_request_of(client, owner, second)["id"]), json={}, headers=owner
    )
    assert refused.status_code == 409, refused.json
    assert refused.json["error"]["code"] == "privacy_budget_exceeded"
    assert f"{SCIENTIST} via network test-network" in refused.json["error"]["message"]
    [line] = client.get(budget, headers=owner).json["budgets"]
    assert line["spent"] == pytest.approx(1.0) and line["left"] == pytest.approx(0.5)


# --- what an upgrade does to what was stored --------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_stored_rule_without_a_condition_stops_approving_on_upgrade(
    backend: str, tmp_path: Path, postgres: PostgresDatabases | None
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'domain.db'}"
    elif postgres is None:
        pytest.skip("PostgreSQL not reachable; set GRID_TEST_DATABASE_URL to run this")
    else:
        url = postgres.url(postgres.fresh(migrated=False))
    engine = make_engine(url)
    migrate.upgrade(engine, "0006_federated_analytics")
    rules = [{"release_on_completion": True}, {"kind": "access"}, {"kind": "job"}]
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO settings (key, value) VALUES ('domain', :value)"),
            {"value": json.dumps({"auto_approval": rules})},
        )
        connection.execute(
            text(
                "INSERT INTO requests (kind, reason, status, auto_approved, created_at) "
                "VALUES ('access', 'look', 'pending', false, CURRENT_TIMESTAMP)"
            )
        )
    migrate.upgrade(engine)
    with Session(engine) as session:
        stored = session.get(Setting, "domain")
        assert stored is not None
        assert Settings.model_validate(stored.value).auto_approval == [AutoApprovalRule(kind="job")]
        [access] = session.query(AccessRequest).all()
        assert access.status == "denied" and "granted nothing" in (access.decision_reason or "")
    engine.dispose()


def test_an_access_request_can_no_longer_be_filed(
    client: FlaskClient, headers: dict[str, dict[str, str]]
) -> None:
    """Approving one granted nothing, so the data scientist has nothing to ask for."""
    assert upload(client, headers["owner"], name="digits-a").status_code == 201
    body = {"datasets": ["digits-a"], "reason": "let me in"}
    filed = client.post("/api/v1/requests", json=body, headers=headers["data_scientist"])
    assert filed.status_code == 405
    assert client.get("/api/v1/requests", headers=headers["owner"]).json["items"] == []
    assert not hasattr(grid.DomainClient, "request_access")
    rule = {"auto_approval": [{"kind": "access"}]}
    assert client.put("/api/v1/settings", json=rule, headers=headers["owner"]).status_code == 422
