"""The server optimizers against steps worked out by hand (Reddi et al. 2021, Algorithm 2)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from grid_common import he
from grid_common.federated_schemas import ParticipantState
from grid_common.schemas import LeasedJob
from grid_common.strategy import StrategyTerms
from worker.federated import FederatedRun
from worker.server_optimizer import ServerOptimizer
from worker.spec import TrainingSpec

from .training_jobs import BatchNormMLP, make_spec

X = np.array([1.0, 2.0])
AVERAGE = np.array([1.5, 1.0])  # delta = [0.5, -1.0], delta^2 = [0.25, 1.0]


def _one_step(**terms: object) -> np.ndarray:
    return ServerOptimizer(StrategyTerms.model_validate(terms), X).step(AVERAGE)


def test_fedavg_and_fedprox_take_the_average() -> None:
    np.testing.assert_array_equal(_one_step(strategy="fedavg"), AVERAGE)
    np.testing.assert_array_equal(_one_step(strategy="fedprox", mu=0.1), AVERAGE)


def test_fedavgm_carries_momentum_into_the_next_round() -> None:
    optimizer = ServerOptimizer(StrategyTerms(strategy="fedavgm", momentum=0.9), X)
    # m = delta; x = x + 1.0 * m.
    np.testing.assert_allclose(optimizer.step(AVERAGE), [1.5, 1.0], rtol=0, atol=1e-15)
    # The domains agree with x: delta = 0, but m = 0.9 * [0.5, -1] still moves it.
    np.testing.assert_allclose(optimizer.step(AVERAGE), [1.95, 0.1], rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    ("terms", "expected"),
    [
        # m = 0.1 * delta = [0.05, -0.1]; v = 0.99 * tau^2 + 0.01 * delta^2
        # = [0.00250099, 0.01000099]; x += 0.1 * m / (sqrt(v) + 0.001) = [1.09802, 1.90099].
        (
            {"strategy": "fedadam"},
            [
                1 + 0.1 * 0.05 / (math.sqrt(0.00250099) + 1e-3),
                2 - 0.1 * 0.1 / (math.sqrt(0.01000099) + 1e-3),
            ],
        ),
        # sign(tau^2 - delta^2) = -1: v = tau^2 + 0.01 * delta^2 = [0.002501, 0.010001];
        # x += 0.01 * m / (sqrt(v) + 0.001) = [1.00980, 1.99010].
        (
            {"strategy": "fedyogi"},
            [
                1 + 0.01 * 0.05 / (math.sqrt(0.002501) + 1e-3),
                2 - 0.01 * 0.1 / (math.sqrt(0.010001) + 1e-3),
            ],
        ),
        # v = tau^2 + delta^2 = [0.250001, 1.000001]; x += 0.1 * m / (sqrt(v) + 0.001).
        (
            {"strategy": "fedadagrad"},
            [
                1 + 0.1 * 0.05 / (math.sqrt(0.250001) + 1e-3),
                2 - 0.1 * 0.1 / (math.sqrt(1.000001) + 1e-3),
            ],
        ),
    ],
)
def test_adaptive_optimizers_take_the_papers_step(
    terms: dict[str, object], expected: list[float]
) -> None:
    np.testing.assert_allclose(_one_step(**terms), expected, rtol=1e-12)


def test_buffers_take_the_average_and_the_parameters_the_step() -> None:
    terms = StrategyTerms(strategy="fedadam", server_lr=0.5)
    optimizer = ServerOptimizer(terms, X, trainable=np.array([True, False]))
    stepped = optimizer.step(AVERAGE)
    assert stepped[1] == AVERAGE[1]  # a running statistic: the domains' average
    assert stepped[0] != AVERAGE[0]


def test_replaying_the_same_aggregates_gives_the_same_bytes() -> None:
    """What a worker that takes a job over does: it steps rounds 1..n again from the start."""
    rng = np.random.default_rng(0)
    averages = [rng.normal(size=1000) for _ in range(5)]
    terms = StrategyTerms(strategy="fedyogi")
    first, second = ServerOptimizer(terms, averages[0]), ServerOptimizer(terms, averages[0])
    for average in averages:
        first.step(average)
    for average in averages:
        second.step(average)
    assert first.x.tobytes() == second.x.tobytes()
    assert first.steps == second.steps == 5


def test_a_wrong_sized_average_is_refused() -> None:
    with pytest.raises(ValueError, match="expected 2 values"):
        ServerOptimizer(StrategyTerms(strategy="fedadam"), X).step(np.zeros(3))


# --- in a worker: every domain, and a worker that takes the job over, ends on the same x ---------


class _Aggregates:
    """The domain's worker API as `FederatedRun` reads aggregates: plaintext sums per round."""

    def __init__(self, sums: list[np.ndarray], samples: int, layout: he.UpdateLayout) -> None:
        self.sums, self.samples, self.layout = sums, samples, layout
        self.fetched: list[int] = []

    def federated_aggregate(self, job_id: int, attempt: int, number: int, dest: Path) -> int:
        self.fetched.append(number)
        he.write_update(self.sums[number - 1], he.PlainCodec(), self.layout, dest)
        return self.samples


def _state(aggregate_round: int, rounds: int, parameters: int) -> ParticipantState:
    return ParticipantState.model_validate(
        {
            "network_job_id": 1,
            "status": "running",
            "participant_status": "approved",
            "rounds": rounds,
            "round": aggregate_round + 1,
            "round_open": True,
            "deadline": None,
            "submitted": False,
            "aggregate_round": aggregate_round,
            "aggregate_samples": 100,
            "deal_keys": False,
            "keys_ready": True,
            "parameters": parameters,
            "slots": 4096,
            "row_scale": 100,
            "secure_aggregation": "none",
            "attested": False,
            "result_uploaded": False,
            "failure_reason": None,
        }
    )


def _run(folder: Path, spec: TrainingSpec, api: _Aggregates) -> FederatedRun:
    terms = StrategyTerms(strategy="fedadam", server_lr=0.05).strategy_terms()
    leased = LeasedJob.model_validate(
        {
            "job_id": 1,
            "attempt": 1,
            "lease_seconds": 30,
            "plan": spec.plan.model_dump(),
            "limits": {},
            "datasets": [],
            "federated": {
                "network_job_id": 1,
                "rounds": 3,
                "secure_aggregation": "none",
                "round_timeout": 60,
                **terms,
            },
        }
    )
    spec = dataclasses.replace(spec, output_dir=folder)
    return FederatedRun(api, leased, spec, None, lambda event: None, lambda: False)  # type: ignore[arg-type]


def test_a_worker_taking_over_replays_the_optimizer_to_the_same_final_model(
    tmp_path: Path,
) -> None:
    spec = make_spec(tmp_path / "job", model=BatchNormMLP())
    template = he.read_weights(spec.weights_path)
    parameters = he.weights_layout(template).size
    layout = he.UpdateLayout("none", parameters, 4096)
    rng = np.random.default_rng(1)
    start = he.flatten(template)
    # Each sum is weights x rows / row_scale: 100 rows of 100, so the average itself.
    sums = [start + rng.normal(scale=0.1, size=parameters) for _ in range(3)]

    steady = _run(tmp_path / "steady", spec, _Aggregates(sums, 100, layout))
    for number in (1, 2):  # follows the job round by round
        steady._global_model(_state(number, 3, parameters))
    late_api = _Aggregates(sums, 100, layout)
    late = _run(tmp_path / "late", spec, late_api)  # joins after round 3 closed
    outcomes = [run._final(_state(3, 3, parameters)) for run in (steady, late)]
    assert late_api.fetched == [1, 2, 3]  # replayed from round 1
    final = [o.weights_path.read_bytes() for o in outcomes if o.weights_path is not None]
    assert len(final) == 2 and final[0] == final[1]
    # The optimizer moved the parameters; the running statistics are the last average.
    weights = he.read_weights(outcomes[0].weights_path)  # type: ignore[arg-type]
    last = he.unflatten(sums[2], he.weights_layout(template))
    np.testing.assert_array_equal(weights["norm.running_mean"], last["norm.running_mean"])
    assert not np.allclose(weights["hidden.weight"], last["hidden.weight"])
