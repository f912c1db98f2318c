"""Readers for dataset files (CSV, Parquet, npz, safetensors) that never unpickle anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from grid_common.schemas import DatasetFormat


class DatasetFileError(ValueError):
    """A problem with a dataset file; the message names the row, column or array and the fix."""


def read_table(path: Path, fmt: DatasetFormat) -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame with string column names."""
    try:
        if fmt == "csv":
            return pd.read_csv(path)
        df = pd.read_parquet(path)
    except Exception as e:  # any parser failure is the uploader's file, not our bug
        raise DatasetFileError(f"not a valid {fmt} file: {e}") from e
    df.columns = [str(c) for c in df.columns]
    return df


def _as_npz(loaded: Any) -> np.lib.npyio.NpzFile:
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DatasetFileError("not a valid npz file: it is a single .npy array; use numpy.savez")
    return loaded


def load_arrays(path: Path, fmt: DatasetFormat) -> dict[str, np.ndarray]:
    """The named arrays of an npz or safetensors file, in the file's order."""
    try:
        if fmt == "safetensors":
            from safetensors.numpy import load_file

            arrays = dict(load_file(str(path)))
        else:
            # Our own handle: np.load leaks its handle when the zip is corrupt. allow_pickle=False
            # because object arrays would run arbitrary code while being unpickled.
            with path.open("rb") as fh, _as_npz(np.load(fh, allow_pickle=False)) as npz:
                arrays = {}
                for key in npz.files:
                    try:
                        arrays[key] = npz[key]
                    except ValueError as e:
                        raise DatasetFileError(
                            f"array {key!r} holds pickled Python objects, which are refused: "
                            "save it with a numeric or string dtype"
                        ) from e
    except DatasetFileError:
        raise
    except Exception as e:  # corrupt zip, wrong magic, a bare .npy, a bad header...
        raise DatasetFileError(f"not a valid {fmt} file: {e}") from e
    if not arrays:
        raise DatasetFileError(f"the {fmt} file holds no arrays")
    return arrays


def read_frame(path: Path, fmt: DatasetFormat) -> pd.DataFrame:
    """Any dataset file as a table: CSV and Parquet as they are, npz and safetensors with one
    column per one-dimensional array (arrays with more dimensions are left out)."""
    if fmt in ("csv", "parquet"):
        return read_table(path, fmt)
    arrays = load_arrays(path, fmt)
    return pd.DataFrame({name: array for name, array in arrays.items() if array.ndim == 1})
