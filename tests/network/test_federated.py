"""Federated jobs on the network: submit, invitations, key setup, blind sums, deadlines, results."""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from grid_common import he
from grid_common.db import db_session
from grid_common.federated_schemas import (
    FederatedSpec,
    invitation_message,
    key_statement_verifies,
    sign_key_statement,
)
from grid_common.hashes import spec_hash
from grid_common.identity import verify_key_from_text
from grid_common.model_archive import save_for_training
from grid_common.strategy import draw_sample
from network.federated import GRACE_ROUNDS, close_due_rounds, fail_stalled_key_setups
from network.models import FederatedJob, FederatedParticipant, FederatedRound
from tests.network.conftest import Signer, approved, dataset

NAMES = ("hospital-a", "clinic-b", "lab-c")
SAMPLES = (10, 30, 60)
JOBS = "/api/v1/fl/jobs"
# Rounds that may close with 2 domains need DP on each domain's update: with it, they may.
DP_PLAN = {"loss": "mse", "epochs": 1, "dp": {"epsilon": 1.0, "delta": 1e-5}}
PASSWORD = "scientist-password"


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """A linear model exported for training (.pt2) and its weights (safetensors)."""
    torch.manual_seed(0)
    module = torch.nn.Linear(3, 2)
    folder = tmp_path_factory.mktemp("fl-model")
    save_for_training(module, torch.zeros(4, 3), folder / "model.pt2")
    tensors = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    he.write_weights(tensors, folder / "weights.safetensors")
    return (folder / "model.pt2").read_bytes(), (folder / "weights.safetensors").read_bytes()


@pytest.fixture(scope="module")
def job_keys() -> he.JobKeys:
    return he.make_job_keys(he.CkksParams())


def account(network: FlaskClient, operator: dict[str, str], email: str) -> dict[str, str]:
    """Authorization headers of a new data scientist."""
    made = network.post(
        "/api/v1/accounts",
        json={"email": email, "password": PASSWORD, "role": "data_scientist"},
        headers=operator,
    )
    assert made.status_code == 201, made.json
    assert made.json["role"] == "data_scientist"
    login = network.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.json
    return {"Authorization": f"Bearer {login.json['access_token']}"}


@pytest.fixture
def scientist(network: FlaskClient, operator: dict[str, str]) -> dict[str, str]:
    return account(network, operator, "scientist@example.org")


def member(
    network: FlaskClient, operator: dict[str, str], make_signer: Callable[[], Signer], name: str
) -> Signer:
    """An approved domain that published a dataset named `records`."""
    signer = make_signer()
    approved(signer, network, operator, name=name)
    assert signer.push([dataset("records")]).status_code == 200
    return signer


@pytest.fixture
def domains(
    network: FlaskClient, operator: dict[str, str], make_signer: Callable[[], Signer]
) -> list[Signer]:
    return [member(network, operator, make_signer, name) for name in NAMES]


@pytest.fixture
def outsider(
    network: FlaskClient, operator: dict[str, str], make_signer: Callable[[], Signer]
) -> Signer:
    """Associated with the network and publishing `records`, but in no job."""
    return member(network, operator, make_signer, "outsider")


# --- helpers -------------------------------------------------------------------------------


def spec_for(domains: list[Signer], **fields: Any) -> dict[str, Any]:
    # The first domain by its id, the others by name: a spec may use either.
    targets = [{"domain": domains[0].id, "dataset": "records"}] + [
        {"domain": NAMES[i], "dataset": "records"} for i in range(1, len(domains))
    ]
    return {"plan": {"loss": "mse", "epochs": 1}, "datasets": targets, "rounds": 2, **fields}


def submit(
    network: FlaskClient,
    headers: dict[str, str],
    spec: dict[str, Any],
    files: tuple[bytes, bytes],
    model_name: str = "model.pt2",
) -> TestResponse:
    model, weights = files
    data = {
        "spec": json.dumps(spec),
        "model": (io.BytesIO(model), model_name),
        "weights": (io.BytesIO(weights), "weights.safetensors"),
    }
    return network.post(JOBS, data=data, headers=headers, content_type="multipart/form-data")


def send(
    signer: Signer, method: str, path: str, data: bytes, signed: bytes | None = None
) -> TestResponse:
    """A signed call with a binary body; `signed` is what the signature claims, if not `data`."""
    headers = signer.headers(method, path, data if signed is None else signed)
    headers["Content-Type"] = "application/octet-stream"
    return signer.client.open(path, method=method, data=data, headers=headers)


def error(response: TestResponse, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    message: str = response.json["error"]["message"]
    assert message
    return str(response.json["error"]["code"])


@dataclass
class Job:
    """One submitted job and what its domains would hold (the secret context, under CKKS)."""

    id: int
    network: FlaskClient
    scientist: dict[str, str]
    domains: list[Signer]
    mode: he.SecureAggregation
    keys: he.JobKeys
    parameters: int
    tmp: Path

    @property
    def layout(self) -> he.UpdateLayout:
        return he.UpdateLayout(self.mode, self.parameters, he.CkksParams().slots)

    @property
    def public(self) -> he.FrameCodec:
        return he.codec_for(self.mode, self.keys.public_context)

    @property
    def secret(self) -> he.FrameCodec:
        return he.codec_for(self.mode, self.keys.secret_context)

    def path(self, rest: str = "") -> str:
        return f"{JOBS}/{self.id}{rest}"

    def view(self) -> dict[str, Any]:
        response = self.network.get(self.path(), headers=self.scientist)
        assert response.status_code == 200, response.json
        return dict(response.json)

    def state(self, signer: Signer) -> dict[str, Any]:
        response = signer.call("GET", self.path("/state"))
        assert response.status_code == 200, response.json
        return dict(response.json)

    def decide(self, signer: Signer, approve: bool = True) -> TestResponse:
        return signer.call("POST", self.path("/decision"), {"approved": approve, "reason": "ok"})

    def encode(self, vector: np.ndarray, codec: he.FrameCodec | None = None) -> bytes:
        target = self.tmp / "update.bin"
        he.write_update(vector, codec or self.public, self.layout, target)
        return target.read_bytes()

    def update(
        self, signer: Signer, number: int, data: bytes, samples: int, **query: float
    ) -> TestResponse:
        args = "&".join(f"{k}={v}" for k, v in {"samples": samples, **query}.items())
        return send(signer, "PUT", self.path(f"/rounds/{number}/update?{args}"), data)

    def aggregate(self, signer: Signer, number: int) -> tuple[np.ndarray, int]:
        """The round's aggregate as a domain decrypts it, and the samples behind it."""
        response = signer.call("GET", self.path(f"/rounds/{number}/aggregate"))
        assert response.status_code == 200, response.get_data(as_text=True)
        target = self.tmp / "aggregate.bin"
        target.write_bytes(response.data)
        return he.read_update(target, self.secret, self.layout), int(
            response.headers["X-Grid-Samples"]
        )


def weights_of(index: int, parameters: int) -> np.ndarray:
    return np.random.default_rng(index).uniform(-1, 1, size=parameters)


def create(
    network: FlaskClient,
    scientist: dict[str, str],
    domains: list[Signer],
    files: tuple[bytes, bytes],
    keys: he.JobKeys,
    tmp: Path,
    mode: he.SecureAggregation = "ckks",
    **fields: Any,
) -> Job:
    response = submit(
        network, scientist, spec_for(domains, secure_aggregation=mode, **fields), files
    )
    assert response.status_code == 201, response.json
    assert response.json["status"] == "pending_approval"
    return Job(
        response.json["id"], network, scientist, domains, mode, keys,
        response.json["parameters"], tmp,
    )  # fmt: skip


def deal_keys(dealer: Signer, path: str, keys: he.JobKeys) -> TestResponse:
    """As a domain deals: a box from the dealer to every key holder, then the public context
    with the dealer's signature of it; returns the network's answer to the last."""
    job_id = int(path.rsplit("/", 1)[1])
    for entry in dealer.call("GET", f"{path}/state").json["dealer_keys"]:
        boxed = he.box_for(
            dealer.identity.encryption_key, entry["encryption_key"], keys.secret_context
        )
        response = send(dealer, "PUT", f"{path}/keys/sealed/{entry['domain_id']}", boxed)
        assert response.status_code == 204, response.get_data(as_text=True)
    signature = sign_key_statement(
        dealer.identity,
        network_id=dealer.recipient,
        network_job_id=job_id,
        public_context=keys.public_context,
    )
    return send(dealer, "PUT", f"{path}/keys/public?signature={signature}", keys.public_context)


def deal(job: Job) -> None:
    """The dealer boxes the secret context for every key holder, then hands over the public one."""
    dealer = next(d for d in job.domains if job.state(d)["deal_keys"])
    response = deal_keys(dealer, job.path(""), job.keys)
    assert response.status_code == 200, response.json
    assert response.json["status"] == "running"


def blob_files(app: Flask) -> set[Path]:
    root = app.extensions["blobs"].root
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def created(
    network: FlaskClient,
    scientist: dict[str, str],
    domains: list[Signer],
    model_files: tuple[bytes, bytes],
    job_keys: he.JobKeys,
    tmp_path: Path,
) -> Callable[..., Job]:
    def make(mode: he.SecureAggregation = "ckks", **fields: Any) -> Job:
        return create(network, scientist, domains, model_files, job_keys, tmp_path, mode, **fields)

    return make


@pytest.fixture
def start_job(created: Callable[..., Job]) -> Callable[..., Job]:
    """A job every domain approved, its keys dealt: round 1 is open."""

    def make(mode: he.SecureAggregation = "ckks", **fields: Any) -> Job:
        job = created(mode, **fields)
        for signer in job.domains:
            assert job.decide(signer).status_code == 200
        if mode == "ckks":
            deal(job)
        assert job.view()["status"] == "running"
        return job

    return make


# --- submitting ----------------------------------------------------------------------------


def test_submit_shows_the_job_to_its_scientist(
    network: FlaskClient,
    scientist: dict[str, str],
    domains: list[Signer],
    model_files: tuple[bytes, bytes],
) -> None:
    spec = spec_for(domains, min_domains=2, plan=DP_PLAN)
    response = submit(network, scientist, spec, model_files)
    assert response.status_code == 201, response.json
    job = response.json
    assert job["status"] == "pending_approval"
    assert job["submitter"] == "scientist@example.org"
    assert job["parameters"] == 3 * 2 + 2
    assert job["min_domains"] == 2 and job["rounds"] == 2
    assert job["secure_aggregation"] == "ckks" and job["strategy"] == "fedavg"
    assert [p["domain"] for p in job["participants"]] == list(NAMES)
    assert [p["domain_id"] for p in job["participants"]] == [d.id for d in domains]
    assert {p["status"] for p in job["participants"]} == {"invited"}
    assert job["result"] == "none" and job["last_round"] is None
    # The scientist recomputes the spec hash from its own files, the domains' ids and how the
    # rounds run; any other setting gives another hash.
    settings = FederatedSpec.model_validate(spec).round_settings()
    expected = {
        "model_digest": hashlib.sha256(model_files[0]).hexdigest(),
        "weights_digest": hashlib.sha256(model_files[1]).hexdigest(),
        "plan": DP_PLAN,
        "datasets": [f"{d.id}/records" for d in domains],
        "kind": "model_centric",
        "domains": [d.id for d in domains],
    }
    assert job["spec_hash"] == spec_hash(**expected, federated=settings)
    assert job["spec_hash"] != spec_hash(**expected, federated={**settings, "rounds": 3})
    model = network.get(f"{JOBS}/{job['id']}/model", headers=scientist)
    assert model.status_code == 200 and model.data == model_files[0]
    listed = network.get(JOBS, headers=scientist)
    assert [j["id"] for j in listed.json["items"]] == [job["id"]]


def _with_target(spec: dict[str, Any], index: int, **target: str) -> dict[str, Any]:
    spec["datasets"][index] = {**spec["datasets"][index], **target}
    return spec


BAD_SPECS: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], str]] = {
    "fedprox without mu": (lambda s: {**s, "strategy": "fedprox"}, "fedprox needs mu"),
    "mu with fedavg": (lambda s: {**s, "mu": 0.1}, "mu is FedProx's parameter"),
    "unknown domain": (lambda s: _with_target(s, 1, domain="nowhere"), "No domain 'nowhere'"),
    "unknown dataset": (lambda s: _with_target(s, 1, dataset="missing"), "no dataset named"),
    "outsider's dataset on a name": (
        lambda s: _with_target(s, 2, domain="outsider", dataset="nope"),
        "no dataset named 'nope'",
    ),
    "min_domains above the domains": (lambda s: {**s, "min_domains": 4}, "min_domains is 4"),
    "same domain twice": (lambda s: _with_target(s, 1, domain=NAMES[0]), "one dataset per domain"),
    "unknown plan field": (
        lambda s: {**s, "plan": {"loss": "mse", "code": "import os"}},
        "plan.code",
    ),
    "degree not allowed": (
        lambda s: {**s, "ckks": {"poly_modulus_degree": 1000}},
        "must be one of",
    ),
    "no datasets": (lambda s: {**s, "datasets": []}, "datasets"),
    "server_lr with fedavg": (
        lambda s: {**s, "server_lr": 0.1},
        "server_lr is a parameter of fedavgm, fedadam, fedyogi, fedadagrad, not of fedavg",
    ),
    "a sample that could expose a domain": (
        lambda s: {**s, "fraction": 0.5, "min_sample": 2},
        "Set min_sample to at least 3",
    ),
    "a seed the scientist chose": (
        lambda s: {**s, "fraction": 0.5, "sample_seed": "0" * 32},
        "Leave sample_seed out",
    ),
}


@pytest.mark.parametrize("bad", sorted(BAD_SPECS))
def test_a_bad_spec_is_refused_and_leaves_nothing(
    bad: str,
    network: FlaskClient,
    network_app: Flask,
    scientist: dict[str, str],
    domains: list[Signer],
    outsider: Signer,
    model_files: tuple[bytes, bytes],
) -> None:
    change, message = BAD_SPECS[bad]
    before = blob_files(network_app)
    response = submit(network, scientist, change(spec_for(domains)), model_files)
    error(response, 422)
    assert message in response.json["error"]["message"]
    assert blob_files(network_app) == before
    assert network.get(JOBS, headers=scientist).json["items"] == []


def test_a_job_naming_a_domain_by_id_and_by_name_is_refused(
    network: FlaskClient,
    scientist: dict[str, str],
    domains: list[Signer],
    model_files: tuple[bytes, bytes],
) -> None:
    spec = spec_for(domains[:2])
    spec["datasets"][1]["domain"] = NAMES[0]  # the same domain as datasets[0], by its name
    assert error(submit(network, scientist, spec, model_files), 422) == "duplicate_domain"


@pytest.mark.parametrize(
    ("files", "name", "code"),
    [
        pytest.param("pickle", "model.pt2", "invalid_model", id="not a .pt2"),
        pytest.param("zip-weights", "model.pt2", "invalid_weights", id="weights not safetensors"),
        pytest.param("bf16", "model.pt2", "invalid_weights", id="weights numpy cannot read"),
    ],
)
def test_bad_files_are_refused_and_leave_nothing(
    files: str,
    name: str,
    code: str,
    network: FlaskClient,
    network_app: Flask,
    scientist: dict[str, str],
    domains: list[Signer],
    model_files: tuple[bytes, bytes],
) -> None:
    model, weights = model_files
    if files == "pickle":
        model = b"\x80\x04\x95" + b"\0" * 64  # a pickle's opening bytes
    elif files == "zip-weights":
        weights = model
    else:
        from safetensors.torch import save

        weights = save({"w": torch.zeros(2, dtype=torch.bfloat16)})
    before = blob_files(network_app)
    response = submit(network, scientist, spec_for(domains), (model, weights), name)
    assert error(response, 422) == code
    assert blob_files(network_app) == before


def test_a_missing_file_part_is_refused(
    network: FlaskClient, scientist: dict[str, str], domains: list[Signer]
) -> None:
    data = {"spec": json.dumps(spec_for(domains))}
    response = network.post(JOBS, data=data, headers=scientist, content_type="multipart/form-data")
    error(response, 422)
    assert "'model'" in response.json["error"]["message"]


# --- invitations and decisions ---------------------------------------------------------------


def test_invitations_are_signed_by_the_network_and_go_only_to_invited_domains(
    network: FlaskClient,
    scientist: dict[str, str],
    domains: list[Signer],
    outsider: Signer,
    model_files: tuple[bytes, bytes],
    job_keys: he.JobKeys,
    tmp_path: Path,
) -> None:
    job = create(network, scientist, domains, model_files, job_keys, tmp_path, reason="study")
    node = network.get("/api/v1/node").json
    verify_key = verify_key_from_text(node["signing_key"])
    for signer in domains:
        response = signer.call("GET", "/api/v1/fl/invitations")
        assert response.status_code == 200, response.json
        (invitation,) = response.json["items"]
        assert invitation["network_job_id"] == job.id
        assert invitation["network_id"] == node["id"]
        assert invitation["dataset"] == "records"
        assert invitation["requester"] == "scientist@example.org"
        assert invitation["reason"] == "study"
        assert invitation["participants"] == list(NAMES)
        assert invitation["model_digest"] == hashlib.sha256(model_files[0]).hexdigest()
        assert invitation["weights_digest"] == hashlib.sha256(model_files[1]).hexdigest()
        assert invitation["spec_hash"] == job.view()["spec_hash"]
        signature = he.b64decode(invitation["signature"], length=64)
        verify_key.verify(invitation_message(invitation), signature)
        forged = {**invitation, "rounds": invitation["rounds"] + 1}
        with pytest.raises(Exception, match="Signature was forged"):
            verify_key.verify(invitation_message(forged), signature)
        # The files it would train, as the network received them.
        for part, content in zip(("model", "weights"), model_files, strict=True):
            fetched = signer.call("GET", job.path(f"/files/{part}"))
            assert fetched.status_code == 200 and fetched.data == content
    assert outsider.call("GET", "/api/v1/fl/invitations").json["items"] == []
    assert error(outsider.call("GET", job.path("/state")), 403) == "forbidden"
    assert error(outsider.call("GET", job.path("/files/model")), 403) == "forbidden"
    # Once decided, an invitation is no longer offered.
    assert job.decide(domains[0]).status_code == 200
    assert domains[0].call("GET", "/api/v1/fl/invitations").json["items"] == []


def test_plain_round_one_opens_once_min_domains_approved(created: Callable[..., Job]) -> None:
    job = created("none", min_domains=2, plan=DP_PLAN)
    first, second, late = job.domains
    assert job.decide(first).json["status"] == "pending_approval"
    assert job.decide(first).status_code == 200  # the same decision again is harmless
    assert error(job.decide(first, approve=False), 409) == "already_decided"
    state = job.decide(second).json
    assert state["status"] == "running" and state["round"] == 1 and state["round_open"]
    assert state["keys_ready"] and not state["deal_keys"]
    view = job.view()
    assert view["current_round"] == 1 and view["last_round"]["status"] == "open"
    assert view["started_at"] is not None
    # A late approval joins the running job; its update is now awaited too.
    assert job.decide(late).json["status"] == "running"
    assert [p["status"] for p in job.view()["participants"]] == ["approved"] * 3


@pytest.mark.parametrize("mode", ["none", "ckks"])
def test_a_job_fails_when_denials_leave_no_quorum(created: Callable[..., Job], mode: str) -> None:
    job = created(mode, min_domains=2, plan=DP_PLAN)
    assert job.decide(job.domains[0], approve=False).json["status"] == "pending_approval"
    assert job.decide(job.domains[1], approve=False).json["status"] == "failed"
    view = job.view()
    assert view["status"] == "failed" and "min_domains" in view["failure_reason"]
    assert error(job.decide(job.domains[2]), 409) == "job_finished"
    assert job.domains[2].call("GET", "/api/v1/fl/invitations").json["items"] == []


def test_ckks_key_setup_goes_through_the_dealer_only(
    created: Callable[..., Job], network_app: Flask
) -> None:
    job = created("ckks")
    for signer in job.domains:
        job.decide(signer)
    states = [job.state(d) for d in job.domains]
    assert {s["status"] for s in states} == {"key_setup"}
    assert not any(s["keys_ready"] for s in states)
    # The first to approve deals.
    assert [s["deal_keys"] for s in states] == [True, False, False]
    dealer, other, _ = job.domains
    assert states[0]["dealer_keys"] == [
        {"domain_id": d.id, "encryption_key": d.identity.encryption_public_key} for d in job.domains
    ]
    assert states[1]["dealer_keys"] == []

    def public(signer: Signer, body: bytes, job_id: int = job.id) -> str:
        """The public-context upload, with `signer`'s signature of `body` for job `job_id`."""
        signature = sign_key_statement(
            signer.identity, network_id=signer.recipient, network_job_id=job_id, public_context=body
        )
        return job.path(f"/keys/public?signature={signature}")

    before = blob_files(network_app)
    sealed = he.box_for(
        other.identity.encryption_key, other.identity.encryption_public_key, job.keys.secret_context
    )
    assert error(send(other, "PUT", job.path(f"/keys/sealed/{other.id}"), sealed), 403)
    context = job.keys.public_context
    assert error(send(other, "PUT", public(other, context), context), 403)
    stranger_id = "f" * 32
    assert error(send(dealer, "PUT", job.path(f"/keys/sealed/{stranger_id}"), sealed), 404)
    assert error(send(dealer, "PUT", public(dealer, context), context), 409) == "keys_incomplete"
    secret = job.keys.secret_context
    assert error(send(dealer, "PUT", public(dealer, secret), secret), 422) == "context_not_public"
    other_params = he.make_job_keys(he.CkksParams(global_scale_bits=30)).public_context
    assert error(send(dealer, "PUT", public(dealer, other_params), other_params), 422) == (
        "context_mismatch"
    )
    assert error(send(dealer, "PUT", public(dealer, b"not a context"), b"not a context"), 422)
    # The dealer's signature must cover this context, for this job, by the dealer itself.
    for wrong in (public(other, context), public(dealer, context, job.id + 1)):
        assert error(send(dealer, "PUT", wrong, context), 422) == "bad_key_signature"
    assert blob_files(network_app) == before
    assert error(other.call("GET", job.path("/keys/sealed")), 404) == "not_found"
    assert error(other.call("GET", job.path("/keys/public")), 404) == "not_found"

    deal(job)
    for signer in job.domains:
        state = job.state(signer)
        assert state["status"] == "running" and state["keys_ready"] and not state["deal_keys"]
        # Each domain opens its own box, from the dealer, and checks the dealer's signature
        # of the public context the network holds.
        box = signer.call("GET", job.path("/keys/sealed"))
        assert box.status_code == 200
        opened = he.unbox(
            signer.identity.encryption_key, dealer.identity.encryption_public_key, box.data
        )
        assert opened == job.keys.secret_context
        assert state["dealer"] == dealer.id
        assert signer.call("GET", job.path("/keys/public")).data == job.keys.public_context
        assert key_statement_verifies(
            dealer.identity.signing_public_key,
            state["public_context_signature"],
            network_id=dealer.recipient,
            network_job_id=job.id,
            dealer_id=dealer.id,
            public_context_digest=hashlib.sha256(job.keys.public_context).hexdigest(),
        )
    assert error(send(dealer, "PUT", public(dealer, context), context), 409) == "not_key_setup"
    # A participant that finds the keys fail its checks refuses them: the job fails.
    reason = {"reason": "the box is not the dealer's"}
    assert other.call("POST", job.path("/keys/refused"), reason).status_code == 200
    view = job.view()
    assert view["status"] == "failed"
    assert "refused the job's CKKS keys: the box is not the dealer's" in view["failure_reason"]


def _send_all(job: Job, number: int, signers: list[Signer] | None = None) -> np.ndarray:
    """Each domain sends n_i * w_i; returns the sum a correct aggregate decrypts to."""
    total = np.zeros(job.parameters)
    for signer in signers or job.domains:
        index = job.domains.index(signer)
        n, w = SAMPLES[index], weights_of(index + 10 * number, job.parameters)
        response = job.update(signer, number, job.encode(n * w), n, loss=index + 1.0)
        assert response.status_code == 200, response.json
        total += n * w
    return total


@pytest.mark.parametrize("mode", ["none", "ckks"])
def test_the_aggregate_is_the_sample_weighted_sum(
    start_job: Callable[..., Job], mode: he.SecureAggregation
) -> None:
    job = start_job(mode)
    first = job.domains[0]
    w0 = weights_of(10, job.parameters)
    response = job.update(first, 1, job.encode(SAMPLES[0] * w0), SAMPLES[0], loss=1.0)
    assert response.status_code == 200, response.json
    assert response.json["status"] == "open" and response.json["reporters"] == [NAMES[0]]
    assert response.json["aggregate_hash"] is None
    assert job.state(first)["submitted"] and not job.state(job.domains[1])["submitted"]
    # No aggregate until the round closes.
    assert error(first.call("GET", job.path("/rounds/1/aggregate")), 404) == "not_found"

    expected = _send_all(job, 1, job.domains[1:]) + SAMPLES[0] * w0
    for signer in job.domains:
        total, samples = job.aggregate(signer, 1)
        np.testing.assert_allclose(total, expected, rtol=0, atol=1e-6)
        assert samples == sum(SAMPLES)
        average = sum(n * weights_of(i + 10, job.parameters) for i, n in enumerate(SAMPLES))
        np.testing.assert_allclose(total / samples, average / sum(SAMPLES), rtol=0, atol=1e-6)
        state = job.state(signer)
        assert state["round"] == 2 and state["round_open"] and not state["submitted"]
        assert state["aggregate_round"] == 1 and state["aggregate_samples"] == sum(SAMPLES)
    rounds = job.network.get(job.path("/rounds"), headers=job.scientist).json["items"]
    assert [(r["number"], r["status"]) for r in rounds] == [(1, "closed"), (2, "open")]
    closed = rounds[0]
    assert closed["reporters"] == list(NAMES) and closed["samples"] == sum(SAMPLES)
    assert closed["aggregate_hash"] is not None
    # Loss 1, 2 and 3 on 10, 30 and 60 rows.
    assert closed["metrics"]["loss"] == pytest.approx((10 * 1 + 30 * 2 + 60 * 3) / 100)
    assert closed["metrics"]["domains"][NAMES[2]] == {"samples": 60, "loss": 3.0}
    assert [p["rounds_reported"] for p in job.view()["participants"]] == [1, 1, 1]

    # Round 2 sums its own updates, not round 1's.
    expected = _send_all(job, 2)
    total, _ = job.aggregate(job.domains[0], 2)
    np.testing.assert_allclose(total, expected, rtol=0, atol=1e-6)
    view = job.view()
    assert view["status"] == "finishing" and view["result"] == "awaiting_attestations"


def test_nothing_the_network_holds_decrypts_an_update(
    start_job: Callable[..., Job], network_app: Flask
) -> None:
    job = start_job("ckks")
    _send_all(job, 1)
    blobs = network_app.extensions["blobs"]
    with network_app.app_context():
        session = db_session()
        stored = session.get(FederatedJob, job.id)
        assert stored is not None and stored.public_context_digest is not None
        round_ = session.scalar(
            select(FederatedRound).where(
                FederatedRound.job_id == job.id, FederatedRound.number == 1
            )
        )
        assert round_ is not None and round_.aggregate_digest is not None
        sealed = session.scalars(
            select(FederatedParticipant.sealed_context_digest).where(
                FederatedParticipant.job_id == job.id
            )
        ).all()
    public = blobs.path(stored.public_context_digest).read_bytes()
    aggregate = blobs.path(round_.aggregate_digest)
    with pytest.raises(he.UpdateError, match="cannot decrypt"):
        he.read_update(aggregate, he.codec_for("ckks", public), job.layout)
    for digest in sealed:
        assert digest is not None
        with pytest.raises(he.UpdateError):
            he.load_context(blobs.path(digest).read_bytes())
    # No blob at all is a context with a secret key in it.
    for path in blob_files(network_app):
        try:
            context = he.load_context(path.read_bytes())
        except he.UpdateError:
            continue
        assert not context.is_private()  # type: ignore[attr-defined]


def _late(job: Job, outsider: Signer, stranger: Signer) -> TestResponse:
    return job.update(job.domains[0], 1, job.encode(np.ones(job.parameters)), 5)


REJECTIONS: dict[str, tuple[Callable[[Job, Signer, Signer], TestResponse], int, str]] = {
    "non-participant": (
        lambda job, outsider, _: job.update(outsider, 1, job.encode(np.ones(job.parameters)), 5),
        403,
        "forbidden",
    ),
    "stranger": (
        lambda job, _, stranger: job.update(stranger, 1, job.encode(np.ones(job.parameters)), 5),
        403,
        "forbidden",
    ),
    "wrong length": (
        lambda job, *_: send(
            job.domains[1],
            "PUT",
            job.path("/rounds/1/update?samples=5"),
            _encoded(job, he.UpdateLayout(job.mode, job.parameters + 1, job.layout.slots)),
        ),
        422,
        "bad_update",
    ),
    "plaintext in a ckks job": (
        lambda job, *_: job.update(
            job.domains[1], 1, job.encode(np.ones(job.parameters), he.PlainCodec()), 5
        ),
        422,
        "bad_update",
    ),
    "garbage": (lambda job, *_: job.update(job.domains[1], 1, b"\0" * 4096, 5), 422, "bad_update"),
    "body not its signed digest": (
        lambda job, *_: send(
            job.domains[1],
            "PUT",
            job.path("/rounds/1/update?samples=5"),
            job.encode(np.ones(job.parameters)),
            signed=b"another body",
        ),
        401,
        "body_mismatch",
    ),
    "no samples": (
        lambda job, *_: send(
            job.domains[1], "PUT", job.path("/rounds/1/update"), job.encode(np.ones(job.parameters))
        ),
        422,
        "invalid",
    ),
    "second from the same domain": (
        lambda job, *_: job.update(job.domains[0], 1, job.encode(np.ones(job.parameters)), 5),
        409,
        "already_sent",
    ),
    "a round not open yet": (
        lambda job, *_: job.update(job.domains[1], 2, job.encode(np.ones(job.parameters)), 5),
        409,
        "round_not_open",
    ),
    "late, for a closed round": (_late, 409, "round_closed"),
}


def _encoded(job: Job, layout: he.UpdateLayout) -> bytes:
    target = job.tmp / "odd.bin"
    he.write_update(np.ones(layout.values), job.public, layout, target)
    return target.read_bytes()


@pytest.mark.parametrize("kind", sorted(REJECTIONS))
def test_a_refused_update_leaves_the_round_unharmed(
    kind: str,
    start_job: Callable[..., Job],
    outsider: Signer,
    make_signer: Callable[[], Signer],
) -> None:
    job = start_job("ckks")
    reject, status, code = REJECTIONS[kind]
    expected = _send_all(job, 1, job.domains[:1])
    late = kind.startswith("late")
    if not late:
        assert error(reject(job, outsider, make_signer()), status) == code
        last = job.view()["last_round"]
        assert last["number"] == 1 and last["reporters"] == [NAMES[0]]
        assert last["samples"] == SAMPLES[0]
    expected += _send_all(job, 1, job.domains[1:])
    if late:
        assert error(reject(job, outsider, make_signer()), status) == code
    total, samples = job.aggregate(job.domains[2], 1)
    np.testing.assert_allclose(total, expected, rtol=0, atol=1e-6)
    assert samples == sum(SAMPLES)


def _age_open_round(app: Flask, job: Job, seconds: float) -> None:
    """Open the job's open round `seconds` earlier, then run the deadline task once."""
    with app.app_context():
        session = db_session()
        assert close_due_rounds(session) == 0  # nothing is due before its deadline
        session.rollback()
        round_ = session.scalars(
            select(FederatedRound).where(
                FederatedRound.job_id == job.id, FederatedRound.status == "open"
            )
        ).one()
        round_.opened_at -= timedelta(seconds=seconds)
        round_.deadline -= timedelta(seconds=seconds)
        session.commit()
        close_due_rounds(session)
        session.commit()


@pytest.mark.parametrize("mode", ["none", "ckks"])
def test_at_the_deadline_a_quorum_closes_the_round(
    start_job: Callable[..., Job], network_app: Flask, mode: he.SecureAggregation
) -> None:
    job = start_job(mode, min_domains=2, round_timeout=60, plan=DP_PLAN)
    expected = _send_all(job, 1, job.domains[:2])
    assert job.view()["last_round"]["status"] == "open"  # the third may still come
    _age_open_round(network_app, job, 61)
    total, samples = job.aggregate(job.domains[0], 1)
    np.testing.assert_allclose(total, expected, rtol=0, atol=1e-6)
    assert samples == SAMPLES[0] + SAMPLES[1]
    rounds = job.network.get(job.path("/rounds"), headers=job.scientist).json["items"]
    assert rounds[0]["reporters"] == list(NAMES[:2])
    assert [(r["number"], r["status"]) for r in rounds] == [(1, "closed"), (2, "open")]
    # The slow domain goes on with round 2 from the published aggregate.
    state = job.state(job.domains[2])
    assert state["round"] == 2 and state["round_open"] and state["aggregate_round"] == 1
    assert error(_late(job, job.domains[2], job.domains[2]), 409) == "round_closed"


def test_short_of_quorum_a_round_waits_then_the_job_fails(
    start_job: Callable[..., Job], network_app: Flask
) -> None:
    job = start_job("none", min_domains=2, round_timeout=60, plan=DP_PLAN)
    expected = _send_all(job, 1, job.domains[:1])
    _age_open_round(network_app, job, 61)
    view = job.view()
    assert view["status"] == "running" and view["last_round"]["status"] == "open"
    # Past its deadline, the update that makes the quorum closes the round at once.
    expected += _send_all(job, 1, job.domains[1:2])
    total, samples = job.aggregate(job.domains[0], 1)
    np.testing.assert_allclose(total, expected, rtol=0, atol=1e-6)
    assert samples == SAMPLES[0] + SAMPLES[1]
    assert job.view()["current_round"] == 2

    # Round 2 gets one update and nothing more for longer than the grace allows.
    _send_all(job, 2, job.domains[:1])
    _age_open_round(network_app, job, GRACE_ROUNDS * 60 + 1)
    view = job.view()
    assert view["status"] == "failed"
    assert "min_domains" in view["failure_reason"] and "round 2" in view["failure_reason"]
    state = job.state(job.domains[1])
    assert state["status"] == "failed" and not state["round_open"]
    response = job.update(job.domains[1], 2, job.encode(np.ones(job.parameters)), 5)
    assert error(response, 409) == "not_running"


# --- the end: attestations and the result --------------------------------------------------


def _finish(job: Job) -> bytes:
    """Run the job's single round; returns the final weights file every domain would write."""
    _send_all(job, 1)
    total, samples = job.aggregate(job.domains[0], 1)
    target = job.tmp / "final.safetensors"
    he.write_weights({"w": (total / samples).astype(np.float32)}, target)
    return target.read_bytes()


def test_attested_result_reaches_the_scientist(start_job: Callable[..., Job]) -> None:
    job = start_job("ckks", rounds=1)
    early = {"model_hash": "a" * 64}
    assert error(job.domains[0].call("POST", job.path("/attestation"), early), 409) == (
        "not_finished"
    )
    final = _finish(job)
    digest = hashlib.sha256(final).hexdigest()
    result = job.path("/result")
    assert error(job.network.get(result, headers=job.scientist), 403) == "result_unavailable"
    assert error(send(job.domains[0], "PUT", result, final), 409) == "not_attested"
    for signer in job.domains[:2]:
        state = signer.call("POST", job.path("/attestation"), {"model_hash": digest}).json
        assert state["attested"] and state["status"] == "finishing"
    assert job.view()["result"] == "awaiting_attestations"
    state = job.domains[2].call("POST", job.path("/attestation"), {"model_hash": digest}).json
    assert state["attested"]
    view = job.view()
    assert view["result"] == "awaiting_release" and view["result_hash"] == digest
    assert error(job.network.get(result, headers=job.scientist), 403) == "result_unavailable"
    assert error(send(job.domains[1], "PUT", result, final + b"x"), 422) == "hash_mismatch"
    uploaded = send(job.domains[1], "PUT", result, final)
    assert uploaded.status_code == 200, uploaded.json
    assert uploaded.json["released"] and uploaded.json["result_uploaded"]
    # The others' owners release too, each by a signed call; the last one completes the job.
    release = job.path("/release")
    for signer in (job.domains[0], job.domains[2]):
        assert job.view()["result"] == "awaiting_release"
        released = signer.call("POST", release, {"model_hash": digest})
        assert released.status_code == 200, released.json
    assert released.json["status"] == "completed"
    view = job.view()
    assert all(p["released"] for p in view["participants"])
    assert view["status"] == "completed" and view["result"] == "available"
    assert view["finished_at"] is not None
    fetched = job.network.get(result, headers=job.scientist)
    assert fetched.status_code == 200 and fetched.data == final
    assert hashlib.sha256(fetched.data).hexdigest() == view["result_hash"]


def test_mismatching_attestations_fail_the_job(start_job: Callable[..., Job]) -> None:
    job = start_job("none", rounds=1)
    final = _finish(job)
    digest = hashlib.sha256(final).hexdigest()
    for signer, model_hash in zip(job.domains, (digest, digest, "b" * 64), strict=True):
        response = signer.call("POST", job.path("/attestation"), {"model_hash": model_hash})
        assert response.status_code == 200, response.json
    view = job.view()
    assert view["status"] == "failed" and "attested hashes differ" in view["failure_reason"]
    assert view["result"] == "none"
    assert error(send(job.domains[0], "PUT", job.path("/result"), final), 409) == "not_finished"
    response = job.network.get(job.path("/result"), headers=job.scientist)
    assert error(response, 403) == "result_unavailable"


# --- who sees what ---------------------------------------------------------------------------


def test_only_its_scientist_and_operators_see_a_job(
    start_job: Callable[..., Job], network: FlaskClient, operator: dict[str, str]
) -> None:
    job = start_job("none")
    other = account(network, operator, "other@example.org")
    for method, rest in (
        ("GET", ""),
        ("GET", "/rounds"),
        ("GET", "/model"),
        ("GET", "/result"),
        ("POST", "/cancel"),
    ):
        response = network.open(job.path(rest), method=method, headers=other)
        assert error(response, 404) == "not_found"
    assert network.get(JOBS, headers=other).json["items"] == []
    assert [j["id"] for j in network.get(JOBS, headers=operator).json["items"]] == [job.id]
    assert network.get(job.path(), headers=operator).status_code == 200
    assert error(network.get(f"{JOBS}/999", headers=job.scientist), 404) == "not_found"

    cancelled = network.post(job.path("/cancel"), headers=job.scientist)
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    assert error(network.post(job.path("/cancel"), headers=operator), 409) == "job_finished"
    assert job.state(job.domains[0])["status"] == "cancelled"
    response = job.update(job.domains[0], 1, job.encode(np.ones(job.parameters)), 5)
    assert error(response, 409) == "not_running"


def test_an_operator_may_cancel_any_job(
    created: Callable[..., Job], network: FlaskClient, operator: dict[str, str]
) -> None:
    job = created("ckks")
    cancelled = network.post(job.path("/cancel"), headers=operator)
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    assert job.domains[0].call("GET", "/api/v1/fl/invitations").json["items"] == []
    assert error(job.decide(job.domains[0]), 409) == "job_finished"


def test_a_dealer_that_never_deals_fails_the_job(
    created: Callable[..., Job], network_app: Flask
) -> None:
    job = created("ckks", round_timeout=10)
    for signer in job.domains:
        job.decide(signer)
    with network_app.app_context():
        session = db_session()
        assert fail_stalled_key_setups(session) == 0  # the dealer still has time
        stored = session.get(FederatedJob, job.id)
        assert stored is not None and stored.keys_requested_at is not None
        stored.keys_requested_at -= timedelta(seconds=GRACE_ROUNDS * 10 + 1)
        session.commit()
        assert fail_stalled_key_setups(session) == 1
        session.commit()
    view = job.view()
    assert view["status"] == "failed"
    assert "key dealer" in view["failure_reason"]
    assert not any(s["deal_keys"] for s in (job.state(d) for d in job.domains))


def test_no_decision_once_the_rounds_are_over(created: Callable[..., Job]) -> None:
    job = created("none", rounds=1, min_domains=2, plan=DP_PLAN)
    first, second, late = job.domains
    for signer in (first, second):
        assert job.decide(signer).status_code == 200
    _send_all(job, 1, [first, second])
    assert job.view()["status"] == "finishing"
    assert error(job.decide(late), 409) == "job_finished"


# --- strategies and sampling -----------------------------------------------------------------


def test_a_sampled_round_trains_and_waits_only_for_its_sample(
    created: Callable[..., Job],
) -> None:
    job = created("none", plan=DP_PLAN, strategy="fedadam", server_lr=0.05, fraction=0.5)
    invitation = job.domains[0].call("GET", "/api/v1/fl/invitations").json["items"][0]
    view = job.view()
    seed = view["sample_seed"]
    assert re.fullmatch("[0-9a-f]{32}", seed)  # drawn by the network at filing
    terms = {"strategy": "fedadam", "server_lr": 0.05, "beta1": 0.9, "beta2": 0.99, "tau": 1e-3}
    for shown in (view, invitation):  # what the scientist and the signed invitation say
        assert {k: shown[k] for k in terms} == terms
        assert (shown["fraction"], shown["min_sample"], shown["sample_seed"]) == (0.5, 1, seed)
    # DP lets a round of one domain be read; half of three rounds up to two.
    for signer in job.domains:
        assert job.decide(signer).status_code == 200
    ids = [d.id for d in job.domains]
    drawn = draw_sample(seed, 1, ids, 0.5, 1)
    assert len(drawn) == 2
    sampled = [d for d in job.domains if d.id in drawn]
    (left_out,) = [d for d in job.domains if d.id not in drawn]
    assert [job.state(d)["sampled"] for d in job.domains] == [d.id in drawn for d in job.domains]

    response = job.update(left_out, 1, job.encode(np.ones(job.parameters)), 5)
    assert error(response, 409) == "not_sampled"
    _send_all(job, 1, sampled)  # the round closes without waiting for the third domain
    rounds = job.network.get(job.path("/rounds"), headers=job.scientist).json["items"]
    assert rounds[0]["status"] == "closed" and rounds[0]["sampled"] == drawn
    assert rounds[1]["sampled"] == draw_sample(seed, 2, ids, 0.5, 1)
    assert job.state(left_out)["aggregate_round"] == 1  # it still reads every aggregate
