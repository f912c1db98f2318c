# ruff: noqa: F811  (pytest fixtures imported from tests.worker.conftest, used as arguments)
"""Attack: repeat a DP-SGD job with the same seed to learn its noise, then subtract it.

If the Poisson sampling and the Gaussian noise followed the plan's seed, two jobs with the same
seed on the same data would release the same weights, and a data scientist could rebuild the
noise and remove it. The domain draws both from OS entropy; the job log says so.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import grid_cli as grid
from tests.worker.conftest import (  # noqa: F401
    digits_csv,
    live_domain_env,
    owner,
    scientist,
    start_worker,
)
from tests.worker.live import PLAN, StartWorker, mlp

DP_PLAN = grid.TrainingPlan.model_validate(
    {
        **PLAN.model_dump(),
        **{"optimizer": "sgd", "lr": 0.1, "epochs": 1, "seed": 7},
        "dp": {"epsilon": 2.0, "delta": 1e-5},
    }
)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_two_dp_jobs_with_the_same_seed_release_different_weights(
    owner: grid.DomainClient,
    scientist: grid.DomainClient,
    start_worker: StartWorker,
    tmp_path: Path,
) -> None:
    start_worker("w1")
    released, logs = [], []
    for attempt in ("first", "second"):
        job = scientist.submit_training(mlp(), "digits-a", DP_PLAN, f"{attempt} DP run")
        owner.approve(job.id, reason="fine", release_on_completion=True)
        job.wait(timeout=300, progress=False)
        path = job.download_result(tmp_path / f"{attempt}.safetensors")
        released.append(load_file(str(path)))
        logs.append(job.logs())
    first, second = released
    assert first.keys() == second.keys()
    assert all(not torch.equal(first[k], second[k]) for k in first)
    # The data scientist is told where the randomness came from.
    for lines in logs:
        assert any("operating system's entropy" in line for line in lines), lines
