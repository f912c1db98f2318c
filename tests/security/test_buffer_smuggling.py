# ruff: noqa: F811  (pytest fixtures imported from tests.worker.conftest, used as arguments)
"""Attack: carry private rows out of a domain in a model buffer the forward pass writes to.

A data scientist's model copies a training row into a registered buffer on every forward pass;
the buffer travels in the released weights. The domain refuses such a graph when the job is
filed (the client refuses it earlier still); a graph may change only the running statistics of
its batch normalization layers, and under differential privacy no buffer at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from flask import Flask
from flask.testing import FlaskClient
from safetensors.torch import load_file, save_file
from safetensors.torch import save as save_safetensors
from sklearn.datasets import load_digits
from torch import nn

import grid_cli as grid
from grid_cli.client.export import ModelCheckError
from grid_common.model_archive import export_for_training, save_for_training
from grid_common.transport import multipart_body
from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD
from tests.console.conftest import sign_in
from tests.domain.uploads import file_job, upload
from tests.worker.conftest import (  # noqa: F401
    digits_csv,
    live_domain_env,
    owner,
    scientist,
    start_worker,
)
from tests.worker.live import PLAN, StartWorker

DP = {"epsilon": 1.0, "delta": 1e-5}


class Stash(nn.Module):
    """Trains like any classifier, and keeps the batch's first row in a buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)
        self.register_buffer("stash", torch.zeros(1, 64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.stash.copy_(x[:1])
        return self.linear(x)


class Disguised(nn.Module):
    """The same theft, in buffers named like a BatchNorm layer's, fed to no batch norm."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)
        self.register_buffer("running_mean", torch.zeros(64))
        self.register_buffer("num_batches_tracked", torch.tensor(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.running_mean.copy_(x[0])
        self.num_batches_tracked.add_(1)
        return self.linear(x)


class BatchNormCNN(nn.Module):
    """A small CNN with batch normalization: its running statistics may change without DP."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.out = nn.Linear(8 * 6 * 6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x.reshape(-1, 1, 8, 8))))
        return self.out(h.flatten(1))


def file_raw(
    scientist: grid.DomainClient, model: nn.Module, tmp: Path, plan: dict[str, Any]
) -> None:
    """File a job request as a client that skips its own checks: export, save, POST."""
    torch.manual_seed(0)
    archive, weights = tmp / "model.pt2", tmp / "weights.safetensors"
    example = torch.tensor(load_digits().data[:4], dtype=torch.float32)
    torch.export.save(export_for_training(model, example), str(archive))
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(weights))
    fields = [("reason", "a classifier"), ("plan", grid.TrainingPlan(**plan).model_dump_json())]
    fields.append(("datasets", "digits-a"))
    files = [("model", archive), ("weights", weights)]
    with multipart_body(fields, files) as body:
        scientist.http.request(
            "POST",
            "/api/v1/requests/jobs",
            data=body,
            headers={"Content-Type": body.content_type},
        )


def assert_refused_at_filing(
    scientist: grid.DomainClient,
    model: nn.Module,
    tmp_path: Path,
    plan: dict[str, Any],
    buffer: str,
) -> None:
    """Refused by the domain when filed raw (422 naming `buffer`), and by the client first."""
    with pytest.raises(grid.GridError) as refused:
        file_raw(scientist, model, tmp_path, plan)
    assert refused.value.status == 422
    assert refused.value.code == "invalid_model"
    assert f"buffer '{buffer}'" in refused.value.message
    assert len(scientist.requests) == 0  # nothing was filed for the owner to approve by mistake
    with pytest.raises(ModelCheckError, match=f"buffer '{buffer}'"):
        scientist.submit_training(model, "digits-a", plan, "a classifier")


def test_a_model_that_stashes_a_row_in_a_buffer_is_refused_at_filing(
    scientist: grid.DomainClient, tmp_path: Path
) -> None:
    assert_refused_at_filing(scientist, Stash(), tmp_path, PLAN.model_dump(), "stash")


def test_a_buffer_named_like_batch_norm_statistics_is_still_refused(
    scientist: grid.DomainClient, tmp_path: Path
) -> None:
    assert_refused_at_filing(scientist, Disguised(), tmp_path, PLAN.model_dump(), "running_mean")


def test_batch_norm_under_differential_privacy_is_refused_at_filing(
    scientist: grid.DomainClient, tmp_path: Path
) -> None:
    plan = {**PLAN.model_dump(), "optimizer": "sgd", "dp": DP}
    assert_refused_at_filing(scientist, BatchNormCNN(), tmp_path, plan, "bn.running_mean")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_batch_norm_cnn_still_trains_without_dp(
    owner: grid.DomainClient,
    scientist: grid.DomainClient,
    start_worker: StartWorker,
    tmp_path: Path,
) -> None:
    start_worker("w1")
    model = BatchNormCNN()
    plan = PLAN.model_copy(update={"epochs": 3})
    job = scientist.submit_training(model, "digits-a", plan, "a CNN")
    owner.approve(job.id, reason="fine", release_on_completion=True)
    job.wait(timeout=300, progress=False)
    released = load_file(str(job.download_result(tmp_path / "result.safetensors")))
    # The running statistics were learned from the data, as batch normalization needs.
    assert not torch.equal(released["bn.running_mean"], model.bn.running_mean)
    assert int(released["bn.num_batches_tracked"]) > 0
    trained = job.result()
    digits = load_digits()
    inputs = torch.tensor(digits.data[600:900], dtype=torch.float32)
    with torch.no_grad():
        predicted = trained.eval()(inputs).argmax(dim=1).numpy()
    assert float(np.mean(predicted == digits.target[600:900])) > 0.7


def test_the_owner_sees_which_buffers_training_changes(
    app: Flask, client: FlaskClient, headers: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    """The request page lists the running statistics that will leave with the weights."""
    assert upload(client, headers["owner"]).status_code == 201
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    archive = tmp_path / "model.pt2"
    save_for_training(model, torch.zeros(3, 2), archive)
    weights = save_safetensors({k: v.contiguous() for k, v in model.state_dict().items()})
    plan = {"loss": "cross_entropy", "epochs": 1}
    filed = file_job(client, headers["data_scientist"], (archive.read_bytes(), weights), plan)
    assert filed.status_code == 201, filed.get_json()
    console = app.test_client()
    sign_in(console, OWNER_EMAIL, OWNER_PASSWORD)
    page = console.get(f"/requests/{filed.get_json()['id']}").get_data(as_text=True)
    shown = page.split('data-testid="changed-buffers"', 1)[1].split("</dd>", 1)[0]
    assert all(f"<code>1.{b}</code>" in shown for b in ("running_mean", "running_var"))
