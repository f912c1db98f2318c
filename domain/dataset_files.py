"""Inspect uploaded dataset files, synthesize privacy-safe mocks of them and read mocks as JSON."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from grid_common.datafiles import DatasetFileError, load_arrays, read_table
from grid_common.schemas import ColumnSchema, DatasetFormat, DatasetSchema, MockSample
from grid_common.training_data import TrainingDataError, example_features

EXTENSIONS: dict[str, DatasetFormat] = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".npz": "npz",
    ".safetensors": "safetensors",
}
MAX_LABEL_CLASSES = 50
MAX_PLACEHOLDERS = 20
# Rounds of redrawing the few draws that land on a private value or outside the column's range;
# each round keeps most draws, so the bound is only a guard against a degenerate column.
_REDRAWS = 100
TABLE_METHOD = (
    "independent per-column normal (mean, std; never clipped to the private min/max, no float "
    "equal to a private value, non-negative columns kept so; ints rounded), bools Bernoulli(p), "
    "strings as placeholder tokens, label drawn from its class values"
)
ARRAY_METHOD = (
    "independent per-array normal (mean, std over all elements; never clipped to the private "
    "min/max, no float equal to a private value, non-negative arrays kept so; ints rounded), "
    "bools Bernoulli(p), strings as placeholder tokens, label drawn from its class values"
)


def detect_format(filename: str) -> DatasetFormat:
    """The dataset format implied by the file name's extension."""
    fmt = EXTENSIONS.get(Path(filename).suffix.lower())
    if fmt is None:
        raise DatasetFileError(
            f"cannot tell the format of {filename!r}: name it with one of "
            + ", ".join(EXTENSIONS)
            + ", or .zip for PNG/JPEG images with a labels.csv"
        )
    return fmt


def input_shape(schema: DatasetSchema, label: str | None) -> list[int] | None:
    """Per-row shape of the features a model trains on with `label`, or None without one (or
    when nothing but the label is left to train on)."""
    if label is None:
        return None
    try:
        return list(example_features(schema, label, rows=1).shape[1:])
    except TrainingDataError:
        return None


def _dtype_name(dtype: Any) -> str:
    # CSV cannot carry widths or nullability, so name dtypes by their numpy equivalent and fold
    # every text/object/other dtype (pandas 2 object, pandas 3 str) into one "string".
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_float_dtype(dtype):
        return np.dtype(getattr(dtype, "numpy_dtype", dtype)).name
    return "string"


def _check_csv_rows(path: Path) -> None:
    # pandas would silently pad short rows with NaN and misalign long ones; refuse them instead.
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next((row for row in reader if row), None)
            if header is None:
                raise DatasetFileError("the CSV file is empty: it needs a header line and rows")
            seen: set[str] = set()
            for i, name in enumerate(header, start=1):
                # pandas would rename these ("Unnamed: 1", "a.1"), so the schema would lie.
                if not name.strip():
                    raise DatasetFileError(f"header column {i} has no name: name every column")
                if name in seen:
                    raise DatasetFileError(f"column {name!r} appears twice in the header")
                seen.add(name)
            rows = 0
            for row in reader:
                if not row:
                    continue  # pandas skips blank lines too
                rows += 1
                if len(row) != len(header):
                    raise DatasetFileError(
                        f"line {reader.line_num} has {len(row)} fields, the header has "
                        f"{len(header)}: give every line one field per column"
                    )
    except UnicodeDecodeError as e:
        raise DatasetFileError(f"the CSV file is not UTF-8 text: {e}") from e
    except csv.Error as e:
        raise DatasetFileError(f"not a valid CSV file (line {reader.line_num}): {e}") from e
    if rows == 0:
        raise DatasetFileError("the CSV file has a header but no rows")


def _array_columns(arrays: dict[str, np.ndarray]) -> tuple[list[ColumnSchema], int]:
    for key, arr in arrays.items():
        if arr.ndim == 0:
            raise DatasetFileError(f"array {key!r} is 0-d: give it a first dimension of rows")
        if arr.dtype.kind not in "biufUS":
            raise DatasetFileError(
                f"array {key!r} has dtype {arr.dtype}: use a bool, integer, float or string dtype"
            )
    lengths = {key: arr.shape[0] for key, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{k!r} has {n}" for k, n in lengths.items())
        raise DatasetFileError(f"arrays must share their first dimension (rows): {listed}")
    columns = [
        ColumnSchema(name=k, dtype=str(a.dtype), shape=list(a.shape[1:]), magnitude=magnitude(a))
        for k, a in arrays.items()
    ]
    return columns, next(iter(lengths.values()))


def inspect_dataset(path: Path, fmt: DatasetFormat, label: str | None) -> DatasetSchema:
    """Validate the file and describe its columns (or arrays), dtypes and row count."""
    labels: np.ndarray | None = None
    if fmt in ("csv", "parquet"):
        if fmt == "csv":
            _check_csv_rows(path)
        df = read_table(path, fmt)
        columns = [
            ColumnSchema(
                name=c, dtype=_dtype_name(df[c].dtype), magnitude=magnitude(df[c].to_numpy())
            )
            for c in df.columns
        ]
        row_count = len(df)
        if label in df.columns:
            labels = df[label].dropna().to_numpy()
    else:
        arrays = load_arrays(path, fmt)
        columns, row_count = _array_columns(arrays)
        if label in arrays and arrays[label].ndim == 1:
            labels = arrays[label]
    if row_count == 0:
        raise DatasetFileError(f"the {fmt} file has no rows")
    names = [c.name for c in columns]
    if label is not None and label not in names:
        raise DatasetFileError(
            f"label {label!r} is not a column of the file; available: {', '.join(names)}"
        )
    classes = label_classes(labels) if labels is not None else None
    return DatasetSchema(format=fmt, columns=columns, row_count=row_count, label_classes=classes)


def magnitude(values: np.ndarray) -> int | None:
    """The power of two nearest a numeric column's root mean square (None for other columns).

    Published as schema: an order of magnitude over all rows, coarser than what the synthetic
    mock shows. Federated analytics divides its sums by it so they travel at similar sizes.
    """
    if values.dtype.kind not in "biuf" or values.ndim != 1:
        return None
    finite = values.astype(np.float64)
    finite = finite[np.isfinite(finite)]
    rms = float(np.sqrt(np.mean(finite * finite))) if finite.size else 0.0
    return int(np.clip(np.round(np.log2(rms)), -250, 250)) if rms > 0 else 0


def label_classes(values: np.ndarray) -> list[int | float | str] | None:
    """The label's distinct values when it has at most MAX_LABEL_CLASSES: public schema, which
    federated analytics lays per-class sums out by. Missing values are left out, and a numeric
    label with a fractional value is a measurement (a regression target), not classes."""
    if values.dtype.kind == "b":
        values = values.astype(np.int64)
    if values.dtype.kind in "iuf":
        found = _classes(values)
        return found.tolist() if found is not None else None
    text = np.unique(np.asarray([str(v) for v in values if v is not None], dtype=str))
    return text.tolist() if 0 < len(text) <= MAX_LABEL_CLASSES else None


def _classes(values: np.ndarray) -> np.ndarray | None:
    # Label classes are public schema, so a small class set may be reproduced verbatim. Only
    # whole numbers are classes: a small table's measured target (98765.4321) would otherwise
    # be published, and copied into its mock, row by row.
    if values.dtype.kind not in "iuf":
        return None
    classes = np.unique(values[~np.isnan(values)] if values.dtype.kind == "f" else values)
    if values.dtype.kind == "f" and not np.all(np.isfinite(classes) & (classes % 1 == 0)):
        return None
    return classes if 0 < len(classes) <= MAX_LABEL_CLASSES else None


def _numeric(
    values: np.ndarray, size: tuple[int, ...], rng: np.random.Generator, dtype: np.dtype[Any]
) -> np.ndarray:
    """Draws for a bool or numeric column of `dtype`, shaped by aggregate statistics only.

    Normal draws with the column's mean and standard deviation, never clipped to its private
    minimum or maximum (clipping piles draws up on exactly those values). A column without a
    negative value gets none (only that one bit about its minimum shows). A float draw that
    equals a private value, compared as the mock stores it, is drawn again, so no float in the
    mock is a private value. Integers are rounded draws: one may equal an integer in the data,
    but how often depends only on the mean and deviation, never on whether a row holds it, so
    rejecting those would be what gives rows away. A float that cannot be drawn apart from the
    private values within `_REDRAWS` rounds stays missing.
    """
    if dtype.kind == "b":
        return rng.random(size) < (values.mean() if values.size else 0.5)
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values.ravel()
    if finite.size == 0:
        return np.full(size, np.nan)
    mean, spread = float(finite.mean(dtype=np.float64)), float(finite.std(dtype=np.float64))
    # One distinct value: its mean is that value, so the draws spread around it instead.
    spread = spread or abs(mean) or 1.0
    integral = dtype.kind in "iu"
    info = np.iinfo(dtype) if integral else np.finfo(dtype)
    lowest = max(0.0, float(info.min)) if float(finite.min()) >= 0 else float(info.min)
    private = None if integral else np.unique(finite.astype(dtype))
    out = np.full(int(np.prod(size)), np.nan)
    pending = np.arange(out.size)
    for _ in range(_REDRAWS):
        if pending.size == 0:
            break
        draws = rng.normal(mean, spread, pending.size)
        if integral:
            draws = np.rint(draws)
        keep = (draws >= lowest) & (draws <= float(info.max))
        if private is not None:
            keep[keep] = ~np.isin(draws[keep].astype(dtype), private)
        out[pending[keep]] = draws[keep]
        pending = pending[~keep]
    return out.reshape(size)


def _placeholders(name: str, distinct: int, size: tuple[int, ...], rng: np.random.Generator) -> Any:
    k = rng.integers(0, max(1, min(distinct, MAX_PLACEHOLDERS)), size)
    return np.char.add(f"{name}_", k.astype(str))


def synthesize_mock(
    path: Path, schema: DatasetSchema, rows: int, *, label: str | None = None
) -> tuple[bytes, DatasetFormat, str]:
    """A synthetic mock with the dataset's schema built from per-column statistics only."""
    rows = min(rows, schema.row_count)
    if rows < 1:
        raise ValueError("a mock needs at least one row")
    # Fresh OS entropy: with a known seed the published mock would hand back the exact mean and
    # deviation, and show which draws were redrawn for equalling a private value.
    rng = np.random.default_rng()
    if schema.format in ("csv", "parquet"):
        df = read_table(path, schema.format)
        out: dict[str, Any] = {}
        for col in df.columns:
            s = df[col]
            dtype = _dtype_name(s.dtype)
            if dtype == "string":
                values = _placeholders(col, int(s.nunique()), (rows,), rng).astype(object)
            elif dtype == "bool":
                values = _numeric(s.to_numpy(dtype=bool), (rows,), rng, np.dtype(bool))
            else:
                raw = s.to_numpy(dtype="float64", na_value=np.nan)
                classes = _classes(raw) if col == label else None
                # The mock is CSV: its floats are float64 whatever width the file had.
                stored = np.dtype(dtype if dtype.startswith(("int", "uint")) else "float64")
                values = (
                    rng.choice(classes, rows)
                    if classes is not None
                    else _numeric(raw, (rows,), rng, stored)
                )
                if dtype.startswith(("int", "uint")):
                    values = np.rint(values).astype(dtype)
            missing = float(s.isna().mean())
            if missing and dtype != "bool":
                values = np.where(rng.random(rows) < missing, None, values.astype(object))
            out[col] = values
        return pd.DataFrame(out).to_csv(index=False).encode(), "csv", TABLE_METHOD
    arrays = load_arrays(path, schema.format)
    mock: dict[str, np.ndarray] = {}
    for key, arr in arrays.items():
        size = (rows, *arr.shape[1:])
        if arr.dtype.kind in "US":
            mock[key] = _placeholders(key, len(np.unique(arr)), size, rng)
            continue
        classes = _classes(arr) if key == label else None
        drawn = (
            rng.choice(classes, size)
            if classes is not None
            else _numeric(arr, size, rng, arr.dtype)
        )
        mock[key] = drawn.astype(arr.dtype)
    buf = io.BytesIO()
    np.savez(buf, **cast(dict[str, Any], mock))
    return buf.getvalue(), "npz", ARRAY_METHOD


def _json_value(v: Any) -> Any:
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
        return None
    return v if isinstance(v, bool | int | float | str) else str(v)


def _json_array(arr: np.ndarray) -> Any:
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        obj = arr.astype(object)
        obj[np.isnan(arr)] = None
        return obj.tolist()
    return arr.tolist()


def read_mock(path: Path, fmt: DatasetFormat, synthetic: bool, max_rows: int = 1000) -> MockSample:
    """The first `max_rows` rows of a mock file as JSON-ready values."""
    if fmt in ("csv", "parquet"):
        df = read_table(path, fmt).head(max_rows)
        return MockSample(
            kind="table",
            synthetic=synthetic,
            columns={c: [_json_value(v) for v in df[c].tolist()] for c in df.columns},
            dtypes={c: _dtype_name(df[c].dtype) for c in df.columns},
        )
    arrays = load_arrays(path, fmt)
    return MockSample(
        kind="arrays",
        synthetic=synthetic,
        arrays={k: _json_array(a[:max_rows]) for k, a in arrays.items()},
        dtypes={k: str(a.dtype) for k, a in arrays.items()},
    )


def _kind(dtype: str) -> str:
    try:
        return "S" if dtype == "string" else np.dtype(dtype).kind.replace("U", "S")
    except TypeError:
        return "O"


def _iter_differences(schema: DatasetSchema, mock: DatasetSchema) -> Iterator[str]:
    theirs = {c.name: c for c in mock.columns}
    ours = {c.name for c in schema.columns}
    for col in schema.columns:
        m = theirs.get(col.name)
        if m is None:
            yield f"the mock has no column {col.name!r} (it has: {', '.join(theirs)})"
            continue
        mk, sk = _kind(m.dtype), _kind(col.dtype)
        # Widths differ between formats (CSV is always 64-bit) and an int mock fits a float column.
        if not (m.dtype == col.dtype or mk == sk != "O" or (mk in "iu" and sk in "iuf")):
            yield f"column {col.name!r} is {m.dtype} in the mock but {col.dtype} in the dataset"
        if m.shape != col.shape:
            yield f"column {col.name!r} has per-row shape {m.shape} in the mock, {col.shape} here"
    for name in theirs.keys() - ours:
        yield f"the mock has a column {name!r} that the dataset does not have"


def check_mock_matches(schema: DatasetSchema, mock: DatasetSchema) -> None:
    """Refuse an owner-uploaded mock whose columns, dtypes or shapes differ from the dataset's."""
    first = next(_iter_differences(schema, mock), None)
    if first is not None:
        raise DatasetFileError(f"{first}: the mock must have the dataset's schema")
