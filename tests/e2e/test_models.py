"""Models people bring, trained end to end on real processes: CNNs (BatchNorm; GroupNorm under
DP), attention (nn.TransformerEncoderLayer), a text classifier over integer token ids
(nn.Embedding) and a GRU, data-centric on a domain; attention and text also federated with CKKS.

One grid of three domains for the module; each domain holds a third of scikit-learn's digits
(300 rows) with its pixels as integer columns, so the text model reads them as token ids.
Every job is one epoch: these tests check that a model is accepted, trains and comes back, not
how well it learns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import grid_cli as grid
from tests import models
from tests.e2e.grid import LocalGrid, digits_parts, start_grid

pytestmark = [
    pytest.mark.timeout(600),
    # torch notes that an RNN's flat weight list is rebuilt while exporting; harmless here.
    pytest.mark.filterwarnings("ignore:The tensor attributes self.rnn._flat_weights"),
]

ROWS = 300
PLAN: dict[str, Any] = {
    "loss": "cross_entropy",
    "optimizer": "adam",
    "lr": 0.01,
    "epochs": 1,
    "batch_size": 32,
    "validation_split": 0.2,
    "metrics": ["loss", "accuracy"],
}
DP = {"epsilon": 8.0, "delta": 1e-5, "max_grad_norm": 1.0}
# name -> (the model, whether it trains under DP); spread over the three domains' workers.
DATA_CENTRIC: dict[str, tuple[Callable[[], nn.Module], bool]] = {
    "batch_norm_cnn": (models.batch_norm_cnn, False),
    "group_norm_cnn_dp": (models.group_norm_cnn, True),
    "attention": (models.attention, False),
    "text": (models.text_classifier, False),
    "gru": (models.gru, False),
}
FEDERATED = {"attention": models.attention, "text": models.text_classifier}


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGrid]:
    parts = [part.iloc[:ROWS].astype("int64") for part in digits_parts(3)]
    running = start_grid(tmp_path_factory.mktemp("models"), 3, parts=parts)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def data_centric(local: LocalGrid) -> dict[str, tuple[grid.Job, nn.Module]]:
    """Every data-centric job, filed and approved up front so the workers train side by side."""
    account = local.running.scientist_account
    jobs = {}
    for index, (name, (make, dp)) in enumerate(DATA_CENTRIC.items()):
        member = local.members[index % len(local.members)]
        scientist = grid.login(member.url, account.email, account.password)
        plan = PLAN | {"dp": DP} if dp else PLAN
        model = make()
        job = scientist.submit_training(model, "digits", plan, reason=name, progress=False)
        member.owner.approve(job.id, "fine", release_on_completion=True)
        jobs[name] = (job, model)
    return jobs


def _changed(before: nn.Module, after: nn.Module) -> bool:
    old, new = before.state_dict(), after.state_dict()
    return any(not torch.equal(old[k], new[k]) for k in old if old[k].is_floating_point())


@pytest.mark.parametrize("name", DATA_CENTRIC)
def test_a_model_people_bring_trains_on_a_domain(
    data_centric: dict[str, tuple[grid.Job, nn.Module]], name: str
) -> None:
    job, model = data_centric[name]
    job.wait(timeout=300, progress=False)
    assert len(job.history) == 1
    assert 0 <= job.metrics["val_accuracy"] <= 1
    if DATA_CENTRIC[name][1]:
        assert 0 < job.metrics["epsilon"] <= DP["epsilon"]
    trained = job.result()
    assert _changed(model, trained)
    rows = torch.zeros(3, 64, dtype=torch.int64 if name == "text" else torch.float32)
    with torch.no_grad():
        assert trained.eval()(rows).shape == (3, models.CLASSES)


@pytest.fixture(scope="module")
def federated(local: LocalGrid) -> dict[str, tuple[grid.FederatedJob, nn.Module]]:
    """Both federated jobs, filed and approved one after the other, then run side by side."""
    jobs = {}
    for name, make in FEDERATED.items():
        model = make()
        jobs[name] = (
            local.scientist.federated_training(
                model,
                datasets=local.scientist.search("digits"),
                plan=PLAN,
                rounds=1,
                secure_aggregation="ckks",
                progress=False,
            ),
            model,
        )
        local.approve_all()
    return jobs


@pytest.mark.parametrize("name", FEDERATED)
def test_a_model_people_bring_trains_federated_with_ckks(
    federated: dict[str, tuple[grid.FederatedJob, nn.Module]], name: str
) -> None:
    fl, model = federated[name]
    fl.wait(timeout=300, progress=False)
    history = fl.history
    assert [r["round"] for r in history] == [1]
    assert sorted(history[0]["domains"]) == ["hospital-a", "hospital-b", "hospital-c"]
    trained = fl.result()
    assert _changed(model, trained)
    assert all(np.isfinite(v.numpy()).all() for v in trained.state_dict().values())
