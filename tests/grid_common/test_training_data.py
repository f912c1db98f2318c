"""Feature and label arrays from tables and named arrays, and targets per loss."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from grid_common.training_data import TrainingDataError, targets_for_loss, training_arrays


def test_table_features_keep_the_file_order() -> None:
    df = pd.DataFrame({"b": [1, 2], "label": [0, 1], "a": [0.5, 1.5], "flag": [True, False]})
    x, y = training_arrays(df, "label")
    assert x.dtype == np.float32
    assert x.tolist() == [[1.0, 0.5, 1.0], [2.0, 1.5, 0.0]]
    assert y.tolist() == [0, 1]


def test_nullable_integer_columns_without_gaps() -> None:
    df = pd.DataFrame({"a": pd.array([1, 2], dtype="Int64"), "y": [0, 1]})
    x, _ = training_arrays(df, "y")
    assert x.tolist() == [[1.0], [2.0]]


@pytest.mark.parametrize(
    ("df", "message"),
    [
        (pd.DataFrame({"a": [1], "y": [0]}), "label 'z' is not a column of the data; its columns"),
        (pd.DataFrame({"z": [1, 2]}), "no column besides the label 'z'"),
        (pd.DataFrame({"a": [], "z": []}, dtype=float), "no rows"),
        (pd.DataFrame({"name": ["x", "y"], "z": [0, 1]}), "column 'name' holds"),
        (pd.DataFrame({"a": [1.0, np.nan], "z": [0, 1]}), "column 'a' has missing values"),
        (pd.DataFrame({"a": [1.0, 2.0], "z": ["cat", "dog"]}), "label column 'z' holds"),
        (
            pd.DataFrame({"a": pd.array([1, None], dtype="Int64"), "z": [0, 1]}),
            "column 'a' has missing values",
        ),
    ],
)
def test_table_errors_name_the_column(df: pd.DataFrame, message: str) -> None:
    with pytest.raises(TrainingDataError, match=message):
        training_arrays(df, "z")


def test_one_array_is_taken_as_it_is() -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    x, y = training_arrays({"images": images, "label": np.array([1, 0])}, "label")
    assert x.shape == (2, 3, 4) and x.dtype == np.float32
    assert y.tolist() == [1, 0]


def test_several_arrays_are_flattened_and_joined_in_name_order() -> None:
    arrays = {
        "z": np.array([[1, 2], [3, 4]]),
        "a": np.array([[[5], [6]], [[7], [8]]]),
        "y": np.array([0.5, 1.5]),
    }
    x, y = training_arrays(arrays, "y")
    assert x.tolist() == [[5, 6, 1, 2], [7, 8, 3, 4]]
    assert y.dtype == np.float64


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((2, 2))}, "label 'y' is not an array of the data; its arrays: x"),
        ({"y": np.zeros(2)}, "no array besides the label 'y'"),
        (
            {"x": np.zeros((3, 2)), "y": np.zeros(2)},
            "arrays 'x', 'y' must have the same number of rows; they do not",
        ),
        ({"x": np.array([["a"], ["b"]]), "y": np.zeros(2)}, "array 'x' has dtype <U1"),
        ({"x": np.array([[np.nan], [1.0]]), "y": np.zeros(2)}, "array 'x' has missing values"),
        ({"x": np.zeros((0, 2)), "y": np.zeros(0)}, "no rows"),
    ],
)
def test_array_errors_name_the_array(arrays: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(TrainingDataError, match=message):
        training_arrays(arrays, "y")


def test_targets_per_loss() -> None:
    labels = np.array([0.0, 2.0, 1.0])
    classes = targets_for_loss(labels, "cross_entropy")
    assert classes.dtype == np.int64 and classes.tolist() == [0, 2, 1]
    assert targets_for_loss(np.array([[1], [0]]), "cross_entropy").tolist() == [1, 0]
    assert targets_for_loss(np.array([True, False]), "cross_entropy").tolist() == [1, 0]
    assert targets_for_loss(labels, "mse").dtype == np.float32
    assert targets_for_loss(np.array([0, 1]), "bce_with_logits").dtype == np.float32


@pytest.mark.parametrize(
    ("labels", "loss", "message"),
    [
        (np.array([0.5, 1.0]), "cross_entropy", "whole-number class labels"),
        (np.array([-1, 1]), "cross_entropy", "from 0 up; some labels are negative"),
        (np.zeros((2, 3)), "cross_entropy", r"one class index per row.*\[3\]"),
        (
            np.array([0.0, 2.0]),
            "bce_with_logits",
            "between 0 and 1; some labels are outside that range",
        ),
    ],
)
def test_targets_that_do_not_fit_the_loss(labels: np.ndarray, loss: str, message: str) -> None:
    with pytest.raises(TrainingDataError, match=message):
        targets_for_loss(labels, loss)  # type: ignore[arg-type]
