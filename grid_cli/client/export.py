"""Package a PyTorch model for a domain: a dry run on the mock, a train-mode export, safetensors."""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from grid_common.losses import loss_function
from grid_common.model_archive import ModelArchiveError, save_for_training
from grid_common.plan import TrainingPlan
from grid_common.training_data import targets_for_loss

if TYPE_CHECKING:
    from torch import nn

DRY_RUN_ROWS = 8


class ModelCheckError(ValueError):
    """The model does not fit the dataset or the plan; the message says how."""


@dataclass(frozen=True)
class ExportedModel:
    """The two files a job request carries, in a temporary folder the caller removes."""

    folder: tempfile.TemporaryDirectory[str]
    program: Path
    weights: Path


def model_rows(model: nn.Module, features: np.ndarray) -> np.ndarray:
    """`features` typed as the model takes them: float32, or int64 for a model over integer ids.

    A model whose forward refuses float rows but takes the same rows as int64 (an nn.Embedding
    over token ids) is exported with int64 rows, and the archive records that dtype: its
    domains then hand it integer columns as a LongTensor. Float rows are tried first, so every
    other model keeps float32.
    """
    rows = np.ascontiguousarray(features[: max(2, min(len(features), DRY_RUN_ROWS))])
    floats = features.astype(np.float32)
    probe = copy.deepcopy(model).train()
    whole = rows.dtype.kind in "iu" or (
        rows.dtype.kind == "f" and np.array_equal(rows, np.round(rows))
    )
    as_float = _failure(probe, rows.astype(np.float32))
    if as_float is None or not whole or len(rows) == 0:
        return floats  # the checks that follow report a model's own error
    as_ids = _failure(probe, rows.astype(np.int64))
    if as_ids is None:
        return np.rint(features).astype(np.int64)
    raise ModelCheckError(
        f"the model cannot take the dataset's rows (input shape {tuple(rows.shape)}), neither "
        f"as float32 ({_first_line(as_float)}) nor as int64 ids ({_first_line(as_ids)})"
    )


def _failure(module: nn.Module, rows: np.ndarray) -> Exception | None:
    """Why `module` cannot take `rows`, or None if it can."""
    import torch

    try:
        with torch.no_grad():
            module(torch.from_numpy(rows))
    except Exception as exc:
        return exc
    return None


def _first_line(exc: Exception) -> str:
    return (str(exc).strip() or type(exc).__name__).splitlines()[0][:300]


def dry_run(model: nn.Module, features: np.ndarray, labels: np.ndarray, plan: TrainingPlan) -> None:
    """Run a few mock rows through the model and the plan's loss, as the worker will."""
    import torch

    rows = min(len(features), DRY_RUN_ROWS, plan.batch_size)
    if rows == 0:
        raise ModelCheckError("the dataset's mock sample is empty: nothing to check the model on")
    inputs = torch.from_numpy(np.ascontiguousarray(features[:rows]))
    targets = torch.from_numpy(targets_for_loss(labels[:rows], plan.loss))
    probe = copy.deepcopy(model).train()
    try:
        with torch.no_grad():
            output = probe(inputs)
    except Exception as exc:
        raise ModelCheckError(
            f"the model cannot take the dataset's rows (input shape {tuple(inputs.shape)}): {exc}"
        ) from None
    try:
        with torch.no_grad():
            loss_function(plan.loss)(output, targets)
    except Exception as exc:
        raise ModelCheckError(
            f"the model's output (shape {tuple(output.shape)}) does not fit the {plan.loss} loss "
            f"with the dataset's labels (shape {tuple(targets.shape)}): {exc}"
        ) from None


def check_forward(model: nn.Module, features: np.ndarray) -> None:
    """Run a batch through the model, as a federated job's domains will (labels unseen)."""
    import torch

    probe = copy.deepcopy(model).train()
    inputs = torch.from_numpy(np.ascontiguousarray(features[: max(2, min(len(features), 4))]))
    try:
        with torch.no_grad():
            probe(inputs)
    except Exception as exc:
        raise ModelCheckError(
            f"the model cannot take the dataset's rows (input shape {tuple(inputs.shape)}): {exc}"
        ) from None


def export_model(model: nn.Module, features: np.ndarray, *, dp: bool = False) -> ExportedModel:
    """Export in train mode with a dynamic batch size, and save the weights beside it.

    The archive is inspected as the domain will (`dp` for a job under differential privacy),
    so what it refuses fails here first.
    """
    import torch
    from safetensors.torch import save_file

    example = torch.from_numpy(np.ascontiguousarray(features[: max(2, min(len(features), 4))]))
    folder = tempfile.TemporaryDirectory(prefix="grid-export-")
    program_path = Path(folder.name) / "model.pt2"
    weights_path = Path(folder.name) / "weights.safetensors"
    try:
        save_for_training(copy.deepcopy(model), example, program_path, dp=dp)
    except ModelArchiveError as exc:
        folder.cleanup()
        raise ModelCheckError(f"Grid cannot accept this model: {exc}") from None
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(weights_path))
    return ExportedModel(folder, program_path, weights_path)
