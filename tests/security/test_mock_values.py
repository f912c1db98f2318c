"""A data scientist reads a dataset's synthetic mock, looking for values copied from the data.

Each dataset has one row with a planted, recognizable value (98765.4321) that is also its
column's maximum, in a column spread so that a mock clipped to the private range would land on
it again and again. The data scientist reads the mock and the schema through the client.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import grid_cli as grid
from tests.grid_cli.conftest import owner  # noqa: F401

PLANTED = 98765.4321
PLANTED_INT = 98765432
SCIENTIST, PASSWORD = "curious@example.org", "curious-password-1"


def bimodal(rng: np.random.Generator, low: float, high: float, rows: int) -> np.ndarray:
    """Half the rows near `low`, half just under `high`: the maximum sits one deviation above
    the mean, where a clipped normal would pile up draws."""
    half = rows // 2
    return np.concatenate(
        [rng.uniform(low, 4 * low, half), rng.uniform(0.98 * high, 0.999 * high, rows - half)]
    )


@pytest.fixture
def scientist(
    owner: grid.DomainClient,  # noqa: F811
    tmp_path: Path,
) -> Iterator[tuple[grid.DomainClient, dict[str, np.ndarray]]]:
    """The owner's datasets with planted values, and a data scientist signed in to read them."""
    rng = np.random.default_rng()
    rows = 100
    table = pd.DataFrame(
        {
            "charge": bimodal(rng, 20.0, PLANTED, rows),
            "visits": bimodal(rng, 3.0, PLANTED_INT, rows).astype(np.int64),
            "ward": rng.choice(["north", "south", "east"], rows),
        }
    )
    table.loc[7, "charge"] = PLANTED
    table.loc[7, "visits"] = PLANTED_INT
    table.to_csv(tmp_path / "charges.csv", index=False)
    owner.upload_dataset("charges", tmp_path / "charges.csv", progress=False)

    # A small table whose label is a measurement: 30 distinct values, the planted one among them.
    target = pd.DataFrame(
        {"dose": rng.uniform(0, 1, 30), "response": np.round(rng.uniform(0, 9, 30), 2)}
    )
    target.loc[3, "response"] = PLANTED
    target.to_csv(tmp_path / "responses.csv", index=False)
    owner.upload_dataset("responses", tmp_path / "responses.csv", label="response", progress=False)

    images = bimodal(rng, 0.1, PLANTED, rows * 4).reshape(rows, 2, 2).astype(np.float32)
    images[5, 1, 0] = np.float32(PLANTED)
    buffer = io.BytesIO()
    np.savez(buffer, x=images, y=rng.integers(0, 3, rows))
    (tmp_path / "scans.npz").write_bytes(buffer.getvalue())
    owner.upload_dataset("scans", tmp_path / "scans.npz", label="y", progress=False)

    owner.create_user(SCIENTIST, PASSWORD, role="data_scientist")
    curious = grid.login(owner.url, SCIENTIST, PASSWORD)
    private = {
        "charge": table["charge"].to_numpy(),
        "ward": table["ward"].to_numpy(),
        "response": target["response"].to_numpy(),
        "x": images,
    }
    yield curious, private
    curious.close()


def test_a_synthetic_mock_never_contains_an_exact_private_value(
    scientist: tuple[grid.DomainClient, dict[str, np.ndarray]],
) -> None:
    ds, private = scientist

    table = ds.datasets["charges"].mock
    assert len(table) == 100
    assert PLANTED not in set(table["charge"])
    assert PLANTED_INT not in set(table["visits"])
    # Not the planted value, and no other private float either: the minimum included.
    assert not set(table["charge"]) & set(private["charge"])
    assert not set(table["ward"]) & set(private["ward"])  # placeholders, never the names

    responses = ds.datasets["responses"]
    assert responses.schema.label_classes is None  # a measured label is not published as classes
    assert PLANTED not in set(responses.mock["response"])
    assert not set(responses.mock["response"]) & set(private["response"])

    scans = ds.datasets["scans"].mock["x"]
    assert scans.shape == (100, 2, 2) and scans.dtype == np.float32
    assert np.float32(PLANTED) not in scans
    assert not np.isin(scans, private["x"]).any()
