"""Helpers for whole jobs over HTTP: the model, the plan, waiting with a deadline."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import torch
from torch import nn

import grid_cli as grid

DS_EMAIL = "ds@example.org"
LEASE_SECONDS = 3
StartWorker = Callable[..., subprocess.Popen[bytes]]


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def wait_until(condition: Callable[[], bool], what: str, deadline_s: float = 120) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise TimeoutError(f"not {what} within {deadline_s}s")


PLAN = grid.TrainingPlan(
    loss="cross_entropy",
    optimizer="adam",
    lr=0.01,
    epochs=8,
    batch_size=64,
    metrics=["loss", "accuracy"],
)
