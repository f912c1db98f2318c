"""The rule that keeps a peer domain from reading another's contribution out of an aggregate."""

from __future__ import annotations

from typing import Any

import pytest

from grid_common.federated_schemas import (
    AnalyticsSpec,
    FederatedSpec,
    Invitation,
    peer_protection,
)

DP = {"epsilon": 1.0, "delta": 1e-5}


def _training(domains: int, **fields: Any) -> FederatedSpec:
    targets = [{"domain": f"d{i}", "dataset": "x"} for i in range(domains)]
    return FederatedSpec.model_validate({"plan": {"loss": "mse"}, "datasets": targets, **fields})


@pytest.mark.parametrize(
    ("domains", "fields", "refused"),
    [
        (1, {}, False),  # no peer to read it
        (2, {}, True),
        (3, {}, False),
        (3, {"min_domains": 2}, True),
        (2, {"plan": {"loss": "mse", "dp": DP}}, False),
        (3, {"min_domains": 1, "plan": {"loss": "mse", "dp": DP}}, False),
    ],
)
def test_rounds_of_fewer_than_three_need_dp(
    domains: int, fields: dict[str, Any], refused: bool
) -> None:
    problem = _training(domains, **fields).peer_problem()
    assert (problem is not None) == refused
    if problem:
        assert "Add a domain" in problem and "plan.dp" in problem


def test_an_analysis_names_its_own_dp() -> None:
    spec = AnalyticsSpec.model_validate(
        {"datasets": [{"domain": "a", "dataset": "x"}, {"domain": "b", "dataset": "x"}],
         "statistics": ["mean"]}
    )  # fmt: skip
    assert "analyse with dp" in (spec.peer_problem() or "")


def _invitation(participants: int, min_domains: int, dp: dict[str, Any] | None) -> Invitation:
    return Invitation(
        network_job_id=1, network_id="n", dataset="x", requester="ds", reason="",
        plan={"loss": "mse", "dp": dp}, rounds=2, strategy="fedavg", mu=0.0,
        min_domains=min_domains, round_timeout=60, secure_aggregation="ckks", ckks={},
        participants=[f"d{i}" for i in range(participants)], model_digest=None,
        weights_digest=None, spec_hash="0" * 64, signature="",
    )  # fmt: skip


def test_the_owner_is_told_which_case_applies() -> None:
    ok, text = peer_protection(_invitation(3, 3, None), 3)
    assert ok and "at least 3 domains" in text
    ok, text = peer_protection(_invitation(2, 2, DP), 3)
    assert ok and "Differential privacy" in text
    ok, text = peer_protection(_invitation(3, 3, None), 5)
    assert not ok and "at least 5" in text
    ok, text = peer_protection(_invitation(1, 1, None), 5)
    assert ok and "only one" in text


def test_an_owner_refuses_a_sample_smaller_than_their_minimum() -> None:
    """Six domains, three sampled per round: an owner asking for five in every aggregate would
    see rounds of three read by a pair of colluding peers, so the request is refused."""
    sampled = _invitation(6, 6, None).model_copy(update={"fraction": 0.5, "min_sample": 3})
    ok, text = peer_protection(sampled, 3)
    assert ok and "at least 3 domains" in text
    ok, text = peer_protection(sampled, 5)
    assert not ok and "sample as few as 3" in text and "larger min_sample" in text
