"""Fixtures for whole jobs over HTTP: a gunicorn domain with data, its people, worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import load_digits

import grid_cli as grid
from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD, PASSWORD
from tests.worker.live import DS_EMAIL, LEASE_SECONDS, StartWorker


@pytest.fixture
def live_domain_env() -> dict[str, str]:
    return {"GRID_JOB_LEASE_SECONDS": str(LEASE_SECONDS)}


@pytest.fixture
def digits_csv(tmp_path: Path) -> Path:
    digits = load_digits()
    frame = pd.DataFrame(digits.data[:600], columns=[f"p{i}" for i in range(64)])
    frame["target"] = digits.target[:600]
    path = tmp_path / "digits.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def owner(live_domain: str, digits_csv: Path) -> Iterator[grid.DomainClient]:
    client = grid.login(live_domain, OWNER_EMAIL, OWNER_PASSWORD)
    client.upload_dataset("digits-a", digits_csv, label="target", progress=False)
    client.create_user(DS_EMAIL, PASSWORD)
    yield client
    client.close()


@pytest.fixture
def scientist(live_domain: str, owner: grid.DomainClient) -> Iterator[grid.DomainClient]:
    client = grid.login(live_domain, DS_EMAIL, PASSWORD)
    yield client
    client.close()


@pytest.fixture
def start_worker(
    live_domain: str, owner: grid.DomainClient, tmp_path: Path
) -> Iterator[StartWorker]:
    """Start `grid worker start` processes against the live domain (or `domain`, a URL that
    leads to it); all are stopped after."""
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, domain: str | None = None) -> subprocess.Popen[bytes]:
        token = owner.add_worker(name).token
        assert token is not None
        env = {**os.environ, "GRID_WORKER_TOKEN": token}
        log = (tmp_path / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "grid_cli", "worker", "start"),
                *("--domain", domain or live_domain, "--work-dir", str(tmp_path / name)),
                *("--poll-interval", "0.2"),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
