"""The plan's loss names as PyTorch functions, shared by the client's dry run and the worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from grid_common.plan import Loss

if TYPE_CHECKING:
    from torch import Tensor

LossFunction = Callable[["Tensor", "Tensor"], "Tensor"]


def loss_function(name: Loss) -> LossFunction:
    """The loss named by a plan; float targets take the output's shape when their sizes agree."""
    from torch.nn import functional

    if name == "cross_entropy":
        return functional.cross_entropy
    elementwise = (
        functional.mse_loss if name == "mse" else functional.binary_cross_entropy_with_logits
    )

    def loss(output: Tensor, target: Tensor) -> Tensor:
        if target.shape != output.shape:
            if target.numel() != output.numel():
                raise ValueError(
                    f"{name} needs one target per output value: output {tuple(output.shape)}, "
                    f"targets {tuple(target.shape)}"
                )
            target = target.reshape(output.shape)
        return elementwise(output, target)

    return loss
