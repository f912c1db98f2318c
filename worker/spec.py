"""What the worker hands its training child, and what comes back: plain data, no code."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from grid_common.plan import TrainingPlan
from grid_common.schemas import DatasetFormat


@dataclass(frozen=True)
class TrainingLimits:
    """What the approval allowed one attempt to use."""

    cpu_seconds: int
    memory_mb: int
    wall_seconds: int


@dataclass(frozen=True)
class DataFile:
    """One private dataset file, already on the worker's disk."""

    path: Path
    format: DatasetFormat
    label: str


@dataclass(frozen=True)
class TrainingSpec:
    """One training attempt: the model archive, its weights, the data, the plan and the limits."""

    model_path: Path
    weights_path: Path
    data: list[DataFile]
    plan: TrainingPlan
    limits: TrainingLimits
    output_dir: Path
    device: str = "cpu"
    proximal_mu: float = 0.0  # FedProx: weight of ||w - w_start||^2 / 2 added to the loss
    # DP across a federated job's rounds: the noise is calibrated so that `dp_rounds` rounds of
    # `plan.epochs` spend at most plan.dp.epsilon, and the accountant starts with the steps of
    # the `dp_rounds_spent` rounds this domain already trained in (one accountant for the job).
    dp_rounds: int = 1
    dp_rounds_spent: int = 0


EventKind = Literal["progress", "log"]


@dataclass(frozen=True)
class TrainingEvent:
    """A progress point (epoch, step, loss, metrics) or a log line, streamed while training."""

    kind: EventKind
    data: dict[str, Any]


OutcomeStatus = Literal["completed", "failed", "cancelled"]


@dataclass(frozen=True)
class TrainingOutcome:
    """How an attempt ended; on success the trained weights and the final metrics."""

    status: OutcomeStatus
    reason: str | None = None
    weights_path: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
