"""The state file of a local grid: its processes, URLs and accounts, so that `grid down` in
another shell stops everything a `grid up` started."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

STATE_FILE = "grid.json"


class GridUpError(RuntimeError):
    """A local grid could not be started or stopped; the message says what to do."""


@dataclass(frozen=True)
class Account:
    """An account the grid made, with its password (the state file is owner-only)."""

    email: str
    password: str
    role: str


@dataclass(frozen=True)
class NodeEntry:
    """A node of the grid as the state file lists it."""

    name: str
    kind: Literal["network", "domain"]
    url: str
    accounts: list[Account]
    datasets: list[str] = field(default_factory=list)

    def account(self, role: str) -> Account:
        return next(a for a in self.accounts if a.role == role)


@dataclass(frozen=True)
class ChainEntry:
    """The grid's chain: where to reach it and the registry deployed on it."""

    rpc_url: str
    registry_address: str
    chain_id: int = 31337

    def environment(self) -> dict[str, str]:
        return {"GRID_CHAIN_RPC_URL": self.rpc_url, "GRID_REGISTRY_ADDRESS": self.registry_address}


@dataclass(frozen=True)
class ProcessRecord:
    """A started process: `pid` leads its own session; `start_ticks` tells it from a later
    process that happens to get the same pid."""

    name: str
    role: str
    pid: int
    start_ticks: int
    port: int | None
    log: str


@dataclass
class GridState:
    """What the state file holds: the grid's nodes, its chain and its processes."""

    data_dir: str
    status: Literal["starting", "up"]
    supervisor: ProcessRecord | None
    chain: ChainEntry | None
    nodes: list[NodeEntry]
    processes: list[ProcessRecord]

    def node(self, name: str) -> NodeEntry:
        return next(n for n in self.nodes if n.name == name)

    @property
    def network(self) -> NodeEntry:
        return next(n for n in self.nodes if n.kind == "network")

    @property
    def domains(self) -> list[NodeEntry]:
        return [n for n in self.nodes if n.kind == "domain"]

    @property
    def ports(self) -> list[int]:
        return [p.port for p in self.processes if p.port]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GridState:
        def node(raw: dict[str, Any]) -> NodeEntry:
            accounts = [Account(**a) for a in raw["accounts"]]
            return NodeEntry(**{**raw, "accounts": accounts})

        supervisor = data.get("supervisor")
        return cls(
            data_dir=data["data_dir"],
            status=data["status"],
            supervisor=ProcessRecord(**supervisor) if supervisor else None,
            chain=ChainEntry(**data["chain"]) if data.get("chain") else None,
            nodes=[node(n) for n in data["nodes"]],
            processes=[ProcessRecord(**p) for p in data["processes"]],
        )


def state_path(data_dir: Path) -> Path:
    """Where the state file of a grid started from `data_dir` is."""
    return Path(data_dir) / STATE_FILE


def read_state(data_dir: Path) -> GridState:
    """The state file of a grid started from `data_dir`."""
    path = state_path(data_dir)
    try:
        return GridState.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        raise GridUpError(
            f"no grid is running from {data_dir} (no {path}); start one with `grid up`, or "
            "pass the --data-dir it was started with"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise GridUpError(f"{path} is not a state file `grid up` wrote ({exc})") from None


def write_state(state: GridState) -> None:
    """Write the state file."""
    # It holds the grid's passwords: owner-only, written whole and then renamed into place.
    path = state_path(Path(state.data_dir))
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(state.to_json(), handle, indent=2)
        handle.write("\n")
    staging.replace(path)


def node_rows(state: GridState) -> Iterator[list[str]]:
    """What runs where: one row per node, chain and worker."""
    if state.chain is not None:
        yield ["chain", state.chain.rpc_url, f"registry {state.chain.registry_address}"]
    for node in state.nodes:
        what = "network" if node.kind == "network" else f"domain: {', '.join(node.datasets)}"
        yield [node.name, node.url, what]
    for process in state.processes:
        if process.role == "worker":
            yield [process.name, f"pid {process.pid}", "worker"]


def account_rows(state: GridState) -> Iterator[list[str]]:
    """How to sign in: one row per account of each node."""
    for node in state.nodes:
        for account in node.accounts:
            yield [node.name, account.email, account.role, account.password]
