"""A whole grid in real processes for end-to-end tests, on `grid_cli.local.grid`.

`eventually` (from tests.conftest) is re-exported for the tests that drive it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_digits

import grid_cli as grid
from grid_cli.local import grid as local_grid
from grid_cli.local.demo_data import SeedDataset
from grid_cli.local.grid import GridConfig, LocalDomain
from grid_cli.local.processes import ManagedProcess
from tests.conftest import eventually


@dataclass
class Member:
    """One domain of the grid: its process, its owner's client, its worker process."""

    domain: LocalDomain

    @property
    def name(self) -> str:
        return self.domain.name

    @property
    def url(self) -> str:
        return self.domain.url

    @property
    def node(self) -> ManagedProcess:
        return self.domain.process

    @property
    def owner(self) -> grid.DomainClient:
        return self.domain.owner_client

    @property
    def worker(self) -> ManagedProcess:
        return self.domain.workers[0]

    def start_worker(self) -> None:
        """Start its (stopped) worker again, with the same token."""
        self.worker.start()


class LocalGrid:
    """What the tests drive: the network, its domains, the data scientist and operator clients."""

    def __init__(self, running: local_grid.LocalGrid) -> None:
        self.running = running
        self.root = running.data_dir
        self.members = [Member(d) for d in running.domains]
        self.operator = running.operator
        self.scientist = running.scientist()

    @property
    def network(self) -> ManagedProcess:
        assert self.running.network_process is not None
        return self.running.network_process

    @property
    def network_url(self) -> str:
        return self.running.network_url

    def stop(self) -> None:
        self.scientist.close()
        self.running.stop()

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
    chain: bool = False,
) -> LocalGrid:
    """Start a network and `domains` domains, each with a dataset 'digits' and one worker;
    with `chain`, also a local chain with the registry, which the domains write to."""
    parts = parts or digits_parts(domains)
    config = GridConfig(
        data_dir=root,
        domains=domains,
        port=0,
        chain=chain,
        datasets=[
            [SeedDataset("digits", part, "target", "handwritten digits", ["digits"])]
            for part in parts
        ],
        lease_s=3,
        health_interval_s=1,
        worker_poll_s=0.2,
        network_database_url=network_database_url,
        domain_env=domain_env or {},
    )
    return LocalGrid(local_grid.LocalGrid(config, supervised=False).start())
