"""A data scientist stretches a DP budget over many federated rounds.

On the code before the fix every round ran DP-SGD for the whole epsilon with a fresh
accountant, so a 5-round job spent about five times what the owner approved while the
domain charged it once. Now the noise is calibrated for every round and epoch of the job,
one accountant per domain counts them all, and each domain records what it actually spent:
a 5-round job ends within the approved epsilon, at a larger noise multiplier than a 1-round
job. Real network, domains and workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import grid_cli as grid
from grid_common.schemas import JobOut
from tests.e2e.grid import LocalGrid, eventually, start_grid
from tests.worker.live import mlp

pytestmark = pytest.mark.timeout(600)

EPSILON, DELTA = 2.0, 1e-5
PLAN = grid.TrainingPlan(
    loss="cross_entropy",
    optimizer="sgd",
    lr=0.05,
    epochs=1,
    batch_size=64,
    metrics=["loss"],
    dp={"epsilon": EPSILON, "delta": DELTA},
)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalGrid]:
    running = start_grid(tmp_path / "grid", 3)
    yield running
    running.stop()


def _run(local: LocalGrid, rounds: int) -> tuple[grid.FederatedJob, list[JobOut]]:
    """Train for `rounds`; returns the job and each owner's view of their part in it."""
    fl = local.scientist.federated_training(
        mlp(), datasets=local.scientist.search("digits"), plan=PLAN, rounds=rounds, progress=False
    )
    ids = []
    for member in local.members:
        pending = eventually(
            lambda m=member: [r for r in m.owner.requests.pending if r.info.kind == "federated"],
            f"{member.name} to receive the federated request",
        )
        member.owner.approve(pending[0].id, "fine", release_on_completion=True)
        ids.append(pending[0].id)
    fl.wait(timeout=300, progress=False)
    return fl, [m.owner.job_info(i) for m, i in zip(local.members, ids, strict=True)]


def test_a_five_round_dp_job_spends_at_most_its_epsilon(local: LocalGrid) -> None:
    five, owners_five = _run(local, 5)
    one, owners_one = _run(local, 1)
    for mine, single in zip(owners_five, owners_one, strict=True):
        # What each owner sees: the spend of the whole job, within what was approved.
        assert mine.epsilon_spent is not None and single.epsilon_spent is not None
        assert 0.9 * EPSILON <= mine.epsilon_spent <= EPSILON
        assert single.epsilon_spent <= EPSILON
        # Five rounds on one budget need more noise per step than one round.
        assert mine.metrics is not None and single.metrics is not None
        assert mine.metrics["noise_multiplier"] > single.metrics["noise_multiplier"]
    # What the data scientist sees: each domain's spend so far, round by round.
    history = five.history
    for name in ("hospital-a", "hospital-b", "hospital-c"):
        spent = [r["domains"][name]["epsilon"] for r in history]
        assert spent == sorted(spent) and spent[-1] <= EPSILON
    assert one.history[-1]["domains"]["hospital-a"]["epsilon"] <= EPSILON
