"""Models people bring pass the archive check at filing; their inputs keep the dtype they were
exported with (int64 token ids for an nn.Embedding, float32 for the rest)."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from grid_cli.client.export import ModelCheckError, model_rows
from grid_common.model_archive import ModelArchiveError, inspect_archive, save_for_training
from grid_common.training_data import TrainingDataError, training_arrays
from tests import models

pytestmark = pytest.mark.filterwarnings("ignore:The tensor attributes self.rnn._flat_weights")
PIXELS = np.arange(4 * 64).reshape(4, 64) % 17  # whole numbers, as digits' pixels are


@pytest.fixture(scope="module")
def attention_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("attention") / "model.pt2"
    save_for_training(models.attention(), torch.from_numpy(PIXELS.astype(np.float32)), path)
    return path


def test_an_attention_model_with_shape_arithmetic_is_accepted(attention_archive: Path) -> None:
    # The graph holds "Mul(Integer(8), Symbol('s77', ...))" and Min(...) for its reshapes.
    info = inspect_archive(attention_archive)
    assert [(t.shape, t.dtype) for t in info.inputs] == [([None, 64], "float32")]
    assert info.operators["aten.scaled_dot_product_attention.default"] == 1


@pytest.mark.parametrize(
    ("make", "dtype"), [(models.lstm, "float32"), (models.text_classifier, "int64")]
)
def test_recurrent_and_text_models_are_accepted(
    tmp_path: Path, make: Callable[[], nn.Module], dtype: str
) -> None:
    model = make()
    rows = model_rows(model, PIXELS.astype(np.float32))
    info = save_for_training(model, torch.from_numpy(rows), tmp_path / "model.pt2")
    assert [(t.shape, t.dtype) for t in info.inputs] == [([None, 64], dtype)]


def _with_symbol(archive: Path, target: Path, symbol: str) -> Path:
    with zipfile.ZipFile(archive) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    graph = next(name for name in members if name.endswith("models/model.json"))
    members[graph] = members[graph].replace(b"Symbol('s", f"Symbol('{symbol}".encode(), 1)
    json.loads(members[graph])  # still a valid program
    with zipfile.ZipFile(target, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return target


def test_a_shape_symbol_the_program_does_not_declare_is_refused(
    attention_archive: Path, tmp_path: Path
) -> None:
    path = _with_symbol(attention_archive, tmp_path / "edited.pt2", "zz")
    with pytest.raises(ModelArchiveError, match="symbol 'zz77' is not one of the program's"):
        inspect_archive(path)


def test_only_a_model_that_refuses_floats_gets_integer_rows() -> None:
    assert model_rows(models.text_classifier(), PIXELS.astype(np.float32)).dtype == np.int64
    assert model_rows(models.gru(), PIXELS.astype(np.float32)).dtype == np.float32
    # Rows with fractions are never made ids: the model's own error is reported afterwards.
    fractions = PIXELS.astype(np.float32) + 0.5
    assert model_rows(models.text_classifier(), fractions).dtype == np.float32


def test_a_model_that_takes_neither_floats_nor_these_ids_is_told_both() -> None:
    too_small = nn.Sequential(nn.Embedding(4, 2), nn.Flatten(), nn.Linear(128, 10))
    with pytest.raises(ModelCheckError, match=r"neither as float32 \(.*Long.*\) nor as int64 ids"):
        model_rows(too_small, PIXELS.astype(np.float32))


def test_integer_columns_reach_an_integer_model_exactly() -> None:
    big = 2**40 + 1  # beyond float32's whole numbers: ids never pass through float32
    table = pd.DataFrame({"a": [big, 2], "b": [3.0, 4.0], "y": [0, 1]})
    x, _ = training_arrays(table, "y", integer=True)
    assert x.dtype == np.int64 and x.tolist() == [[big, 3], [2, 4]]
    assert training_arrays(table, "y")[0].dtype == np.float32

    with pytest.raises(TrainingDataError, match=r"column 'b' has fractions.*integer ids"):
        training_arrays(table.assign(b=[3.5, 4.0]), "y", integer=True)
    arrays = {"ids": np.array([[1.0, 2.5]]), "y": np.array([0])}
    with pytest.raises(TrainingDataError, match="array 'ids' has fractions"):
        training_arrays(arrays, "y", integer=True)
