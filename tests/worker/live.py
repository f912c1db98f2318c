"""Helpers for whole jobs over HTTP: the model, the plan, waiting with a deadline."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import torch
from torch import nn

import grid_cli as grid
from tests.conftest import eventually as wait_until  # noqa: F401  (the tests' one poll)

DS_EMAIL = "ds@example.org"
LEASE_SECONDS = 3
StartWorker = Callable[..., subprocess.Popen[bytes]]


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


PLAN = grid.TrainingPlan(
    loss="cross_entropy",
    optimizer="adam",
    lr=0.01,
    epochs=8,
    batch_size=64,
    metrics=["loss", "accuracy"],
)
