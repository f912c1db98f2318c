"""Federated analytics on the network: checked before anyone computes, summed blind, withheld."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from grid_common import he
from grid_common.analytics.plan import AnalysisPlan
from grid_common.federated_schemas import AnalyticsSpec, invitation_message
from grid_common.hashes import spec_hash
from grid_common.identity import b64decode, verify_key_from_text
from tests.network.conftest import Signer, approved
from tests.network.test_federated import account, blob_files, deal_keys, error, send

NAMES = ("hospital-a", "clinic-b", "lab-c")
ANALYTICS = "/api/v1/fl/analytics"
JOBS = "/api/v1/fl/jobs"


def published(columns: dict[str, str], classes: list[int] | None = None) -> dict[str, Any]:
    """A dataset `records` as a domain publishes it: columns, dtypes, label and its classes."""
    return {
        "name": "records",
        "schema": {
            "format": "csv",
            "columns": [
                {"name": name, "dtype": dtype, "shape": [], "magnitude": 3}
                for name, dtype in columns.items()
            ],
            "row_count": 100,
            "label_classes": classes,
        },
        "label": "target",
        "has_mock": True,
    }


COLUMNS = {"age": "float64", "visits": "int64", "target": "int64"}


@pytest.fixture
def scientist(network: FlaskClient, operator: dict[str, str]) -> dict[str, str]:
    return account(network, operator, "analyst@example.org")


@pytest.fixture
def publish(
    network: FlaskClient, operator: dict[str, str], make_signer: Callable[[], Signer]
) -> Callable[..., list[Signer]]:
    """Domains that joined and published `records` with the given columns and classes."""

    def make(*schemas: tuple[dict[str, str], list[int] | None]) -> list[Signer]:
        signers = []
        for name, (columns, classes) in zip(NAMES, schemas, strict=False):
            signer = make_signer()
            approved(signer, network, operator, name=name)
            assert signer.push([published(columns, classes)]).status_code == 200
            signers.append(signer)
        return signers

    return make


@pytest.fixture
def domains(publish: Callable[..., list[Signer]]) -> list[Signer]:
    return publish((COLUMNS, [0, 1]), (COLUMNS, [1, 2]), (COLUMNS, [0, 2]))


def request(domains: list[Signer], **fields: Any) -> dict[str, Any]:
    targets = [{"domain": NAMES[i], "dataset": "records"} for i in range(len(domains))]
    return {"datasets": targets, **fields}


def submit(network: FlaskClient, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    response = network.post(ANALYTICS, json=body, headers=headers)
    assert response.status_code == 201, response.json
    return dict(response.json)


def test_an_analysis_is_resolved_against_the_schemas_and_signed_into_invitations(
    network: FlaskClient, network_app: Flask, scientist: dict[str, str], domains: list[Signer]
) -> None:
    # A round that may close with two domains needs DP on each domain's sums.
    dp = {"epsilon": 1.0, "delta": 1e-5, "bounds": {"age": [0, 100], "visits": [0, 50]}}
    statistics = ["mean", "class_count", "hist:age:0:100:4"]
    body = request(domains, statistics=statistics, min_domains=2, dp=dp)
    job = submit(network, scientist, body)
    assert job["kind"] == "analytics" and job["rounds"] == 1 and job["min_domains"] == 2
    plan = AnalysisPlan.model_validate(job["plan"])
    assert plan.features == ["age", "visits"] and plan.label == "target"
    assert plan.classes == [0, 1, 2]  # the union of what the domains published
    assert plan.integer_columns == ["visits", "target"]
    assert job["parameters"] == plan.layout.size == 1 + 2 + 5 + 3
    # The data scientist rebuilds the spec hash from the plan, the domains and the settings.
    settings = AnalyticsSpec.model_validate(body).round_settings()
    assert job["spec_hash"] == spec_hash(
        kind="analytics",
        plan=plan,
        datasets=[f"{d.id}/records" for d in domains],
        domains=[d.id for d in domains],
        federated=settings,
    )
    network_key = verify_key_from_text(network_app.extensions["identity"].signing_public_key)
    for signer in domains:
        invitations = signer.call("GET", "/api/v1/fl/invitations").json["items"]
        (invitation,) = invitations
        assert invitation["kind"] == "analytics" and invitation["plan"] == job["plan"]
        assert invitation["model_digest"] is None and invitation["weights_digest"] is None
        network_key.verify(
            invitation_message(invitation), b64decode(invitation["signature"], length=64)
        )
        files = signer.call("GET", f"{JOBS}/{job['id']}/files/model")
        assert error(files, 404) == "not_found"


def _statistics(value: list[str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda body: {**body, "statistics": value}


REFUSED: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], str]] = {
    "unknown statistic": (_statistics(["median"]), "unknown statistic 'median'"),
    "histogram over a missing column": (
        _statistics(["hist:weight:0:1:4"]),
        "histogram 'weight' does not exist on hospital-a/records, clinic-b/records, lab-c/records",
    ),
    "a column one domain lacks": (
        lambda body: {**body, "columns": ["age", "height"]},
        "column 'height' does not exist on",
    ),
    "statistics and a model": (
        lambda body: {**body, "model": "ridge"},
        "ask for statistics or for one exact model",
    ),
    "bounds missing under DP": (
        lambda body: {**body, "dp": {"epsilon": 1, "delta": 1e-6}},
        "differential privacy needs bounds for 'age', 'visits'",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_bad_analysis_is_refused_before_any_domain_computes(
    case: str,
    network: FlaskClient,
    network_app: Flask,
    scientist: dict[str, str],
    domains: list[Signer],
) -> None:
    change, message = REFUSED[case]
    before = blob_files(network_app)
    response = network.post(
        ANALYTICS, json=change(request(domains, statistics=["mean"])), headers=scientist
    )
    error(response, 422)
    assert message in response.json["error"]["message"]
    assert network.get(JOBS, headers=scientist).json["items"] == []
    assert all(d.call("GET", "/api/v1/fl/invitations").json["items"] == [] for d in domains)
    assert blob_files(network_app) == before


def test_datasets_whose_schemas_differ_are_refused_naming_each_difference(
    network: FlaskClient, scientist: dict[str, str], publish: Callable[..., list[Signer]]
) -> None:
    other = {"age": "int64", "target": "int64"}
    domains = publish((COLUMNS, [0, 1]), (other, ["a", "b"]))
    response = network.post(
        ANALYTICS, json=request(domains, statistics=["mean", "class_count"]), headers=scientist
    )
    assert error(response, 422) == "incompatible_datasets"
    message = response.json["error"]["message"]
    assert "clinic-b/records lacks the numeric column(s) 'visits'" in message
    assert "column 'age' has different dtypes: float64 on hospital-a/records" in message
    assert "the classes of 'target' differ in kind: numbers on hospital-a/records" in message


def _approve_and_deal(
    job: dict[str, Any], domains: list[Signer], keys: he.JobKeys, sizes: list[int]
) -> None:
    """Each owner approves with their minimum group size; the dealer hands out the keys."""
    path = f"{JOBS}/{job['id']}"
    for signer, size in zip(domains, sizes, strict=True):
        answer = signer.call("POST", f"{path}/decision", {"approved": True, "min_group_size": size})
        assert answer.status_code == 200, answer.json
    states = {d.id: d.call("GET", f"{path}/state").json for d in domains}
    dealer = next(d for d in domains if states[d.id]["deal_keys"])
    assert deal_keys(dealer, path, keys).status_code == 200


def test_sums_are_added_blind_at_the_statistics_level_and_withheld_results_fail_the_job(
    network: FlaskClient,
    network_app: Flask,
    scientist: dict[str, str],
    domains: list[Signer],
    tmp_path: Path,
) -> None:
    keys = he.make_job_keys(he.CkksParams())
    job = submit(network, scientist, request(domains, statistics=["count", "mean"]))
    path = f"{JOBS}/{job['id']}"
    # The owners' minimum group sizes travel with their decisions; the strictest applies.
    _approve_and_deal(job, domains, keys, [5, 25, 10])
    assert {d.call("GET", f"{path}/state").json["min_group_size"] for d in domains} == {25}
    layout = he.UpdateLayout("ckks", job["parameters"], he.CkksParams().slots)
    secret = he.codec_for("ckks", keys.secret_context, he.STATISTICS_HEADROOM_BITS)
    vectors = [np.array([40.0 + i, 1e6 * i, 3.5]) for i in range(3)]

    def update(signer: Signer, vector: np.ndarray, codec: he.FrameCodec) -> Any:
        target = tmp_path / "update.bin"
        he.write_update(vector, codec, layout, target)
        return send(signer, "PUT", f"{path}/rounds/1/update?samples=100", target.read_bytes())

    # A model update's lower level is refused: statistics need the headroom of the top one.
    training_level = he.codec_for("ckks", keys.secret_context)
    assert error(update(domains[0], vectors[0], training_level), 422) == "bad_update"
    for signer, vector in zip(domains, vectors, strict=True):
        assert update(signer, vector, secret).status_code == 200
    assert network.get(path, headers=scientist).json["status"] == "finishing"
    # What the network stores opens with nothing it holds; a domain's secret context opens it.
    aggregate = domains[0].call("GET", f"{path}/rounds/1/aggregate")
    stored = tmp_path / "aggregate.bin"
    stored.write_bytes(aggregate.data)
    public = he.codec_for("ckks", keys.public_context, he.STATISTICS_HEADROOM_BITS)
    with pytest.raises(he.UpdateError, match="cannot decrypt"):
        he.read_update(stored, public, layout)
    # CKKS is approximate: at a 2^40 scale each sum is off by ~1e-8 at most, far below the values.
    np.testing.assert_allclose(
        he.read_update(stored, secret, layout), sum(vectors), rtol=1e-9, atol=1e-6
    )
    # A stranger to the job may not end it; a participant that may not release, does.
    reason = {"reason": "the datasets hold fewer rows than the minimum group size (25)"}
    assert send_json(domains[1], f"{path}/withheld", {"reason": ""}).status_code == 422
    assert send_json(domains[2], f"{path}/withheld", reason).status_code == 200
    failed = network.get(path, headers=scientist).json
    assert failed["status"] == "failed"
    assert failed["failure_reason"] == f"lab-c withheld the result: {reason['reason']}"
    assert error(send_json(domains[0], f"{path}/withheld", reason), 409) == "not_finishing"


def send_json(signer: Signer, path: str, body: dict[str, Any]) -> Any:
    return signer.call("POST", path, body)


def test_an_analysis_cannot_be_withheld_while_its_round_runs(
    network: FlaskClient, scientist: dict[str, str], domains: list[Signer]
) -> None:
    job = submit(
        network, scientist, request(domains, statistics=["count"], secure_aggregation="none")
    )
    path = f"{JOBS}/{job['id']}"
    for signer in domains:
        assert signer.call("POST", f"{path}/decision", {"approved": True}).status_code == 200
    response = send_json(domains[0], f"{path}/withheld", {"reason": "too few"})
    assert error(response, 409) == "not_finishing"
    assert network.get(path, headers=scientist).json["status"] == "running"


def test_the_released_analysis_downloads_once_every_domain_attested_and_released_it(
    network: FlaskClient, scientist: dict[str, str], domains: list[Signer], tmp_path: Path
) -> None:
    job = submit(
        network, scientist, request(domains, statistics=["count"], secure_aggregation="none")
    )
    path = f"{JOBS}/{job['id']}"
    layout = he.UpdateLayout("none", job["parameters"], he.CkksParams().slots)
    for signer in domains:
        assert signer.call("POST", f"{path}/decision", {"approved": True}).status_code == 200
    for signer in domains:
        target = tmp_path / "update.bin"
        he.write_update(np.array([10.0]), he.PlainCodec(), layout, target)
        sent = send(signer, "PUT", f"{path}/rounds/1/update?samples=100", target.read_bytes())
        assert sent.status_code == 200
    release = json.dumps({"count": 30}).encode()  # any file; the network checks its hash only
    digest = hashlib.sha256(release).hexdigest()
    for signer in domains:
        assert signer.call("POST", f"{path}/attestation", {"model_hash": digest}).status_code == 200
    assert send(domains[0], "PUT", f"{path}/result", release).status_code == 200
    for signer in domains[1:]:  # every owner releases it, not only the one who uploaded it
        assert network.get(f"{path}/result", headers=scientist).status_code == 403
        released = signer.call("POST", f"{path}/release", {"model_hash": digest})
        assert released.status_code == 200, released.json
    result = network.get(f"{path}/result", headers=scientist)
    assert result.status_code == 200 and result.data == release
    assert "analysis.safetensors" in result.headers["Content-Disposition"]
