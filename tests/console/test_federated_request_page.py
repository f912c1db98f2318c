"""A federated job request, as the domain's reviewers read it in the console."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from domain.models import AccessRequest, FederatedParticipation, RequestDataset
from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD
from tests.console.conftest import sign_in
from tests.domain.uploads import upload

PLAN = {"loss": "cross_entropy", "epochs": 2, "metrics": ["loss", "accuracy"]}


def _invitation(mode: str, job: int) -> dict[str, object]:
    return {
        "network_job_id": job,
        "network_id": "n" * 32,
        "dataset": "digits-a",
        "requester": "scientist@lab.org",
        "reason": "a shared digit model",
        "plan": PLAN,
        "rounds": 20,
        "strategy": "fedavg",
        "mu": 0.0,
        "min_domains": 2,
        "round_timeout": 300.0,
        "secure_aggregation": mode,
        "ckks": {"poly_modulus_degree": 8192, "coeff_mod_bit_sizes": [60, 40, 40, 60]},
        "participants": ["hospital-a", "clinic-b"],
        "model_digest": "0" * 64,
        "weights_digest": "1" * 64,
        "spec_hash": "2" * 64,
        "signature": "s",
    }


def _file_federated_request(app: Flask, mode: str, job: int) -> int:
    with app.extensions["database"].sessionmaker() as session:
        item = AccessRequest(
            kind="federated",
            requester_label="scientist@lab.org via network research-net",
            reason="a shared digit model",
            plan=PLAN,
            datasets=[RequestDataset(dataset_name="digits-a", dataset_id=1)],
        )
        session.add(item)
        session.flush()
        session.add(
            FederatedParticipation(
                request_id=item.id,
                network_id="n" * 32,
                network_job_id=job,
                invitation=_invitation(mode, job),
            )
        )
        session.commit()
        return item.id


def test_a_reviewer_sees_what_a_federated_job_sends_out(
    app: Flask, client: FlaskClient, headers: dict[str, dict[str, str]]
) -> None:
    assert upload(client, headers["owner"]).status_code == 201
    encrypted = _file_federated_request(app, "ckks", 7)
    plain = _file_federated_request(app, "none", 8)
    console = app.test_client()
    sign_in(console, OWNER_EMAIL, OWNER_PASSWORD)

    page = console.get(f"/requests/{encrypted}").get_data(as_text=True)
    assert "scientist@lab.org via network research-net" in page
    assert "part in a federated job" in page
    assert "hospital-a, clinic-b" in page and "20, each 2 local epoch(s)" in page
    assert (
        "encrypted with the job&#39;s CKKS key" in page
        or "encrypted with the job's CKKS key" in page
    )
    assert "the sha256 of the final model" in page
    assert 'name="cpu_seconds"' in page  # approved like any job, with limits

    page = console.get(f"/requests/{plain}").get_data(as_text=True)
    assert "<strong>plaintext</strong>: the network sees every update" in page
    assert "<strong>in plaintext</strong>, readable by the network" in page
