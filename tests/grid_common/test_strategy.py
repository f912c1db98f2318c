"""A training job's strategy terms and its per-round domain sampling."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from grid_common.federated_schemas import FederatedSpec
from grid_common.strategy import StrategyTerms, draw_sample, sample_size

BASE = {"plan": {"loss": "cross_entropy"}}


def _spec(domains: int = 4, **fields: Any) -> FederatedSpec:
    datasets = [{"domain": f"d{i}", "dataset": "digits"} for i in range(domains)]
    return FederatedSpec.model_validate({**BASE, "datasets": datasets, **fields})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"strategy": "fedavg", "server_lr": 0.1}, "server_lr is a parameter of fedavgm"),
        ({"strategy": "fedprox", "mu": 0.1, "tau": 1e-3}, "tau is a parameter of fedadam"),
        ({"strategy": "fedavgm", "beta1": 0.9}, "beta1 is a parameter of fedadam"),
        ({"strategy": "fedadagrad", "beta2": 0.9}, "beta2 is a parameter of fedadam, fedyogi"),
        ({"strategy": "fedadam", "momentum": 0.9}, "momentum is a parameter of fedavgm"),
        ({"strategy": "fedadam", "mu": 0.1}, "mu is FedProx's parameter"),
        ({"strategy": "fedadam", "beta1": 1.0}, "less than 1"),
        ({"strategy": "fedadam", "server_lr": 0}, "greater than 0"),
        ({"strategy": "fedsgd"}, "fedavg"),
        ({"min_sample": 3}, "min_sample applies only when fraction is below 1"),
        ({"fraction": 0}, "greater than 0"),
        ({"fraction": 0.5, "min_sample": 5}, "min_sample is 5 but only 4 domains"),
    ],
)
def test_wrong_combinations_are_refused_saying_why(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _spec(**fields)


def test_the_strategy_reads_its_defaults_and_the_spec_hash_covers_them() -> None:
    spec = _spec(strategy="fedadam", server_lr=0.05)
    assert (spec.server_lr, spec.beta1, spec.beta2, spec.tau) == (0.05, 0.9, 0.99, 1e-3)
    assert spec.momentum is None
    settings = spec.round_settings()
    assert settings["strategy"] == "fedadam" and settings["server_lr"] == 0.05
    assert settings != _spec(strategy="fedadam", server_lr=0.1).round_settings()
    # Stored and read back, the filled spec is the same spec.
    assert FederatedSpec.model_validate(spec.model_dump(mode="json")) == spec


def test_a_sample_that_could_expose_a_domain_is_refused_unless_dp() -> None:
    assert _spec(fraction=0.5).min_sample == 3  # the privacy floor by default
    assert _spec(fraction=0.5).peer_problem() is None
    problem = _spec(fraction=0.5, min_sample=2).peer_problem()
    assert problem is not None and "Set min_sample to at least 3" in problem
    dp = {"loss": "cross_entropy", "dp": {"epsilon": 5.0, "delta": 1e-5}}
    assert _spec(3, plan=dp, fraction=0.5).min_sample == 1
    assert _spec(3, plan=dp, fraction=0.5, min_sample=2).peer_problem() is None


def test_sample_sizes_round_up_with_a_floor() -> None:
    assert sample_size(10, 0.3, 1) == 3
    assert sample_size(10, 0.25, 1) == 3
    assert sample_size(10, 0.1, 3) == 3
    assert sample_size(2, 0.5, 3) == 2  # never more than there are
    assert sample_size(4, 0.75, None) == 3


def test_the_draw_depends_on_the_seed_round_and_domains_only() -> None:
    domains = [f"node-{i}" for i in range(10)]
    draw = draw_sample("ab" * 16, 1, domains, 0.3, 3)
    assert len(draw) == 3 and draw == sorted(draw) and set(draw) <= set(domains)
    assert draw_sample("ab" * 16, 1, reversed(domains), 0.3, 3) == draw  # order-free
    rounds = {tuple(draw_sample("ab" * 16, n, domains, 0.3, 3)) for n in range(1, 21)}
    assert len(rounds) > 5  # a new draw each round
    seeds = {tuple(draw_sample(f"{i:032x}", 1, domains, 0.3, 3)) for i in range(20)}
    assert len(seeds) > 5  # and a new one for another seed
    assert draw_sample("ab" * 16, 1, domains, 1.0, None) == sorted(domains)


def test_terms_describe_themselves() -> None:
    assert StrategyTerms().describe() == "fedavg"
    assert StrategyTerms(strategy="fedprox", mu=0.01).describe() == "fedprox (mu 0.01)"
    assert StrategyTerms(strategy="fedavgm").describe() == "fedavgm (server_lr 1, momentum 0.9)"
