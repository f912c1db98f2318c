"""Small models, datasets and training specs for the training engine's tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from grid_common.model_archive import save_for_training
from grid_common.plan import TrainingPlan
from worker.spec import DataFile, TrainingLimits, TrainingSpec

FEATURES = 8
CLASSES = 3
ROOMY = TrainingLimits(cpu_seconds=120, memory_mb=1024, wall_seconds=120)


class MLP(nn.Module):
    def __init__(self, features: int = FEATURES, classes: int = CLASSES, dropout: float = 0.0):
        super().__init__()
        self.hidden = nn.Linear(features, 16)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(torch.relu(self.hidden(x))))


class BatchNormMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(FEATURES, 16)
        self.norm = nn.BatchNorm1d(16)
        self.out = nn.Linear(16, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.norm(self.hidden(x))))


class Hog(nn.Module):
    """Asks for 256 MiB of scratch per row on every forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(FEATURES, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scratch = x.new_ones(x.shape[0], 4096, 16384)
        return self.linear(x) + scratch.sum(dim=(1, 2)).unsqueeze(1) * 0


def blobs(rows: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well separated Gaussian clusters: an easy, quick classification task."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, size=(CLASSES, FEATURES))
    labels = rng.integers(0, CLASSES, rows)
    features = centers[labels] + rng.normal(0, 1, size=(rows, FEATURES))
    return features.astype(np.float32), labels.astype(np.int64)


def write_npz(path: Path, features: np.ndarray, labels: np.ndarray) -> DataFile:
    np.savez(path, x=features, label=labels)
    return DataFile(path, "npz", "label")


def write_model(folder: Path, model: nn.Module, name: str = "model") -> tuple[Path, Path]:
    """The .pt2 archive and safetensors weights a data scientist's client would send."""
    torch.manual_seed(0)
    archive = folder / f"{name}.pt2"
    save_for_training(model, torch.randn(4, FEATURES), archive)
    weights = folder / f"{name}.safetensors"
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(weights))
    return archive, weights


def make_spec(
    folder: Path,
    *,
    model: nn.Module | None = None,
    data: list[DataFile] | None = None,
    limits: TrainingLimits = ROOMY,
    **plan: Any,
) -> TrainingSpec:
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    archive, weights = write_model(folder, model if model is not None else MLP())
    if data is None:
        data = [write_npz(folder / "data.npz", *blobs())]
    settings: dict[str, Any] = {"loss": "cross_entropy", "optimizer": "adam", "lr": 0.05}
    settings |= {"epochs": 5, "batch_size": 32, "metrics": ["loss", "accuracy"]}
    settings.update(plan)
    return TrainingSpec(
        model_path=archive,
        weights_path=weights,
        data=data,
        plan=TrainingPlan.model_validate(settings),
        limits=limits,
        output_dir=folder / "output",
    )
