"""The job queue as workers and people use it: leases, attempts, results, release, budgets."""

from __future__ import annotations

import io
import json
import os
import pickle
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import torch
from flask import Flask
from flask.testing import FlaskClient
from safetensors.torch import save as save_safetensors
from sqlalchemy import func, select, update

from domain.models import Job
from tests.domain.uploads import file_job, stored_blobs, upload

PLAN = {"loss": "cross_entropy", "epochs": 2}
DP_PLAN = {**PLAN, "dp": {"epsilon": 1.0, "delta": 1e-5}}
TRAINED = save_safetensors({"0.weight": torch.ones(4, 2)})


@pytest.fixture
def datasets(client: FlaskClient, headers) -> None:
    assert upload(client, headers["owner"], "digits-a").status_code == 201


def approved_job(client: FlaskClient, headers, model_files, plan=PLAN, **approval: Any) -> int:
    filed = file_job(client, headers["data_scientist"], model_files, plan)
    assert filed.status_code == 201, filed.json
    job_id: int = filed.json["id"]
    decided = client.post(
        f"/api/v1/requests/{job_id}/approve", json=approval, headers=headers["owner"]
    )
    assert decided.status_code == 200, decided.json
    return job_id


def lease(client: FlaskClient, worker: dict[str, str]) -> dict[str, Any] | None:
    response = client.post("/api/v1/worker/lease", json={"host": "test"}, headers=worker)
    assert response.status_code in (200, 204), response.json
    return response.json if response.status_code == 200 else None


def deliver(client: FlaskClient, worker, job_id: int, attempt: int, metrics=None):
    form = {
        "metrics": json.dumps(metrics or {"loss": 0.1}),
        "weights": (io.BytesIO(TRAINED), "weights.safetensors"),
    }
    return client.put(
        f"/api/v1/worker/jobs/{job_id}/attempts/{attempt}/result",
        data=form,
        headers=worker,
        content_type="multipart/form-data",
    )


def expire_leases(app: Flask) -> None:
    """Let every lease run out, as if its worker had stopped heartbeating long ago."""
    with app.extensions["database"].sessionmaker() as session, session.begin():
        past = datetime.now(UTC) - timedelta(seconds=1)
        session.execute(update(Job).where(Job.status == "running").values(lease_expires_at=past))


def second_worker(client: FlaskClient, headers) -> dict[str, str]:
    created = client.post("/api/v1/workers", json={"name": "w2"}, headers=headers["owner"])
    assert created.status_code == 201
    return {"Authorization": f"Bearer {created.json['token']}"}


def test_a_job_goes_from_approval_through_a_worker_to_a_released_result(
    client: FlaskClient, headers, datasets, model_files
) -> None:
    filed = file_job(client, headers["data_scientist"], model_files, PLAN)
    job_id = filed.json["id"]
    shown = client.get(f"/api/v1/jobs/{job_id}", headers=headers["data_scientist"]).json
    assert shown["status"] == "pending_approval"
    assert lease(client, headers["worker"]) is None

    limits = {"cpu_seconds": 60, "memory_mb": 512, "wall_seconds": 120}
    client.post(
        f"/api/v1/requests/{job_id}/approve", json={"limits": limits}, headers=headers["owner"]
    )
    assert client.get(f"/api/v1/jobs/{job_id}", headers=headers["owner"]).json["status"] == "queued"

    leased = lease(client, headers["worker"])
    assert leased is not None
    assert (leased["job_id"], leased["attempt"], leased["limits"]) == (job_id, 1, limits)
    assert leased["datasets"][0]["name"] == "digits-a" and leased["plan"]["epochs"] == 2
    assert lease(client, headers["worker"]) is None  # nothing else queued

    for part in ("model", "weights", "datasets/digits-a"):
        fetched = client.get(f"/api/v1/worker/jobs/{job_id}/{part}", headers=headers["worker"])
        assert fetched.status_code == 200 and fetched.data, part
    beat = client.post(
        f"/api/v1/worker/jobs/{job_id}/heartbeat", json={"attempt": 1}, headers=headers["worker"]
    )
    assert beat.json == {"cancel": False, "lease_seconds": 30}
    events = {
        "attempt": 1,
        "events": [
            {"kind": "progress", "data": {"epoch": 1, "loss": 0.5}},
            {"kind": "log", "data": {"message": "hello"}},
        ],
    }
    sent = client.post(
        f"/api/v1/worker/jobs/{job_id}/events", json=events, headers=headers["worker"]
    )
    assert sent.status_code == 204
    running = client.get(f"/api/v1/jobs/{job_id}", headers=headers["data_scientist"]).json
    assert running["status"] == "running" and running["worker"] == "test-worker"

    done = deliver(client, headers["worker"], job_id, 1, {"loss": 0.1, "accuracy": 0.9})
    assert done.status_code == 200, done.json
    assert done.json["status"] == "completed" and done.json["result_status"] == "held"
    assert done.json["metrics"] == {"loss": 0.1, "accuracy": 0.9}

    logged = client.get(f"/api/v1/jobs/{job_id}/events", headers=headers["data_scientist"]).json
    kinds = [
        (e["kind"], e["data"].get("message") or e["data"].get("loss")) for e in logged["items"]
    ]
    assert ("progress", 0.5) in kinds and ("log", "hello") in kinds

    result = f"/api/v1/jobs/{job_id}/result"
    held = client.get(result, headers=headers["data_scientist"])
    assert held.status_code == 403 and held.json["error"]["code"] == "result_held"
    assert client.get(result, headers=headers["owner"]).data == TRAINED
    released = client.post(f"/api/v1/jobs/{job_id}/release", headers=headers["owner"])
    assert released.json["result_status"] == "released"
    assert client.get(result, headers=headers["data_scientist"]).data == TRAINED


@pytest.mark.parametrize(
    ("role", "held_status", "released_status"),
    [
        ("owner", 200, 200),
        ("admin", 200, 200),
        ("compliance_officer", 403, 403),
        ("data_scientist", 403, 200),
        ("other_scientist", 404, 404),
        ("anonymous", 401, 401),
        ("worker", 403, 403),
    ],
)
def test_who_sees_a_result(
    client: FlaskClient, headers, datasets, model_files, role, held_status, released_status
) -> None:
    if role == "other_scientist":
        client.post(
            "/api/v1/users",
            json={"email": "other@example.org", "password": "pw-other-1", "role": "data_scientist"},
            headers=headers["owner"],
        )
        token = client.post(
            "/api/v1/auth/login", json={"email": "other@example.org", "password": "pw-other-1"}
        ).json["access_token"]
        headers = {**headers, role: {"Authorization": f"Bearer {token}"}}
    job_id = approved_job(client, headers, model_files)
    leased = lease(client, headers["worker"])
    assert leased is not None
    deliver(client, headers["worker"], job_id, 1)
    result = f"/api/v1/jobs/{job_id}/result"
    assert client.get(result, headers=headers[role]).status_code == held_status
    client.post(f"/api/v1/jobs/{job_id}/release", headers=headers["owner"])
    assert client.get(result, headers=headers[role]).status_code == released_status


def test_an_expired_lease_goes_to_another_worker_and_only_its_result_counts(
    app: Flask, client: FlaskClient, headers, datasets, model_files
) -> None:
    job_id = approved_job(client, headers, model_files)
    first, other = headers["worker"], second_worker(client, headers)
    assert lease(client, first)["attempt"] == 1  # type: ignore[index]
    assert lease(client, other) is None
    expire_leases(app)

    again = lease(client, other)
    assert again is not None and again["attempt"] == 2
    stale = client.post(
        f"/api/v1/worker/jobs/{job_id}/heartbeat", json={"attempt": 1}, headers=first
    )
    assert stale.status_code == 409 and stale.json["error"]["code"] == "lease_lost"
    assert deliver(client, first, job_id, 1).status_code == 409
    assert deliver(client, other, job_id, 2).status_code == 200
    repeated = deliver(client, other, job_id, 2)
    assert repeated.status_code == 200 and repeated.json["status"] == "completed"
    late = deliver(client, first, job_id, 1)
    assert late.status_code == 409 and late.json["error"]["code"] == "result_exists"
    with app.extensions["database"].sessionmaker() as session:
        job = session.get(Job, job_id)
        assert job is not None and (job.attempt, job.result_attempt) == (2, 2)


def test_a_job_fails_once_its_attempts_are_used_up(
    app: Flask, client: FlaskClient, headers, datasets, model_files
) -> None:
    job_id = approved_job(client, headers, model_files)
    for attempt in (1, 2, 3):
        assert lease(client, headers["worker"])["attempt"] == attempt  # type: ignore[index]
        expire_leases(app)
    assert lease(client, headers["worker"]) is None
    job = client.get(f"/api/v1/jobs/{job_id}", headers=headers["owner"]).json
    assert job["status"] == "failed" and "3 attempts" in job["failure_reason"]


def test_a_training_failure_is_final_and_says_why(
    client: FlaskClient, headers, datasets, model_files
) -> None:
    job_id = approved_job(client, headers, model_files)
    lease(client, headers["worker"])
    failed = client.post(
        f"/api/v1/worker/jobs/{job_id}/attempts/1/failure",
        json={"reason": "loss became NaN at epoch 1, step 3"},
        headers=headers["worker"],
    )
    assert failed.status_code == 200
    assert failed.json["status"] == "failed" and "NaN" in failed.json["failure_reason"]
    assert lease(client, headers["worker"]) is None


def test_cancelling_a_queued_job_and_a_running_one(
    client: FlaskClient, headers, datasets, model_files
) -> None:
    queued = approved_job(client, headers, model_files)
    cancelled = client.post(f"/api/v1/jobs/{queued}/cancel", headers=headers["data_scientist"])
    assert cancelled.json["status"] == "cancelled"
    assert lease(client, headers["worker"]) is None

    running = approved_job(client, headers, model_files)
    lease(client, headers["worker"])
    asked = client.post(f"/api/v1/jobs/{running}/cancel", headers=headers["owner"])
    assert asked.json["status"] == "running" and asked.json["cancel_requested"]
    beat = client.post(
        f"/api/v1/worker/jobs/{running}/heartbeat", json={"attempt": 1}, headers=headers["worker"]
    )
    assert beat.json["cancel"] is True
    stopped = client.post(
        f"/api/v1/worker/jobs/{running}/attempts/1/failure",
        json={"status": "cancelled", "reason": "cancelled mid-epoch 2"},
        headers=headers["worker"],
    )
    assert stopped.json["status"] == "cancelled"
    again = client.post(f"/api/v1/jobs/{running}/cancel", headers=headers["owner"])
    assert again.status_code == 409


def test_release_on_completion_and_auto_approved_jobs(
    client: FlaskClient, headers, datasets, model_files
) -> None:
    rules = [{"kind": "job", "release_on_completion": True}]
    client.put("/api/v1/settings", json={"auto_approval": rules}, headers=headers["owner"])
    filed = file_job(client, headers["data_scientist"], model_files, PLAN)
    assert filed.json["auto_approved"]
    leased = lease(client, headers["worker"])
    assert leased is not None and leased["limits"]["memory_mb"] == 4096
    done = deliver(client, headers["worker"], filed.json["id"], 1)
    assert done.json["result_status"] == "released"
    result = client.get(
        f"/api/v1/jobs/{filed.json['id']}/result", headers=headers["data_scientist"]
    )
    assert result.status_code == 200


def test_a_worker_only_gets_inputs_of_the_job_it_holds(
    client: FlaskClient, headers, datasets, model_files
) -> None:
    job_id = approved_job(client, headers, model_files)
    other = second_worker(client, headers)
    assert client.get(f"/api/v1/worker/jobs/{job_id}/model", headers=other).status_code == 404
    lease(client, headers["worker"])
    assert client.get(f"/api/v1/worker/jobs/{job_id}/model", headers=other).status_code == 404
    assert (
        client.get(f"/api/v1/worker/jobs/{job_id}/datasets/nope", headers=headers["worker"])
    ).status_code == 404


def test_revoked_worker_is_shut_out_and_listed_as_revoked(
    client: FlaskClient, headers, datasets
) -> None:
    listed = client.get("/api/v1/workers", headers=headers["owner"]).json["items"]
    worker_id = next(w["id"] for w in listed if w["name"] == "test-worker")
    assert (
        client.delete(f"/api/v1/workers/{worker_id}", headers=headers["owner"]).status_code == 204
    )
    refused = client.post("/api/v1/worker/lease", json={}, headers=headers["worker"])
    assert refused.status_code == 401
    listed = client.get("/api/v1/workers", headers=headers["owner"]).json["items"]
    assert next(w["status"] for w in listed if w["id"] == worker_id) == "revoked"


def test_worker_status_follows_heartbeats_and_leases(
    client: FlaskClient, headers, datasets, model_files
) -> None:
    def status() -> tuple[str, int | None]:
        items = client.get("/api/v1/workers", headers=headers["owner"]).json["items"]
        mine = next(w for w in items if w["name"] == "test-worker")
        return mine["status"], mine["current_job"]

    assert status() == ("offline", None)
    client.post("/api/v1/worker/heartbeat", json={"host": "node-1"}, headers=headers["worker"])
    assert status() == ("online", None)
    job_id = approved_job(client, headers, model_files)
    lease(client, headers["worker"])
    assert status() == ("busy", job_id)


def test_privacy_budgets_refuse_what_they_cannot_pay_for(
    client: FlaskClient, headers, datasets, model_files
) -> None:
    budget = "/api/v1/datasets/digits-a/privacy-budget"
    client.put(budget, json={"epsilon": 3.0}, headers=headers["owner"])
    me = {"epsilon": 1.5, "data_scientist": "data_scientist@example.org"}
    assert client.put(budget, json=me, headers=headers["owner"]).status_code == 200

    without_dp = file_job(client, headers["data_scientist"], model_files, PLAN)
    assert without_dp.status_code == 422
    assert "differential privacy" in without_dp.json["error"]["message"]

    approved_job(client, headers, model_files, DP_PLAN)
    shown = client.get(budget, headers=headers["data_scientist"]).json
    mine = next(b for b in shown["budgets"] if b["data_scientist"])
    assert (shown["spent"], mine["spent"], mine["left"]) == (1.0, 1.0, 0.5)

    over = file_job(client, headers["data_scientist"], model_files, DP_PLAN)
    assert over.status_code == 422
    assert over.json["error"]["code"] == "privacy_budget_exceeded"
    assert "0.5 of 1.5 left" in over.json["error"]["message"]


def test_an_approval_that_would_overspend_is_refused(
    app: Flask, client: FlaskClient, headers, datasets, model_files
) -> None:
    budget = "/api/v1/datasets/digits-a/privacy-budget"
    client.put(budget, json={"epsilon": 1.5}, headers=headers["owner"])
    first = file_job(client, headers["data_scientist"], model_files, DP_PLAN).json["id"]
    second = file_job(client, headers["data_scientist"], model_files, DP_PLAN).json["id"]
    ok = client.post(f"/api/v1/requests/{first}/approve", json={}, headers=headers["owner"])
    assert ok.status_code == 200
    refused = client.post(f"/api/v1/requests/{second}/approve", json={}, headers=headers["owner"])
    assert refused.status_code == 409
    assert "0.5 of 1.5 left" in refused.json["error"]["message"]
    pending = client.get(f"/api/v1/requests/{second}", headers=headers["owner"]).json
    assert pending["status"] == "pending"
    with app.extensions["database"].sessionmaker() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 1


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"limits": {"cpu_seconds": 0}}, "limits.cpu_seconds"),
        ({"limits": {"memory_mb": 1}}, "limits.memory_mb"),
        ({"release": True}, "release"),
    ],
)
def test_bad_approvals_are_refused(
    client: FlaskClient, headers, datasets, model_files, body, needle
) -> None:
    job_id = file_job(client, headers["data_scientist"], model_files, PLAN).json["id"]
    response = client.post(
        f"/api/v1/requests/{job_id}/approve", json=body, headers=headers["owner"]
    )
    assert response.status_code == 422 and needle in response.json["error"]["message"]


def test_a_result_that_is_not_safetensors_leaves_nothing_behind(
    app: Flask, client: FlaskClient, headers, datasets, model_files
) -> None:
    job_id = approved_job(client, headers, model_files)
    lease(client, headers["worker"])
    before = stored_blobs(app)
    form = {"metrics": "{}", "weights": (io.BytesIO(b"not tensors"), "weights.safetensors")}
    response = client.put(
        f"/api/v1/worker/jobs/{job_id}/attempts/1/result",
        data=form,
        headers=headers["worker"],
        content_type="multipart/form-data",
    )
    assert response.status_code == 422
    assert stored_blobs(app) == before
    assert (
        client.get(f"/api/v1/jobs/{job_id}", headers=headers["owner"]).json["status"] == "running"
    )


class _Payload:
    """Pickles to a call that creates `marker`: proof of code execution if it ever runs."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("packing", ["pickle", "torch.save"])
def test_a_pickle_renamed_to_pt2_is_refused_and_never_runs(
    app: Flask, client: FlaskClient, headers, datasets, model_files, tmp_path, packing
) -> None:
    marker = tmp_path / "payload-ran"
    if packing == "pickle":
        archive = pickle.dumps(_Payload(str(marker)))
    else:
        buffer = io.BytesIO()
        torch.save(_Payload(str(marker)), buffer)
        archive = buffer.getvalue()
    before = stored_blobs(app)
    response = file_job(client, headers["data_scientist"], (archive, model_files[1]), PLAN)
    assert response.status_code == 422 and response.json["error"]["code"] == "invalid_model"
    assert not marker.exists()
    assert stored_blobs(app) == before
    assert client.get("/api/v1/requests", headers=headers["owner"]).json["items"] == []
