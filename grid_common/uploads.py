"""Checks on uploaded model files that every node makes before keeping them."""

from __future__ import annotations

from pathlib import Path

from safetensors import SafetensorError, safe_open

from grid_common.errors import Unprocessable
from grid_common.model_archive import ModelArchiveError, inspect_archive


def check_model_archive(path: Path, part: str = "model", *, dp: bool = False) -> None:
    """Refuse a `.pt2` part that could run code when loaded, or is no export at all.

    Also refused: a graph that changes a buffer other than BatchNorm's running statistics,
    and, for a job under differential privacy (`dp`), one that changes any buffer.
    """
    # Read as zip directory and JSON only: nothing in it is unpickled or run here.
    try:
        inspect_archive(path, dp=dp)
    except ModelArchiveError as exc:
        raise Unprocessable(f"The '{part}' part is refused: {exc}", code="invalid_model") from None


def check_safetensors(path: Path, part: str) -> None:
    """Refuse an uploaded part that is not a safetensors file holding at least one tensor."""
    try:
        with safe_open(str(path), framework="numpy") as handle:
            has_tensors = bool(list(handle.keys()))
    except (SafetensorError, OSError, ValueError) as exc:
        raise Unprocessable(
            f"The '{part}' part is not a safetensors file: {exc}", code="invalid_weights"
        ) from None
    if not has_tensors:
        raise Unprocessable(f"The '{part}' file holds no tensors.", code="invalid_weights")
