"""Turn a dataset (a table or named arrays) into the feature and label arrays a model trains on."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from grid_common.plan import Loss

if TYPE_CHECKING:
    from grid_common.schemas import DatasetSchema


class TrainingDataError(ValueError):
    """The data cannot feed the model as asked; the message names the column or array.

    Its message reaches the data scientist, so it names the problem and never a private value:
    no label's minimum or maximum, no count of missing values, no row count.
    """


def training_arrays(
    data: pd.DataFrame | Mapping[str, np.ndarray], label: str, *, integer: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(features [N, ...] as float32, or int64 with `integer`; labels [N, ...]) from a table or
    from named arrays.

    A table's features are its other columns, in the file's order, each numeric or bool.
    Arrays: the one other array as it is, or several flattened per row and concatenated in
    name order. With `integer` (a model over integer ids, such as an nn.Embedding, whose
    export took int64 rows) the features are int64, and a feature with fractions is refused.
    """
    if isinstance(data, pd.DataFrame):
        x, y = _from_table(data, label, integer)
    else:
        x, y = _from_arrays(data, label, integer)
    return x.astype(np.int64 if integer else np.float32), y


def example_features(schema: DatasetSchema, label: str, rows: int = 4) -> np.ndarray:
    """Zero features shaped as `training_arrays` would make them from data of this schema."""
    columns = {c.name: c for c in schema.columns}
    if label not in columns:
        raise TrainingDataError(f"label {label!r} is not a column of the dataset")
    others = [c for name, c in columns.items() if name != label]
    if not others:
        raise TrainingDataError(f"the dataset has no column besides the label {label!r}")
    if schema.format in ("csv", "parquet"):
        return np.zeros((rows, len(others)), dtype=np.float32)
    if len(others) == 1:
        return np.zeros((rows, *others[0].shape), dtype=np.float32)
    width = sum(math.prod(c.shape) for c in others)
    return np.zeros((rows, width), dtype=np.float32)


def targets_for_loss(labels: np.ndarray, loss: Loss) -> np.ndarray:
    """Labels in the form `loss` expects: int64 class indices for cross_entropy, else float32."""
    if loss != "cross_entropy":
        targets = labels.astype(np.float32)
        if loss == "bce_with_logits" and targets.size and (targets.min() < 0 or targets.max() > 1):
            raise TrainingDataError(
                "bce_with_logits needs labels between 0 and 1; some labels are outside that range"
            )
        return targets
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise TrainingDataError(
            f"cross_entropy needs one class index per row; the labels have shape "
            f"{list(labels.shape[1:])} per row"
        )
    if labels.dtype.kind == "f" and not np.array_equal(labels, np.round(labels)):
        raise TrainingDataError(
            "cross_entropy needs whole-number class labels; the labels have fractions "
            "(use mse for a regression target)"
        )
    if labels.size and labels.min() < 0:
        raise TrainingDataError(
            "cross_entropy needs class labels from 0 up; some labels are negative"
        )
    return labels.astype(np.int64)


def _whole(values: np.ndarray, what: str) -> np.ndarray:
    """`values` for a model over integer ids: refused if any has a fraction."""
    if values.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
        raise TrainingDataError(
            f"{what} has fractions, but the model takes integer ids (it was exported with "
            "int64 rows): give it whole numbers, or a model that takes float rows"
        )
    return values


def _numeric(values: np.ndarray, what: str) -> np.ndarray:
    if values.dtype.kind not in "biuf":
        raise TrainingDataError(
            f"{what} has dtype {values.dtype}: Grid trains on numbers and bools only, so "
            "encode or drop it"
        )
    if values.dtype.kind == "f" and np.isnan(values).any():
        raise TrainingDataError(
            f"{what} has missing values: Grid does not fill them in, so the data owner must "
            "publish a dataset without them"
        )
    return values


def _from_table(df: pd.DataFrame, label: str, integer: bool) -> tuple[np.ndarray, np.ndarray]:
    columns = [str(c) for c in df.columns]
    if label not in columns:
        raise TrainingDataError(
            f"label {label!r} is not a column of the data; its columns: {', '.join(columns)}"
        )
    features = [c for c in columns if c != label]
    if not features:
        raise TrainingDataError(f"the data has no column besides the label {label!r}")
    if len(df) == 0:
        raise TrainingDataError("the data has no rows")
    parts = [_column(df[c], f"column {c!r}") for c in features]
    if integer:
        parts = [_whole(p, f"column {c!r}") for c, p in zip(features, parts, strict=True)]
    x = np.stack(parts, axis=1)
    y = _column(df[label], f"label column {label!r}")
    return x, y


def _column(series: pd.Series, what: str) -> np.ndarray:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        if series.isna().any():
            raise TrainingDataError(f"{what} has missing values: Grid does not fill them in")
        return series.to_numpy(dtype=bool)
    if pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_float_dtype(dtype):
        # Nullable integer columns hold pd.NA; read them as floats so a gap shows as NaN.
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        if pd.api.types.is_integer_dtype(dtype) and not series.isna().any():
            values = series.to_numpy(dtype="int64")
        return _numeric(values, what)
    raise TrainingDataError(
        f"{what} holds {dtype} values: Grid trains on numbers and bools only, so encode or drop it"
    )


def _from_arrays(
    arrays: Mapping[str, np.ndarray], label: str, integer: bool
) -> tuple[np.ndarray, np.ndarray]:
    if label not in arrays:
        raise TrainingDataError(
            f"label {label!r} is not an array of the data; its arrays: {', '.join(arrays)}"
        )
    names = sorted(k for k in arrays if k != label)
    if not names:
        raise TrainingDataError(f"the data has no array besides the label {label!r}")
    rows = {k: np.asarray(arrays[k]).shape[0] if np.asarray(arrays[k]).ndim else 0 for k in arrays}
    if len(set(rows.values())) > 1:
        raise TrainingDataError(
            f"the arrays {', '.join(map(repr, arrays))} must have the same number of rows; "
            "they do not"
        )
    if rows[label] == 0:
        raise TrainingDataError("the data has no rows")
    parts = [_numeric(np.asarray(arrays[k]), f"array {k!r}") for k in names]
    if integer:
        parts = [_whole(p, f"array {k!r}") for k, p in zip(names, parts, strict=True)]
    if len(parts) == 1:
        x = parts[0]
    else:
        x = np.concatenate([p.reshape(p.shape[0], -1) for p in parts], axis=1)
    y = _numeric(np.asarray(arrays[label]), f"label array {label!r}")
    return x, y
