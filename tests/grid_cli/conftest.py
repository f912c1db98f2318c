"""Fixtures for the client and CLI tests: data files, a signed-in owner, a CLI runner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
import pytest
from click.testing import CliRunner, Result

import grid_cli as grid
from grid_cli.commands.app import main
from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD

DIGITS_CSV = "f0,f1,f2,target\n" + "".join(
    f"{i % 7},{(i * 3) % 11},{i / 4:.2f},{i % 3}\n" for i in range(30)
)
RAGGED_CSV = "a,b,c\n1,2,3\n4,5\n"


@pytest.fixture
def digits_csv(tmp_path: Path) -> Path:
    path = tmp_path / "digits_a.csv"
    path.write_text(DIGITS_CSV)
    return path


@pytest.fixture
def ragged_csv(tmp_path: Path) -> Path:
    path = tmp_path / "ragged.csv"
    path.write_text(RAGGED_CSV)
    return path


@pytest.fixture
def arrays_npz(tmp_path: Path) -> Path:
    path = tmp_path / "images.npz"
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x=rng.normal(size=(20, 4, 4)).astype(np.float32),
        y=np.arange(20, dtype=np.int64) % 4,
    )
    return path


@pytest.fixture
def owner(live_domain: str) -> Iterator[grid.DomainClient]:
    client = grid.login(live_domain, OWNER_EMAIL, OWNER_PASSWORD)
    yield client
    client.close()


class RunGrid(Protocol):
    def __call__(self, *args: str, input: str | None = None) -> Result: ...


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    return tmp_path / "config"


@pytest.fixture
def run_grid(config_dir: Path) -> RunGrid:
    """Invoke `grid ARGS…` in-process with its own config dir and no inherited login settings."""
    runner = CliRunner()
    env: dict[str, str | None] = {
        "GRID_CONFIG_DIR": str(config_dir),
        "GRID_URL": None,
        "GRID_PASSWORD": None,
    }

    def run(*args: str, input: str | None = None) -> Result:
        # catch_exceptions=False: a traceback is a bug, so it must fail the test loudly.
        return runner.invoke(main, list(args), input=input, env=env, catch_exceptions=False)

    return run
