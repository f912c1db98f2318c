"""A federated request (training or analysis), as the domain's reviewers read it in the console."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from domain.models import AccessRequest, FederatedParticipation, RequestDataset
from grid_common.analytics.plan import AnalysisPlan
from grid_common.analytics.privacy import noise_sigma
from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD
from tests.console.conftest import csrf_of, sign_in
from tests.domain.uploads import upload

PLAN = {"loss": "cross_entropy", "epochs": 2, "metrics": ["loss", "accuracy"]}
# Statistics under DP over the uploaded dataset's columns: 1 + 2 + 2 + (4 + 1) + 2 sums.
STATISTICS = {
    "statistics": ["count", "mean", "var", "class_count", "hist:x1:0:4:4"],
    "features": ["x1", "x2"],
    "label": "target",
    "classes": [0, 1],
    "dp": {"epsilon": 1.0, "delta": 1e-6, "bounds": {"x1": [0, 4], "x2": [0, 5]}},
}
# An exact model without DP: 1 + 2 + 3 + 1 + 2 sums.
RIDGE = {"model": "ridge", "alpha": 0.5, "features": ["x1", "x2"], "label": "target"}
MIN_GROUP_SIZE = 25


def _invitation(mode: str, job: int, plan: dict[str, Any], kind: str) -> dict[str, object]:
    analytics = kind == "analytics"
    return {
        "network_job_id": job,
        "network_id": "n" * 32,
        "kind": kind,
        "dataset": "digits-a",
        "requester": "scientist@lab.org",
        "reason": "a shared digit model",
        "plan": plan,
        "rounds": 1 if analytics else 20,
        "strategy": "fedavg",
        "mu": 0.0,
        "min_domains": 2,
        "round_timeout": 300.0,
        "secure_aggregation": mode,
        "ckks": {"poly_modulus_degree": 8192, "coeff_mod_bit_sizes": [60, 40, 40, 60]},
        "participants": ["hospital-a", "clinic-b"],
        "model_digest": None if analytics else "0" * 64,
        "weights_digest": None if analytics else "1" * 64,
        "spec_hash": "2" * 64,
        "signature": "s",
    }


def _file_federated_request(
    app: Flask,
    mode: str,
    job: int,
    plan: dict[str, Any] = PLAN,
    kind: str = "training",
    terms: dict[str, Any] | None = None,
) -> int:
    """A request as the domain files a network's invitation (analyses as kind "analytics")."""
    with app.extensions["database"].sessionmaker() as session:
        item = AccessRequest(
            kind="analytics" if kind == "analytics" else "federated",
            requester_label="scientist@lab.org via network research-net",
            reason="a shared digit model",
            plan=plan,
            datasets=[RequestDataset(dataset_name="digits-a", dataset_id=1)],
        )
        session.add(item)
        session.flush()
        session.add(
            FederatedParticipation(
                request_id=item.id,
                network_id="n" * 32,
                network_job_id=job,
                invitation={**_invitation(mode, job, plan, kind), **(terms or {})},
                min_group_size=MIN_GROUP_SIZE,
            )
        )
        session.commit()
        return item.id


@pytest.fixture
def reviewer(app: Flask, client: FlaskClient, headers: dict[str, dict[str, str]]) -> FlaskClient:
    """The owner signed in to the console of a domain that holds dataset digits-a."""
    assert upload(client, headers["owner"]).status_code == 201
    console = app.test_client()
    sign_in(console, OWNER_EMAIL, OWNER_PASSWORD)
    return console


def test_a_reviewer_sees_what_a_federated_job_sends_out(app: Flask, reviewer: FlaskClient) -> None:
    encrypted = _file_federated_request(app, "ckks", 7)
    plain = _file_federated_request(app, "none", 8)

    page = reviewer.get(f"/requests/{encrypted}").get_data(as_text=True)
    assert "scientist@lab.org via network research-net" in page
    assert "part in a federated job" in page
    assert "hospital-a, clinic-b" in page and "20, each 2 local epoch(s)" in page
    assert (
        "encrypted with the job&#39;s CKKS key" in page
        or "encrypted with the job's CKKS key" in page
    )
    assert "the sha256 of the final model" in page
    assert 'name="cpu_seconds"' in page  # approved like any job, with limits
    assert 'data-testid="analysis"' not in page

    page = reviewer.get(f"/requests/{plain}").get_data(as_text=True)
    assert "<strong>plaintext</strong>: the network sees every update" in page
    assert "<strong>in plaintext</strong>, readable by the network" in page


def test_a_reviewer_sees_the_server_optimizer_and_the_sampling(
    app: Flask, reviewer: FlaskClient
) -> None:
    terms = {
        "strategy": "fedadam",
        "server_lr": 0.05,
        "fraction": 0.5,
        "min_sample": 3,
        "sample_seed": "ab" * 16,
    }
    page = reviewer.get(f"/requests/{_file_federated_request(app, 'ckks', 9, terms=terms)}")
    text = page.get_data(as_text=True)
    assert "fedadam (server_lr 0.05, beta1 0.9, beta2 0.99, tau 0.001)" in text
    assert "every domain steps this server optimizer" in text
    assert "50.0% of the approved domains (at least 3)" in text and "ab" * 16 in text


def _sigma(plan: dict[str, Any]) -> str:
    """The noise scale as the page writes it."""
    return f"\N{GREEK SMALL LETTER SIGMA} = {noise_sigma(AnalysisPlan.model_validate(plan)):.4g}"


@pytest.mark.parametrize(
    ("plan", "mode", "shown"),
    [
        pytest.param(
            STATISTICS,
            "ckks",
            [
                "the number of rows; the mean of each feature; the variance of each feature; "
                "the number of rows of each class; a histogram of x1: 4 bins over [0, 4]",
                "target, classes 0, 1",
                "12: 1 row count, 2 per-column sums, 2 per-column sums of squares, 5 histogram "
                "cells of x1 (4 bins over [0, 4] and one for the rows outside), 2 per-class counts",
                "ε = 1.0, δ = 1e-06; values clipped to x1 [0, 4], x2 [0, 5]",
                _sigma(STATISTICS),
                "with this domain's share of the Gaussian noise added",
                "encrypted (CKKS): the network adds the sums without a key",
                "the network only adds it to the other domains' vectors",
                "only the released statistics, computed from all domains' rows together",
            ],
            id="statistics-dp-ckks",
        ),
        pytest.param(
            RIDGE,
            "none",
            [
                "a ridge regression (alpha 0.5)",
                "9: 1 row count, 2 per-column sums, 3 cross products of column pairs",
                "no DP: the released figures are exact",
                "<strong>plaintext</strong>: the network sees every domain's sums",
                "<strong>in plaintext</strong>, readable by the network",
                "only the released model, computed from all domains' rows together",
            ],
            id="model-plaintext",
        ),
    ],
)
def test_a_reviewer_sees_what_an_analysis_computes_and_sends_out(
    app: Flask, reviewer: FlaskClient, plan: dict[str, Any], mode: str, shown: list[str]
) -> None:
    request_id = _file_federated_request(app, mode, 9, plan, kind="analytics")
    page = reviewer.get(f"/requests/{request_id}").get_data(as_text=True)
    assert "part in a federated analysis" in page
    assert "hospital-a, clinic-b" in page and "x1, x2" in page
    for text in shown:
        assert text in page, text
    assert f"{MIN_GROUP_SIZE} rows: this domain's setting when the request was filed" in page
    assert f"fewer than {MIN_GROUP_SIZE} rows" in page
    assert "The dataset's published row count, in plaintext." in page
    assert "Never the private rows" in page
    assert 'name="cpu_seconds"' in page  # an analysis is approved like any job, with limits
    for training in ("Training plan", "local epoch", "Strategy", "The model</h2>"):
        assert training not in page, training


@pytest.mark.parametrize(
    ("plan", "budget_line"),
    [
        (STATISTICS, "approving spends ε = 1.0 of it."),
        (RIDGE, "this job uses no differential privacy, so it cannot be approved."),
    ],
    ids=["dp", "no-dp"],
)
def test_an_analysis_spends_the_epsilon_of_its_dp(
    app: Flask,
    client: FlaskClient,
    headers: dict[str, dict[str, str]],
    reviewer: FlaskClient,
    plan: dict[str, Any],
    budget_line: str,
) -> None:
    budget = client.put(
        "/api/v1/datasets/digits-a/privacy-budget", json={"epsilon": 5}, headers=headers["owner"]
    )
    assert budget.status_code == 200, budget.get_data(as_text=True)
    request_id = _file_federated_request(app, "ckks", 10, plan, kind="analytics")
    page = reviewer.get(f"/requests/{request_id}").get_data(as_text=True)
    assert budget_line in page


def test_an_analysis_the_domain_cannot_read_is_said_so(app: Flask, reviewer: FlaskClient) -> None:
    request_id = _file_federated_request(
        app, "ckks", 11, {"statistics": ["median"], "features": ["x1"]}, kind="analytics"
    )
    page = reviewer.get(f"/requests/{request_id}").get_data(as_text=True)
    assert "The network sent an analysis this domain cannot read" in page
    assert "unknown statistic &#39;median&#39;" in page


def test_an_approved_analysis_is_followed_on_its_job_page(
    app: Flask, reviewer: FlaskClient
) -> None:
    request_id = _file_federated_request(app, "ckks", 12, STATISTICS, kind="analytics")
    token = csrf_of(reviewer.get(f"/requests/{request_id}").get_data(as_text=True))
    approved = reviewer.post(
        f"/requests/{request_id}/approve",
        data={
            "csrf_token": token,
            "reason": "fine",
            "cpu_seconds": "60",
            "memory_mb": "512",
            "wall_seconds": "600",
        },
    )
    assert approved.status_code == 302
    page = reviewer.get(approved.location).get_data(as_text=True)
    assert f'href="/jobs/{request_id}">Follow the job' in page
    job = reviewer.get(f"/jobs/{request_id}")
    assert job.status_code == 200
    html = job.get_data(as_text=True)
    assert "One round: the worker sums this dataset" in html and "data-chart" not in html
