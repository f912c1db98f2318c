"""Attack: a data scientist with the documented client watches a job on a real domain and worker.

Leak path 3 (results before release), against real processes: a gunicorn domain, a
`grid worker start` process and `grid_cli` clients. The data scientist reads progress, history,
logs and the job's JSON while a DP job runs and after it ends, and trains on labels that would
put a private value in an error.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import grid_cli as grid
from tests.worker.conftest import (  # noqa: F401
    digits_csv,
    live_domain_env,
    owner,
    scientist,
    start_worker,
)
from tests.worker.live import PLAN, StartWorker, mlp, wait_until

PLANTED = 987654.321  # one private row's label or feature: it must show nowhere
TRAINING_ROWS, VALIDATION_ROWS = 540, 60  # digits-a's 600 rows, a tenth held out
COUNT_KEYS = {"samples", "validation_samples", "steps", "step", "steps_per_epoch"}
METRIC_KEYS = {"loss", "accuracy", "val_loss", "val_accuracy"}


def everything_read(job: grid.Job, client: grid.DomainClient) -> str:
    """All the data scientist's client reads of a job, as one text."""
    job.refresh()
    reads = [
        job.info.model_dump_json(),
        json.dumps(job.history),
        json.dumps(job.metrics),
        "\n".join(job.logs()),
        json.dumps([e.model_dump(mode="json") for e in client.job_events(job.id)]),
        client.request(job.id).info.model_dump_json(),
    ]
    return "\n".join(reads)


def assert_withheld(job: grid.Job, client: grid.DomainClient) -> None:
    text = everything_read(job, client)
    for point in job.history:
        assert not (METRIC_KEYS | COUNT_KEYS) & point.keys(), point
    for line in job.logs():
        assert f"on {VALIDATION_ROWS}" not in line, line
    # The count as a number of its own, not the digits inside a timestamp.
    assert not re.search(rf"(?<![\d.]){TRAINING_ROWS}(?!\d)", text)
    assert job.info.metrics is None and job.info.metrics_withheld


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_dp_job_streams_no_metrics_or_row_counts_to_its_data_scientist_before_release(
    owner: grid.DomainClient,  # noqa: F811
    scientist: grid.DomainClient,  # noqa: F811
    start_worker: StartWorker,  # noqa: F811
) -> None:
    start_worker("w1")
    plan = PLAN.model_copy(
        update={
            "epochs": 3,
            "validation_split": 0.1,
            "dp": grid.DifferentialPrivacy(epsilon=5.0, delta=1e-5),
        }
    )
    job = scientist.submit_training(mlp(), dataset="digits-a", plan=plan, reason="dp digits")
    owner.approve(job.id, reason="fine")

    wait_until(lambda: len(job.history) >= 1, "one epoch done", deadline_s=180)
    assert_withheld(job, scientist)  # while it runs
    job.wait(timeout=180, progress=False)
    assert_withheld(job, scientist)  # completed, the result held

    # The owner sees everything all along.
    owner_view = owner.job(job.id)
    assert owner_view.info.metrics is not None
    assert owner_view.info.metrics["samples"] == TRAINING_ROWS
    assert "loss" in owner_view.history[-1]
    assert any(f"training on {TRAINING_ROWS}" in line for line in owner_view.logs())

    owner.release(job.id)
    assert "loss" in job.history[-1] and "val_loss" in job.history[-1]
    assert job.metrics["loss"] == job.history[-1]["loss"]
    # Under DP exact row counts stay with the domain after the release too.
    assert not COUNT_KEYS & job.metrics.keys()
    assert not any(str(TRAINING_ROWS) in line for line in job.logs())


class Lookup(nn.Module):
    """Indexes a small table by the first feature: torch's error quotes the index it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.zeros(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x[:, 0].long()] + x[:, 1]


def planted_csv(folder: Path, name: str, labels: list[float], planted_feature: bool) -> Path:
    """Rows of three features in [0, 1), the first 0 unless one row's is the planted value."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.random((len(labels), 3)), columns=["a", "b", "c"])
    frame["a"] = 0.0
    if planted_feature:
        frame.loc[len(labels) // 2, "a"] = PLANTED
    frame["y"] = labels
    path = folder / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path


def failed_reason(
    submitter: grid.DomainClient,
    approver: grid.DomainClient,
    model: nn.Module,
    dataset: str,
    plan: grid.TrainingPlan,
) -> tuple[str, str]:
    """Run a job that must fail; its failure reason, and everything its data scientist reads."""
    job = submitter.submit_training(model, dataset=dataset, plan=plan, reason="probe")
    approver.approve(job.id)
    with pytest.raises(grid.JobFailed):
        job.wait(timeout=180, progress=False)
    return job.failure_reason or "", everything_read(job, submitter)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_errors_on_private_rows_name_the_problem_and_never_a_private_value(
    owner: grid.DomainClient,  # noqa: F811
    scientist: grid.DomainClient,  # noqa: F811
    start_worker: StartWorker,  # noqa: F811
    tmp_path: Path,
) -> None:
    rows = 120
    labels = list(np.linspace(0.0, 1.0, rows))
    out_of_range = labels.copy()
    out_of_range[7] = PLANTED
    with_gaps = labels.copy()
    with_gaps[3] = with_gaps[9] = float("nan")
    indexed = [0.0] * rows
    # The owner publishes a clean mock sample, so the client's own check on it passes.
    mock = planted_csv(tmp_path, "mock", labels[:20], planted_feature=False)
    for name, values, planted_feature in (
        ("out-of-range", out_of_range, False),
        ("gaps", with_gaps, False),
        ("indexed", indexed, True),
    ):
        private = planted_csv(tmp_path, name, values, planted_feature)
        owner.upload_dataset(name, private, label="y", mock=mock, progress=False)
    start_worker("w1")
    plan = grid.TrainingPlan(loss="bce_with_logits", epochs=1, batch_size=16)
    linear = nn.Sequential(nn.Linear(3, 1))

    reason, read = failed_reason(scientist, owner, linear, "out-of-range", plan)
    assert "between 0 and 1" in reason
    assert "987654" not in read and "9.87654" not in read

    reason, read = failed_reason(scientist, owner, linear, "gaps", plan)
    assert "missing values" in reason
    assert "2 missing" not in read

    mse = grid.TrainingPlan(loss="mse", epochs=1, batch_size=16)
    reason, read = failed_reason(scientist, owner, Lookup(), "indexed", mse)
    assert "the model failed" in reason
    assert "987654" not in read
