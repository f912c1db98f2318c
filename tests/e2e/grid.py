"""A whole grid in real processes for end-to-end tests: a network, domains, their workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
from sklearn.datasets import load_digits

import grid_cli as grid
from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD, free_port, wait_for_http

OPERATOR_EMAIL = "operator@example.org"
OPERATOR_PASSWORD = "operator-password"
DS_EMAIL = "fl-scientist@example.org"
DS_PASSWORD = "fl-scientist-password"
T = TypeVar("T")


def eventually(check: Callable[[], T], what: str, deadline_s: float = 60) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Process:
    """A node under gunicorn (or any command) on a fixed loopback port, restartable."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path, health: str) -> None:
        self.command, self.env, self.log_path, self.health = command, env, log, health
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command,
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if self.health:
            wait_for_http(self.health, self.process)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Stop the process and everything it started (a worker's training child too)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)


def _gunicorn(module: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
        "--threads", "8", "--preload", f"{module}.wsgi:app",
    ]  # fmt: skip


@dataclass
class Member:
    """One domain of the grid: its process, its owner's client, its worker process."""

    name: str
    url: str
    node: Process
    owner: grid.DomainClient
    worker: Process | None = None
    worker_env: dict[str, str] = field(default_factory=dict)
    work_dir: Path | None = None

    def start_worker(self) -> None:
        assert self.work_dir is not None
        command = [
            *(sys.executable, "-m", "grid_cli", "worker", "start", "--domain", self.url),
            *("--work-dir", str(self.work_dir), "--poll-interval", "0.2"),
        ]
        self.worker = Process(command, self.worker_env, self.work_dir.with_suffix(".log"), "")


@dataclass
class LocalGrid:
    """What the tests drive: the network, its domains, the data scientist and operator clients."""

    root: Path
    network: Process
    network_url: str
    members: list[Member]
    operator: grid.NetworkClient
    scientist: grid.NetworkClient

    def stop(self) -> None:
        for member in self.members:
            if member.worker is not None:
                member.worker.kill(signal.SIGTERM)
            member.node.kill(signal.SIGTERM)
        self.network.kill(signal.SIGTERM)

    def approve_all(self, *, release: bool = True) -> None:
        """Each owner approves the federated request their domain received."""
        for member in self.members:
            pending = eventually(
                lambda m=member: [
                    r for r in m.owner.requests.pending if r.info.kind == "federated"
                ],
                f"{member.name} to receive the federated request",
            )
            member.owner.approve(pending[0].id, "fine", release_on_completion=release)


def digits_parts(count: int, seed: int = 0) -> list[pd.DataFrame]:
    """scikit-learn's digits, shuffled and cut into `count` parts (one per domain)."""
    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    frame = pd.DataFrame(digits.data[order], columns=[f"p{i}" for i in range(64)])
    frame["target"] = digits.target[order]
    return [
        frame.iloc[rows].reset_index(drop=True)
        for rows in np.array_split(np.arange(len(frame)), count)
    ]


def start_grid(
    root: Path,
    domains: int,
    *,
    network_database_url: str = "",
    domain_env: dict[str, str] | None = None,
    parts: list[pd.DataFrame] | None = None,
) -> LocalGrid:
    """Start a network and `domains` domains, each with a dataset 'digits' and one worker."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "GRID_DATA_DIR": str(root / "network"),
        "GRID_NODE_NAME": "net",
        "GRID_OPERATOR_EMAIL": OPERATOR_EMAIL,
        "GRID_OPERATOR_PASSWORD": OPERATOR_PASSWORD,
        "GRID_HEALTH_INTERVAL_S": "1",
    }
    if network_database_url:
        env["GRID_DATABASE_URL"] = network_database_url
    network = Process(_gunicorn("network", port), env, root / "network.log", f"{url}/healthz")
    operator = grid.login_network(url, OPERATOR_EMAIL, OPERATOR_PASSWORD)
    operator.create_account(DS_EMAIL, DS_PASSWORD, role="data_scientist")
    parts = parts or digits_parts(domains)
    members: list[Member] = []
    local = LocalGrid(root, network, url, members, operator, operator)
    try:
        for index in range(domains):
            members.append(_start_member(root, index, url, parts[index], domain_env or {}))
        for member in members:
            eventually(
                lambda m=member: any(
                    a.status == "pending" and a.url == m.url for a in operator.associations()
                ),
                f"{member.name} to ask to join",
            )
        for association in operator.associations(status="pending"):
            operator.approve(association.id)
        eventually(
            lambda: len(operator.search("digits")) == domains, "every domain's dataset in the index"
        )
        for member in members:
            member.start_worker()
        local.scientist = grid.login_network(url, DS_EMAIL, DS_PASSWORD)
    except BaseException:
        local.stop()
        raise
    return local


def _start_member(
    root: Path, index: int, network_url: str, data: pd.DataFrame, extra: dict[str, str]
) -> Member:
    name = f"hospital-{chr(ord('a') + index)}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "GRID_DATA_DIR": str(root / name),
        "GRID_NODE_NAME": name,
        "GRID_OWNER_EMAIL": OWNER_EMAIL,
        "GRID_OWNER_PASSWORD": OWNER_PASSWORD,
        "GRID_NETWORK_SYNC_S": "0.3",
        "GRID_JOB_LEASE_SECONDS": "3",
        **extra,
    }
    node = Process(_gunicorn("domain", port), env, root / f"{name}.log", f"{url}/healthz")
    owner = grid.login(url, OWNER_EMAIL, OWNER_PASSWORD)
    csv = root / f"{name}.csv"
    data.to_csv(csv, index=False)
    owner.upload_dataset(
        "digits", csv, label="target", description="handwritten digits", tags=["digits"],
        progress=False,
    )  # fmt: skip
    token = owner.add_worker(f"{name}-worker").token
    assert token is not None
    owner.join_network(network_url)
    member = Member(name, url, node, owner, worker_env={"GRID_WORKER_TOKEN": token})
    member.work_dir = root / f"{name}-worker"
    return member
