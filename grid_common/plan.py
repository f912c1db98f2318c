"""The training plan: data chosen from an allow-list, never code."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Loss = Literal["cross_entropy", "mse", "bce_with_logits"]
Optimizer = Literal["sgd", "adam", "adamw"]
Metric = Literal["loss", "accuracy"]


class DifferentialPrivacy(BaseModel):
    """DP-SGD settings: the (epsilon, delta) the whole job may spend, and the clipping norm."""

    model_config = ConfigDict(extra="forbid")

    epsilon: float = Field(gt=0, le=100)
    delta: float = Field(gt=0, lt=1)
    max_grad_norm: float = Field(default=1.0, gt=0, le=1000)


class TrainingPlan(BaseModel):
    """How a model is trained on a domain; unknown names and fields are refused."""

    model_config = ConfigDict(extra="forbid")

    loss: Loss
    optimizer: Optimizer = "sgd"
    lr: float = Field(default=0.01, gt=0, le=10, description="Learning rate.")
    momentum: float = Field(default=0.0, ge=0, lt=1, description="SGD only.")
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    epochs: int = Field(default=1, ge=1, le=1000)
    batch_size: int = Field(default=32, ge=1, le=65536)
    seed: int = Field(default=0, ge=0)
    validation_split: float = Field(default=0.0, ge=0, lt=1)
    metrics: list[Metric] = Field(default_factory=lambda: list[Metric](["loss"]))
    dp: DifferentialPrivacy | None = Field(
        default=None, description="Train with DP-SGD (Opacus) within this privacy budget."
    )
