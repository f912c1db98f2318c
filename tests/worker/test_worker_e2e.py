"""Whole data-centric jobs over HTTP: a gunicorn domain, `grid worker start` processes, clients."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

import grid_cli as grid
from grid_cli.client.export import export_model
from grid_common.schemas import AutoApprovalRule, JobLimits, Settings
from grid_common.transport import multipart_body
from tests.worker.live import PLAN, StartWorker, mlp, wait_until


class NaNModel(nn.Module):
    """Outputs NaN from the first step: log of a negative number."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self.linear(x) * 0 - 1)


class Greedy(nn.Module):
    """Asks for a 16 GiB scratch tensor on every forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scratch = torch.ones(1 << 16, 1 << 16, dtype=torch.float32)
        return self.linear(x) + scratch[0, :10].sum() * 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_data_scientist_trains_on_private_data_and_gets_the_released_model(
    owner: grid.DomainClient,
    scientist: grid.DomainClient,
    start_worker: StartWorker,
    tmp_path: Path,
) -> None:
    start_worker("w1")
    job = scientist.submit_training(mlp(), dataset="digits-a", plan=PLAN, reason="digit classifier")
    assert job.status == "pending_approval"
    owner.approve(job.id, reason="fine")
    job.wait(timeout=120, progress=False)
    assert job.info.result_status == "held"
    with pytest.raises(grid.GridError) as held:
        job.result()
    assert held.value.code == "result_held"

    owner.release(job.id)
    model = job.result()
    digits = load_digits()
    inputs = torch.tensor(digits.data[600:900], dtype=torch.float32)
    with torch.no_grad():
        predicted = model(inputs).argmax(dim=1).numpy()
    accuracy = float(np.mean(predicted == digits.target[600:900]))
    assert accuracy > 0.8, accuracy
    assert job.metrics["accuracy"] > 0.8
    assert len(job.history) == PLAN.epochs
    assert any("attempt 1 started" in line for line in job.logs())
    job.plot(tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 1000


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_models_that_do_not_fit_the_data_fail_at_submission(
    scientist: grid.DomainClient,
) -> None:
    wrong_input = nn.Sequential(nn.Linear(10, 10))
    with pytest.raises(ValueError, match="cannot take the dataset's rows"):
        scientist.submit_training(wrong_input, "digits-a", PLAN, reason="x")
    mse = PLAN.model_copy(update={"loss": "mse"})
    with pytest.raises(ValueError, match="does not fit the mse loss"):
        scientist.submit_training(nn.Sequential(nn.Linear(64, 3)), "digits-a", mse, reason="x")
    assert scientist.jobs.ids == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_killed_worker_job_finishes_on_another_worker_with_one_result(
    owner: grid.DomainClient, scientist: grid.DomainClient, start_worker: StartWorker
) -> None:
    longer = PLAN.model_copy(update={"epochs": 30, "batch_size": 8})
    job = scientist.submit_training(mlp(), dataset="digits-a", plan=longer, reason="longer")
    owner.approve(job.id)
    first = start_worker("w1")
    wait_until(lambda: bool(job.history), "training on w1")
    os.killpg(first.pid, signal.SIGKILL)  # the worker and its training child, no goodbye
    first.wait(timeout=10)
    start_worker("w2")

    job.wait(timeout=180, progress=False)
    assert (job.info.attempt, job.info.worker) == (2, "w2")
    completions = owner.audit_log(action="jobs.completed", limit=1000)
    assert [e.target for e in completions] == [f"job:{job.id}"]
    assert job.metrics["epochs"] == longer.epochs


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_failing_jobs_say_why_and_the_worker_takes_the_next_one(
    owner: grid.DomainClient, scientist: grid.DomainClient, start_worker: StartWorker
) -> None:
    start_worker("w1")
    nan = scientist.submit_training(NaNModel(), "digits-a", PLAN, reason="nan")
    owner.approve(nan.id)
    slow = PLAN.model_copy(update={"epochs": 1000, "batch_size": 8})
    timeout = scientist.submit_training(mlp(), "digits-a", slow, reason="slow")
    owner.approve(timeout.id, limits=JobLimits(wall_seconds=3))
    greedy = scientist.submit_training(Greedy(), "digits-a", PLAN, reason="greedy")
    owner.approve(greedy.id, limits=JobLimits(memory_mb=1024))
    good = scientist.submit_training(mlp(), "digits-a", PLAN, reason="good")
    owner.approve(good.id)

    good.wait(timeout=180, progress=False)
    expected = [(nan, "loss became nan"), (timeout, "timed out"), (greedy, "out of memory")]
    for job, needle in expected:
        job.refresh()
        assert job.info.status == "failed", (job, job.info.failure_reason)
        assert needle in (job.info.failure_reason or "").lower(), job.info.failure_reason


# Every job starts its own training process (PyTorch imported afresh): CPU-heavy on 2 cores.
@pytest.mark.timeout(900)
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_four_workers_run_fifty_jobs_exactly_once_on_postgresql(
    owner: grid.DomainClient, scientist: grid.DomainClient, start_worker: StartWorker
) -> None:
    owner.update_settings(Settings(auto_approval=[AutoApprovalRule(kind="job")]))
    quick = PLAN.model_copy(update={"epochs": 1})
    features = load_digits().data[:8].astype(np.float32)
    exported = export_model(mlp(), features)
    fields = [("reason", "many"), ("plan", quick.model_dump_json()), ("datasets", "digits-a")]
    files = [("model", exported.program), ("weights", exported.weights)]
    for _ in range(50):
        with multipart_body(fields, files) as body:
            scientist.http.request(
                "POST",
                "/api/v1/requests/jobs",
                data=body,
                headers={"Content-Type": body.content_type},
            )
    exported.folder.cleanup()
    for name in ("w1", "w2", "w3", "w4"):
        start_worker(name)

    def all_done() -> bool:
        return all(j.info.status == "completed" for j in owner.jobs)

    wait_until(all_done, "all 50 jobs completed", deadline_s=600)
    jobs = owner.jobs
    assert len(jobs) == 50
    assert {j.info.attempt for j in jobs} == {1}
    completions = owner.audit_log(action="jobs.completed", limit=1000)
    assert sorted(e.target for e in completions) == sorted(f"job:{j.id}" for j in jobs)
    assert len({j.info.worker for j in jobs}) > 1
