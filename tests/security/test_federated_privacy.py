"""A peer domain reads another's update from an aggregate too small to hide it.

With two contributors each domain subtracts its own update from the sum and reads the
other's; with one, the "aggregate" is that domain's update, readable by every participant.
So the network refuses a job whose rounds could close with fewer than 3 domains unless each
domain's contribution is differentially private (the client refuses it before sending), and
a round that ends with fewer contributors than the job needs fails without publishing its
sum. An owner may require more than 3 (`min_peers`); the strictest approving owner applies.

These run against the network app with signed domain calls, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from flask import Flask
from flask.testing import FlaskClient

import grid_cli as grid
from grid_common.analytics.plan import AnalyticsError
from grid_common.federated_schemas import RoundSettings
from network.federated import GRACE_ROUNDS
from tests.network.conftest import (  # noqa: F401
    Signer,
    make_signer,
    network,
    network_app,
    network_config,
    network_database_url,
    network_sqlite_template,
    operator,
)
from tests.network.test_analytics import ANALYTICS, publish  # noqa: F401
from tests.network.test_analytics import domains as analysis_domains  # noqa: F401
from tests.network.test_analytics import request as analysis_request
from tests.network.test_federated import (  # noqa: F401
    JOBS,
    Job,
    _age_open_round,
    _send_all,
    created,
    domains,
    error,
    job_keys,
    model_files,
    scientist,
    spec_for,
    start_job,
    submit,
)

DP = {"epsilon": 1.0, "delta": 1e-5}


def _refused(response: Any) -> str:
    assert error(response, 422) == "too_few_domains"
    message: str = response.json["error"]["message"]
    return message


def test_a_two_domain_ckks_job_without_dp_is_refused(
    network: FlaskClient,  # noqa: F811
    scientist: dict[str, str],  # noqa: F811
    domains: list[Signer],  # noqa: F811
    model_files: tuple[bytes, bytes],  # noqa: F811
) -> None:
    two = spec_for(domains[:2], secure_aggregation="ckks")
    message = _refused(submit(network, scientist, two, model_files))
    assert "Add a domain" in message and "plan.dp" in message
    # Three domains whose rounds may close with two are the same leak.
    quorum_of_two = spec_for(domains, secure_aggregation="ckks", min_domains=2)
    assert "plan.dp" in _refused(submit(network, scientist, quorum_of_two, model_files))
    assert network.get(JOBS, headers=scientist).json["items"] == []
    # The fixes the message names are taken: a third domain, or DP on each update.
    assert submit(network, scientist, spec_for(domains), model_files).status_code == 201
    private = spec_for(domains[:2], plan={"loss": "mse", "epochs": 1, "dp": DP})
    assert submit(network, scientist, private, model_files).status_code == 201


def test_the_client_refuses_a_two_domain_job_before_sending(tmp_path: Path) -> None:
    # Nothing listens on this address: a client that tried to send would fail to connect.
    net = grid.NetworkClient("http://127.0.0.1:9")
    pairs = [("hospital-a", "records"), ("clinic-b", "records")]
    with pytest.raises(ValueError, match="Add a domain") as refused:
        net.federated_training(
            torch.nn.Linear(3, 2),
            datasets=pairs,
            plan={"loss": "mse", "epochs": 1},
            example_input=np.zeros((2, 3), dtype=np.float32),
        )
    assert not isinstance(refused.value, grid.GridError)
    with pytest.raises(AnalyticsError, match="analyse with dp"):
        net.submit_analysis(pairs, statistics=["mean"])


def test_a_two_domain_analysis_without_dp_is_refused(
    network: FlaskClient,  # noqa: F811
    scientist: dict[str, str],  # noqa: F811
    analysis_domains: list[Signer],  # noqa: F811
) -> None:
    # A sum over two domains is each domain's own sums plus the other's, exactly.
    body = analysis_request(analysis_domains[:2], statistics=["count", "mean"])
    assert "analyse with dp" in _refused(network.post(ANALYTICS, json=body, headers=scientist))
    body = analysis_request(analysis_domains, statistics=["mean"], min_domains=2)
    _refused(network.post(ANALYTICS, json=body, headers=scientist))
    bounds = {"age": [0, 100], "visits": [0, 50]}
    private = analysis_request(
        analysis_domains[:2], statistics=["count", "mean"], dp={**DP, "bounds": bounds}
    )
    assert network.post(ANALYTICS, json=private, headers=scientist).status_code == 201


def _aggregate_status(job: Job, signer: Signer, number: int) -> int:
    return signer.call("GET", job.path(f"/rounds/{number}/aggregate")).status_code


def test_a_round_only_two_of_three_domains_report_fails_instead_of_releasing(
    start_job: Callable[..., Job],  # noqa: F811
    network_app: Flask,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A job the network took before this rule (it is switched off while submitting): three
    # domains, rounds that close with two, no DP.
    with monkeypatch.context() as patched:
        patched.setattr(RoundSettings, "peer_problem", lambda self: None, raising=False)
        job = start_job("none", min_domains=2, round_timeout=60)
    _send_all(job, 1, job.domains[:2])
    _age_open_round(network_app, job, 61)
    # Past its deadline the round has its quorum, but two updates expose each other.
    assert _aggregate_status(job, job.domains[0], 1) == 404
    _age_open_round(network_app, job, GRACE_ROUNDS * 60 + 1)
    view = job.view()
    assert view["status"] == "failed" and "at least 3 domains" in view["failure_reason"]
    assert view["last_round"]["aggregate_hash"] is None
    for signer in job.domains:
        assert _aggregate_status(job, signer, 1) == 404
        assert job.state(signer)["aggregate_round"] == 0


def test_a_round_closed_by_one_reporter_is_never_readable(
    start_job: Callable[..., Job],  # noqa: F811
    network_app: Flask,  # noqa: F811
) -> None:
    job = start_job("none", round_timeout=60)  # three domains, all needed, no DP
    _send_all(job, 1, job.domains[:1])
    _age_open_round(network_app, job, GRACE_ROUNDS * 60 + 1)
    view = job.view()
    assert view["status"] == "failed" and "round 1" in view["failure_reason"]
    # The lone update would be the "aggregate": no participant may fetch it.
    for signer in job.domains:
        assert _aggregate_status(job, signer, 1) == 404


def test_an_owner_requiring_more_peers_stops_a_smaller_job(
    created: Callable[..., Job],  # noqa: F811
) -> None:
    job = created("none")  # three domains, no DP: enough for the default of 3
    first, second, third = job.domains
    assert job.decide(first).status_code == 200
    strict = {"approved": True, "reason": "ok", "min_peers": 4}
    assert second.call("POST", job.path("/decision"), strict).status_code == 200
    view = job.view()
    assert view["status"] == "failed"
    assert "at least 4 domains" in view["failure_reason"]
    # An owner cannot ask for less than 3.
    lax = {"approved": True, "reason": "ok", "min_peers": 2}
    assert error(third.call("POST", job.path("/decision"), lax), 422)


def test_with_dp_a_round_of_two_is_released(
    start_job: Callable[..., Job],  # noqa: F811
    network_app: Flask,  # noqa: F811
) -> None:
    # Each update is DP on its own, so a peer subtracting its own learns only a DP result.
    job = start_job(
        "none", min_domains=2, round_timeout=60, plan={"loss": "mse", "epochs": 1, "dp": DP}
    )
    expected = _send_all(job, 1, job.domains[:2])
    _age_open_round(network_app, job, 61)
    total, _ = job.aggregate(job.domains[0], 1)
    np.testing.assert_allclose(total, expected, rtol=0, atol=1e-6)
