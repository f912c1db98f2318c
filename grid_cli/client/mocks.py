"""Turn a mock sample from the wire into a pandas DataFrame or a dict of numpy arrays."""

from __future__ import annotations

from contextlib import suppress
from typing import TypeAlias

import numpy as np
import pandas as pd

from grid_common.schemas import MockSample

MockData: TypeAlias = pd.DataFrame | dict[str, np.ndarray]


def table_from_sample(sample: MockSample) -> pd.DataFrame:
    """A table mock as a DataFrame, columns in the dataset's order and with its dtypes."""
    frame = pd.DataFrame({name: pd.Series(values) for name, values in sample.columns.items()})
    for name, dtype in sample.dtypes.items():
        if name not in frame.columns or dtype == "string":
            continue
        # Missing values in an integer column cannot be numpy ints; keep pandas' own choice.
        with suppress(TypeError, ValueError):
            frame[name] = frame[name].astype(dtype)
    return frame


def arrays_from_sample(sample: MockSample) -> dict[str, np.ndarray]:
    """An array mock as numpy arrays with the dataset's dtypes (null floats become NaN)."""
    arrays: dict[str, np.ndarray] = {}
    for name, values in sample.arrays.items():
        dtype = sample.dtypes.get(name)
        try:
            arrays[name] = np.asarray(values, dtype=dtype)
        except (TypeError, ValueError):
            arrays[name] = np.asarray(values)
    return arrays


def mock_from_sample(sample: MockSample) -> MockData:
    """The mock in the form a data scientist works with."""
    if sample.kind == "table":
        return table_from_sample(sample)
    return arrays_from_sample(sample)
