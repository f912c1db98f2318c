"""Tests for inspecting uploaded dataset files and synthesizing and reading their mocks."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import save_file

from domain.dataset_files import (
    DatasetFileError,
    check_mock_matches,
    detect_format,
    inspect_dataset,
    label_classes,
    read_mock,
    synthesize_mock,
)
from grid_common.schemas import ColumnSchema, DatasetFormat, DatasetSchema

PRIVATE_NAMES = ["alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com"]
TABLE = pd.DataFrame(
    {
        "email": PRIVATE_NAMES * 5,
        "age": [23, 35, 47, 59] * 5,
        "score": [0.5, 1.25, np.nan, 3.75] * 5,
        "smoker": [True, False, False, True] * 5,
        "label": [0, 1, 2, 1] * 5,
    }
)
TABLE_DTYPES = {
    "email": "string",
    "age": "int64",
    "score": "float64",
    "smoker": "bool",
    "label": "int64",
}
ARRAYS: dict[str, np.ndarray] = {
    "x": np.random.default_rng(1).normal(5.0, 2.0, (12, 3, 2)).astype(np.float32),
    "y": np.array([0, 1, 3] * 4, dtype=np.int64),
}
unpickled: list[str] = []


class Tripwire:
    """Records in `unpickled` if anything ever unpickles it."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return unpickled.append, ("tripped",)


def write(tmp_path: Path, fmt: DatasetFormat, data: pd.DataFrame | dict[str, np.ndarray]) -> Path:
    path = tmp_path / f"data.{fmt}"
    if isinstance(data, pd.DataFrame):
        if fmt == "csv":
            data.to_csv(path, index=False)
        else:
            data.to_parquet(path, index=False)
    elif fmt == "npz":
        np.savez(path, **data)
    else:
        save_file(data, str(path))
    return path


def write_text(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("filename", "fmt"),
    [
        ("a.csv", "csv"),
        ("A.PARQUET", "parquet"),
        ("b.pq", "parquet"),
        ("dir.v2/c.npz", "npz"),
        ("d.safetensors", "safetensors"),
    ],
)
def test_detect_format(filename: str, fmt: str) -> None:
    assert detect_format(filename) == fmt


@pytest.mark.parametrize("filename", ["data.json", "data", "csv", "data.csv.gz"])
def test_detect_format_refuses_unknown_extensions(filename: str) -> None:
    with pytest.raises(DatasetFileError, match=r"\.csv, \.parquet, \.pq, \.npz, \.safetensors"):
        detect_format(filename)


def shapes(schema: DatasetSchema) -> list[tuple[str, str, list[int]]]:
    """Names, dtypes and per-row shapes: what a mock must share with its dataset."""
    return [(c.name, c.dtype, c.shape) for c in schema.columns]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_table_schema(tmp_path: Path, fmt: DatasetFormat) -> None:
    schema = inspect_dataset(write(tmp_path, fmt, TABLE), fmt, label="label")
    assert schema.format == fmt
    assert schema.row_count == 20
    assert {c.name: c.dtype for c in schema.columns} == TABLE_DTYPES
    assert [c.name for c in schema.columns] == list(TABLE.columns)
    assert all(c.shape == [] for c in schema.columns)
    # Root mean squares: age 43.4 ~ 2^5, score 2.3 ~ 2^1 (missing values left out), smoker
    # 0.71 and label 1.22 ~ 2^0; text has none.
    magnitudes = {c.name: c.magnitude for c in schema.columns}
    assert magnitudes == {"email": None, "age": 5, "score": 1, "smoker": 0, "label": 0}
    assert schema.label_classes == [0, 1, 2]


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_array_schema(tmp_path: Path, fmt: DatasetFormat) -> None:
    schema = inspect_dataset(write(tmp_path, fmt, ARRAYS), fmt, label="y")
    assert schema.row_count == 12
    assert {c.name: (c.dtype, c.shape, c.magnitude) for c in schema.columns} == {
        "x": ("float32", [3, 2], None),
        "y": ("int64", [], 1),
    }
    assert schema.label_classes == [0, 1, 3]


@pytest.mark.parametrize(
    ("values", "classes"),
    [
        (np.array(["b", "a", "b"], dtype=object), ["a", "b"]),
        (np.array([1.0, np.nan, 0.0]), [0.0, 1.0]),
        (np.array([True, False]), [0, 1]),
        (np.array([0.5, 1.0, 2.0]), None),  # a measured target, not classes
        (np.arange(51), None),  # too many to be classes: a continuous label
    ],
)
def test_label_classes_are_published_when_few(values: np.ndarray, classes: list[object]) -> None:
    assert label_classes(values) == classes


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b,c\n1,2,3\n4,5,6,7\n", "line 3 has 4 fields, the header has 3"),
        ("a,b,c\n1,2,3\n\n4,5\n", "line 4 has 2 fields, the header has 3"),
        ('a,b,c\n"multi\nline",2,3\n4,5\n', "line 4 has 2 fields, the header has 3"),
        ("", "empty"),
        ("\n\n", "empty"),
        ("a,b,c\n", "header but no rows"),
        ("a,,c\n1,2,3\n", "header column 2 has no name"),
        ("a,b,a\n1,2,3\n", "column 'a' appears twice"),
    ],
)
def test_bad_csv_is_refused_with_its_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DatasetFileError, match=message):
        inspect_dataset(write_text(tmp_path, text), "csv", label=None)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "npz", "safetensors"])
def test_missing_label_is_named_with_the_available_columns(
    tmp_path: Path, fmt: DatasetFormat
) -> None:
    data = TABLE if fmt in ("csv", "parquet") else ARRAYS
    path = write(tmp_path, fmt, data)
    with pytest.raises(DatasetFileError, match="'target'") as err:
        inspect_dataset(path, fmt, label="target")
    assert all(name in str(err.value) for name in data)


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_arrays_must_share_their_first_dimension(tmp_path: Path, fmt: DatasetFormat) -> None:
    path = write(tmp_path, fmt, {"x": np.zeros((4, 2)), "y": np.zeros(5)})
    with pytest.raises(DatasetFileError, match="'x' has 4, 'y' has 5"):
        inspect_dataset(path, fmt, label=None)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros(3), "n": np.array(7)}, "'n' is 0-d"),
        ({"z": np.zeros((3, 2), dtype=np.complex64)}, "'z' has dtype complex64"),
        ({"x": np.zeros((0, 2))}, "no rows"),
        ({}, "no arrays"),
    ],
)
def test_unusable_npz_arrays_are_refused(
    tmp_path: Path, arrays: dict[str, np.ndarray], message: str
) -> None:
    with pytest.raises(DatasetFileError, match=message):
        inspect_dataset(write(tmp_path, "npz", arrays), "npz", label=None)


def test_object_npz_is_refused_without_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, ok=np.zeros(2), evil=np.array([Tripwire(), Tripwire()], dtype=object))
    for read in (
        lambda: inspect_dataset(path, "npz", label=None),
        lambda: read_mock(path, "npz", synthetic=False),
    ):
        with pytest.raises(DatasetFileError, match="'evil' holds pickled Python objects"):
            read()
    assert unpickled == []


@pytest.mark.parametrize(
    ("fmt", "content"),
    [
        ("parquet", b"PAR1 this is not parquet at all PAR1"),
        ("parquet", b"a,b\n1,2\n"),
        ("npz", b"PK\x03\x04 truncated zip"),
        ("npz", b"\x80\x04\x95 a pickle, not an npz"),
        ("safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}"),
        ("csv", b"a,b\n\xff\xfe,2\n"),
    ],
)
def test_corrupt_files_raise_dataset_file_errors(
    tmp_path: Path, fmt: DatasetFormat, content: bytes
) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(content)
    with pytest.raises(DatasetFileError, match=f"not (a valid {fmt} file|UTF-8)"):
        inspect_dataset(path, fmt, label=None)


def test_a_bare_npy_is_not_an_npz(tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    np.save(path.with_suffix(".npy"), np.zeros(3))
    path.with_suffix(".npy").rename(path)
    with pytest.raises(DatasetFileError, match="not a valid npz file"):
        inspect_dataset(path, "npz", label=None)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_table_mock_keeps_the_schema_and_none_of_the_values(
    tmp_path: Path, fmt: DatasetFormat
) -> None:
    path = write(tmp_path, fmt, TABLE)
    schema = inspect_dataset(path, fmt, label="label")
    data, mock_fmt, method = synthesize_mock(path, schema, rows=15, label="label")
    assert mock_fmt == "csv"
    assert "normal" in method
    assert all(name.encode() not in data for name in PRIVATE_NAMES)
    mock_path = write_text(tmp_path, data.decode(), "mock.csv")
    mock_schema = inspect_dataset(mock_path, "csv", label="label")
    assert shapes(mock_schema) == shapes(schema)
    assert mock_schema.row_count == 15
    mock = pd.read_csv(mock_path)
    assert set(mock["email"]) <= {f"email_{k}" for k in range(4)}
    assert (mock["age"] >= 0).all()  # no private age is negative, so no mock age is
    assert set(mock["label"]) <= {0, 1, 2}
    assert mock["score"].isna().any()
    assert (mock["score"].dropna() >= 0).all()
    # No private score, its min and max included, is ever copied.
    assert not set(mock["score"].dropna()) & {0.5, 1.25, 3.75}
    # Each mock is drawn from fresh OS entropy, never from a seed anyone could replay.
    again, _, _ = synthesize_mock(path, schema, rows=15, label="label")
    assert again != data


def test_mock_rows_are_capped_at_the_dataset_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "csv", TABLE)
    schema = inspect_dataset(path, "csv", label=None)
    data, _, _ = synthesize_mock(path, schema, rows=1000)
    assert len(pd.read_csv(io.BytesIO(data))) == 20


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_array_mock_keeps_dtypes_and_shapes(tmp_path: Path, fmt: DatasetFormat) -> None:
    path = write(tmp_path, fmt, ARRAYS)
    schema = inspect_dataset(path, fmt, label="y")
    data, mock_fmt, method = synthesize_mock(path, schema, rows=5, label="y")
    assert (mock_fmt, "normal" in method) == ("npz", True)
    mock_path = tmp_path / "mock.npz"
    mock_path.write_bytes(data)
    mock_schema = inspect_dataset(mock_path, "npz", label="y")
    assert shapes(mock_schema) == shapes(schema)
    assert mock_schema.row_count == 5
    with np.load(mock_path, allow_pickle=False) as mock:
        x, y = mock["x"], mock["y"]
    assert not np.isin(x, ARRAYS["x"]).any()  # min and max included
    assert set(y.tolist()) <= {0, 1, 3}


def test_mocks_of_degenerate_columns_copy_no_value_and_keep_their_dtype(tmp_path: Path) -> None:
    # A constant column (its mean is its value), one row, small unsigned and signed integers.
    arrays = {
        "constant": np.full((6, 2), 7.25, dtype=np.float32),
        "pixels": np.array([0, 255, 255, 254, 253, 255], dtype=np.uint8),
        "delta": np.array([-128, 127, 0, 1, -1, 5], dtype=np.int8),
    }
    path = write(tmp_path, "npz", arrays)
    data, _, _ = synthesize_mock(path, inspect_dataset(path, "npz", label=None), rows=6)
    with np.load(io.BytesIO(data), allow_pickle=False) as mock:
        assert not np.isin(mock["constant"], [7.25]).any() and np.isfinite(mock["constant"]).all()
        assert mock["pixels"].dtype == np.uint8 and mock["delta"].dtype == np.int8
    single = write_text(tmp_path, "charge\n98765.4321\n", "single.csv")
    data, _, _ = synthesize_mock(single, inspect_dataset(single, "csv", label=None), rows=5)
    assert 98765.4321 not in set(pd.read_csv(io.BytesIO(data))["charge"])


def test_string_arrays_get_placeholders(tmp_path: Path) -> None:
    path = write(tmp_path, "npz", {"name": np.array(PRIVATE_NAMES)})
    schema = inspect_dataset(path, "npz", label=None)
    data, _, _ = synthesize_mock(path, schema, rows=4)
    with np.load(io.BytesIO(data), allow_pickle=False) as mock:
        assert set(mock["name"].tolist()) <= {f"name_{k}" for k in range(4)}


def test_read_mock_table_is_json_ready(tmp_path: Path) -> None:
    sample = read_mock(write(tmp_path, "parquet", TABLE), "parquet", synthetic=False, max_rows=4)
    assert sample.kind == "table"
    assert sample.synthetic is False
    assert sample.columns["score"] == [0.5, 1.25, None, 3.75]
    assert sample.columns["email"] == PRIVATE_NAMES
    assert sample.columns["smoker"] == [True, False, False, True]
    assert sample.dtypes == TABLE_DTYPES


def test_read_mock_arrays_are_nested_lists(tmp_path: Path) -> None:
    x = np.array([[1.0, np.nan], [3.0, 4.0], [5.0, 6.0]], dtype=np.float32)
    sample = read_mock(write(tmp_path, "npz", {"x": x}), "npz", synthetic=True, max_rows=2)
    assert (sample.kind, sample.synthetic) == ("arrays", True)
    assert sample.arrays == {"x": [[1.0, None], [3.0, 4.0]]}
    assert sample.dtypes == {"x": "float32"}


def schema_of(*columns: tuple[str, str, list[int]]) -> DatasetSchema:
    cols = [ColumnSchema(name=n, dtype=d, shape=s) for n, d, s in columns]
    return DatasetSchema(format="npz", columns=cols, row_count=10)


DATASET = schema_of(("x", "float32", [3]), ("y", "int64", []), ("name", "string", []))


@pytest.mark.parametrize(
    ("mock", "message"),
    [
        (
            schema_of(("x", "float32", [3]), ("target", "int64", []), ("name", "string", [])),
            "no column 'y'",
        ),
        (schema_of(("x", "float32", [3]), ("y", "int64", [])), "no column 'name'"),
        (
            schema_of(("x", "float32", [4]), ("y", "int64", []), ("name", "string", [])),
            r"'x' has per-row shape \[4\]",
        ),
        (
            schema_of(("x", "float32", [3]), ("y", "float64", []), ("name", "string", [])),
            "'y' is float64 in the mock but int64",
        ),
        (
            schema_of(("x", "string", [3]), ("y", "int64", []), ("name", "string", [])),
            "'x' is string in the mock but float32",
        ),
        (
            schema_of(("x", "float32", [3]), ("y", "int64", []), ("name", "bool", [])),
            "'name' is bool",
        ),
        (
            schema_of(
                ("x", "float32", [3]), ("y", "int64", []), ("name", "string", []), ("z", "bool", [])
            ),
            "column 'z' that the dataset does not have",
        ),
    ],
)
def test_check_mock_matches_names_the_first_difference(mock: DatasetSchema, message: str) -> None:
    with pytest.raises(DatasetFileError, match=message):
        check_mock_matches(DATASET, mock)


@pytest.mark.parametrize(
    "mock",
    [
        DATASET,
        schema_of(("x", "int64", [3]), ("y", "int32", []), ("name", "<U12", [])),
        schema_of(("x", "float64", [3]), ("y", "uint8", []), ("name", "string", [])),
    ],
)
def test_check_mock_matches_accepts_compatible_mocks(mock: DatasetSchema) -> None:
    check_mock_matches(DATASET, mock)
