"""A whole grid on one machine: a chain with the registry, a network, domains and their workers.

`LocalGrid(GridConfig(...)).start()` runs every part as its own process (see `processes.py`)
and lists them, with their URLs and accounts, in the state file (see `state.py`); `down`
stops a grid that another shell started.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from grid_cli.client.connect import login, login_network
from grid_cli.client.domain import DomainClient
from grid_cli.client.network import NetworkClient
from grid_cli.local.demo_data import SeedDataset, demo_datasets
from grid_cli.local.launch import (
    NODE_MODULES,
    WORKER_MODULES,
    DomainLaunch,
    NodeExtraMissing,
    require_node_extra,
)
from grid_cli.local.processes import (
    ManagedProcess,
    free_port,
    poll,
    port_is_free,
    session_members,
    session_members_of_pid,
    start_ticks,
    stop_sessions,
)
from grid_cli.local.state import (
    STATE_FILE,
    Account,
    ChainEntry,
    GridState,
    GridUpError,
    NodeEntry,
    ProcessRecord,
    read_state,
    state_path,
    write_state,
)

# What `grid up` made in its data dir, so that the next `grid up` replaces just that.
MANIFEST_FILE = ".grid-up"
MADE = ("logs", "seeds", "workers", "network", "results", STATE_FILE)
NETWORK_NAME = "research-net"
OPERATOR_EMAIL = "operator@research-net.example"
SCIENTIST_EMAIL = "scientist@university.example"


@dataclass
class GridConfig:
    """What `grid up` starts. `port` 0 picks free ports for everything."""

    data_dir: Path
    domains: int = 3  # federated jobs without DP need at least 3
    workers: int = 1
    port: int = 8000
    chain_port: int = 8545
    chain: bool = True
    # Per domain, what to upload; default: demo_datasets(domains).
    datasets: list[list[SeedDataset]] | None = None
    sync_s: float = 0.3
    lease_s: int = 10
    health_interval_s: float = 2.0
    worker_poll_s: float = 0.5
    network_database_url: str = ""
    domain_env: dict[str, str] = field(default_factory=dict)
    start_timeout_s: float = 120.0


@dataclass
class LocalDomain:
    """One domain of a running grid: its process, its workers, its owner's client."""

    name: str
    url: str
    data_dir: Path
    owner: Account
    scientist: Account
    process: ManagedProcess
    workers: list[ManagedProcess] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    client: DomainClient | None = field(default=None, repr=False)

    @property
    def owner_client(self) -> DomainClient:
        assert self.client is not None, f"{self.name} has not been set up"
        return self.client

    def entry(self) -> NodeEntry:
        return NodeEntry(
            self.name, "domain", self.url, [self.owner, self.scientist], list(self.datasets)
        )


def domain_name(index: int) -> str:
    """The name of the grid's domain number `index` (0: hospital-a)."""
    return f"hospital-{chr(ord('a') + index)}"


class LocalGrid:
    """A grid of real processes on this machine: start, use, stop (also as a `with` block)."""

    def __init__(self, config: GridConfig, *, supervised: bool = True) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir).resolve()
        # With `supervised`, this process stays and `grid down` stops it (and so the grid).
        self.supervised = supervised
        self.status: Literal["starting", "up"] = "starting"
        self.chain: ChainEntry | None = None
        self.chain_process: ManagedProcess | None = None
        self.network_process: ManagedProcess | None = None
        self.domains: list[LocalDomain] = []
        self.operator_account = Account(OPERATOR_EMAIL, secrets.token_urlsafe(12), "operator")
        self.scientist_account = Account(
            SCIENTIST_EMAIL, secrets.token_urlsafe(12), "data_scientist"
        )
        self._operator: NetworkClient | None = None
        self._wrote_state = False

    # --- reading it ---------------------------------------------------------------------

    @property
    def network_url(self) -> str:
        assert self.network_process is not None and self.network_process.port
        return f"http://127.0.0.1:{self.network_process.port}"

    @property
    def processes(self) -> list[ManagedProcess]:
        found = [p for p in (self.chain_process, self.network_process) if p is not None]
        for d in self.domains:
            found += [d.process, *d.workers]
        return [p for p in found if p.process is not None]

    def domain(self, name: str) -> LocalDomain:
        for d in self.domains:
            if d.name == name:
                return d
        raise KeyError(f"no domain {name!r} in this grid")

    @property
    def operator(self) -> NetworkClient:
        """The network operator's client (signed in once)."""
        if self._operator is None:
            account = self.operator_account
            self._operator = login_network(self.network_url, account.email, account.password)
        return self._operator

    def scientist(self) -> NetworkClient:
        """A fresh client of the data scientist, signed in to the network."""
        account = self.scientist_account
        return login_network(self.network_url, account.email, account.password)

    def state(self) -> GridState:
        network = NodeEntry(
            NETWORK_NAME,
            "network",
            self.network_url if self.network_process else "",
            [self.operator_account, self.scientist_account],
        )
        supervisor = None
        if self.supervised:
            pid = os.getpid()
            supervisor = ProcessRecord("grid up", "supervisor", pid, start_ticks(pid), None, "")
        return GridState(
            data_dir=str(self.data_dir),
            status=self.status,
            supervisor=supervisor,
            chain=self.chain,
            nodes=[network, *(d.entry() for d in self.domains)],
            processes=[p.record() for p in self.processes],
        )

    def save_state(self) -> None:
        write_state(self.state())
        self._wrote_state = True

    # --- starting ---------------------------------------------------------------------

    def __enter__(self) -> LocalGrid:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self, on_step: Callable[[str], None] = lambda _: None) -> LocalGrid:
        """Start every part and set it up; on any failure stop what started, then raise."""
        try:
            require_node_extra("A local grid", NODE_MODULES + WORKER_MODULES)
        except NodeExtraMissing as exc:
            raise GridUpError(str(exc)) from None
        self._prepare_data_dir()
        try:
            ports = self._ports()
            if self.config.chain:
                on_step("starting a local chain and deploying the registry")
                self._start_chain(ports["chain"])
            on_step(f"starting the network and {self.config.domains} domain(s)")
            self._launch_nodes(ports)
            on_step("creating accounts and uploading the demo datasets")
            self.operator.create_account(
                self.scientist_account.email, self.scientist_account.password, "data_scientist"
            )
            for d in self.domains:
                self._set_up_domain(d)
            on_step("associating every domain with the network")
            self._associate()
            self.status = "up"
            self.save_state()
        except BaseException:
            self.stop()
            raise
        return self

    def _prepare_data_dir(self) -> None:
        """Replace what an earlier `grid up` made here; refuse to touch anything else."""
        path = self.data_dir
        if state_path(path).exists():
            try:
                state: GridState | None = read_state(path)
            except GridUpError:
                state = None  # unreadable: nothing left to check
            if state is not None and any(session_members(p) for p in state.processes):
                raise GridUpError(
                    f"a grid started from {path} is still running: stop it with "
                    f"`grid down --data-dir {path}`, or pass another --data-dir"
                )
        manifest = path / MANIFEST_FILE
        # A local chain keeps no state, so the nodes of an earlier grid cannot go on: each
        # `grid up` starts afresh.
        made = manifest.read_text().split() if manifest.exists() else []
        for name in made:
            target = path / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
        planned = [*MADE, *(domain_name(i) for i in range(self.config.domains))]
        clash = [name for name in planned if (path / name).exists()]
        if clash:
            raise GridUpError(
                f"{path / clash[0]} exists and was not made by `grid up`: pass another "
                "--data-dir, or move it"
            )
        path.mkdir(parents=True, exist_ok=True)
        manifest.write_text("\n".join(planned) + "\n")
        (path / "logs").mkdir()

    def _ports(self) -> dict[str, int]:
        config = self.config
        if config.port == 0:
            names = ["chain", "network", *(domain_name(i) for i in range(config.domains))]
            return {name: free_port() for name in names}
        ports = {"chain": config.chain_port, "network": config.port}
        ports |= {domain_name(i): config.port + 1 + i for i in range(config.domains)}
        wanted = ports if config.chain else {k: v for k, v in ports.items() if k != "chain"}
        busy = [f"{name} {port}" for name, port in wanted.items() if not port_is_free(port)]
        if busy:
            raise GridUpError(
                f"port(s) in use: {', '.join(busy)}. Stop what uses them (an earlier grid: "
                "`grid down`), or pass --port/--chain-port to move the grid, or --port 0 for "
                "free ports"
            )
        return ports

    def _start_chain(self, port: int) -> None:
        from eth_account import Account as EthAccount

        from registry.chain import (
            ANVIL_DEPLOYER_KEY,
            ChainError,
            anvil_command,
            find_anvil,
            fund,
            wait_for_rpc,
        )
        from registry.client import deploy_registry
        from registry.keys import load_or_create_account

        try:
            anvil = find_anvil()
        except ChainError as exc:
            raise GridUpError(f"{exc}; or pass --no-chain to run without a registry") from None
        process = ManagedProcess(
            "chain", "chain", anvil_command(anvil, port), {}, self.data_dir / "logs/chain.log", port
        )
        self.chain_process = process
        process.start()
        self.save_state()
        url = f"http://127.0.0.1:{port}"
        assert process.process is not None
        wait_for_rpc(url, process.process)
        address, _ = deploy_registry(url, EthAccount.from_key(ANVIL_DEPLOYER_KEY))
        node_dirs = [self.data_dir / "network"]
        node_dirs += [self.data_dir / domain_name(i) for i in range(self.config.domains)]
        # Keys made now, so each node finds its funded key when it starts.
        fund(url, [str(load_or_create_account(d, env=False).address) for d in node_dirs])
        self.chain = ChainEntry(url, address)

    def _launch_nodes(self, ports: dict[str, int]) -> None:
        config = self.config
        chain_env = self.chain.environment() if self.chain else {}
        network_env = {
            "GRID_OPERATOR_EMAIL": self.operator_account.email,
            "GRID_OPERATOR_PASSWORD": self.operator_account.password,
            "GRID_HEALTH_INTERVAL_S": f"{config.health_interval_s:g}",
            **chain_env,
        }
        if config.network_database_url:
            network_env["GRID_DATABASE_URL"] = config.network_database_url
        self.network_process = self._node_process(
            NETWORK_NAME, "network", ports["network"], network_env
        )
        for index in range(config.domains):
            name = domain_name(index)
            port = ports[name]
            url = f"http://127.0.0.1:{port}"
            owner = Account(f"owner@{name}.example", secrets.token_urlsafe(12), "owner")
            env = {
                "GRID_OWNER_EMAIL": owner.email,
                "GRID_OWNER_PASSWORD": owner.password,
                "GRID_PUBLIC_URL": url,
                "GRID_NETWORK_SYNC_S": f"{config.sync_s:g}",
                "GRID_JOB_LEASE_SECONDS": str(config.lease_s),
                **chain_env,
                **config.domain_env,
            }
            process = self._node_process(name, "domain", port, env)
            self.domains.append(
                LocalDomain(name, url, self.data_dir / name, owner, self.scientist_account, process)
            )
        # All of them start at once and warm up side by side.
        for process in [self.network_process, *(d.process for d in self.domains)]:
            process.start(wait_s=None)
        self.save_state()
        for process in self.processes:
            poll(process.ready, f"{process.name} to answer", config.start_timeout_s)

    def _node_process(
        self, name: str, node: Literal["network", "domain"], port: int, env: dict[str, str]
    ) -> ManagedProcess:
        # One gunicorn worker per node on a small machine; threads for routed transfers.
        launch = DomainLaunch(
            name=name, port=port, data_dir=self.data_dir / (name if node == "domain" else node),
            workers=1, node=node, threads=8,
        )  # fmt: skip
        return ManagedProcess(
            name,
            node,
            launch.gunicorn_command(),
            launch.environment(env),
            self.data_dir / "logs" / f"{name}.log",
            port,
            f"http://127.0.0.1:{port}/healthz",
        )

    def _set_up_domain(self, d: LocalDomain) -> None:
        owner = login(d.url, d.owner.email, d.owner.password)
        d.client = owner
        owner.create_user(d.scientist.email, d.scientist.password, role="data_scientist")
        seeds = self.config.datasets or demo_datasets(self.config.domains)
        seeds_dir = self.data_dir / "seeds"
        seeds_dir.mkdir(exist_ok=True)
        for seed in seeds[self.domains.index(d)]:
            csv = seeds_dir / f"{d.name}-{seed.name}.csv"
            seed.frame.to_csv(csv, index=False)
            owner.upload_dataset(
                seed.name, csv, label=seed.label, description=seed.description,
                tags=seed.tags, progress=False,
            )  # fmt: skip
            d.datasets.append(seed.name)
        for number in range(1, self.config.workers + 1):
            self.start_worker(d, number)
        owner.join_network(self.network_url, domain_url=d.url)
        self.save_state()

    def start_worker(self, d: LocalDomain, number: int) -> ManagedProcess:
        """Register a worker with the domain and start it."""
        name = f"{d.name}-worker-{number}"
        token = d.owner_client.add_worker(name).token
        assert token is not None  # shown once, on creation
        work_dir = self.data_dir / "workers" / name
        command = [
            *(sys.executable, "-m", "grid_cli", "worker", "start", "--domain", d.url),
            *("--work-dir", str(work_dir), "--poll-interval", f"{self.config.worker_poll_s:g}"),
        ]
        worker = ManagedProcess(
            name,
            "worker",
            command,
            {"GRID_WORKER_TOKEN": token},
            self.data_dir / f"logs/{name}.log",
        )
        worker.start()
        d.workers.append(worker)
        return worker

    def _associate(self) -> None:
        operator, urls = self.operator, {d.url for d in self.domains}
        timeout = self.config.start_timeout_s

        def pending() -> list[Any]:
            asked = [a for a in operator.associations(status="pending") if a.url in urls]
            return asked if len(asked) == len(urls) else []

        for association in poll(pending, "every domain to ask to join the network", timeout):
            operator.approve(association.id, reason="a domain of this local grid")
        expected = {d.name: len(d.datasets) for d in self.domains}

        def indexed() -> bool:
            counts = {d.name: d.dataset_count for d in operator.domains}
            return all(counts.get(name) == n for name, n in expected.items())

        poll(indexed, "every domain's datasets in the network's index", timeout, every=0.2)

    # --- running and stopping ---------------------------------------------------------

    def serve(self, on_exit: Callable[[ManagedProcess], None] = lambda _: None) -> None:
        """Block until SIGINT or SIGTERM (what `grid down` sends), then stop everything.

        `on_exit` hears once of each process that ends on its own meanwhile.
        """

        def interrupt(_signum: int, _frame: object) -> None:
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, interrupt)
        reported: set[str] = set()
        try:
            while True:
                for process in self.processes:
                    if not process.running() and process.name not in reported:
                        reported.add(process.name)
                        on_exit(process)
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.stop()

    def stop(self, timeout: float = 20.0) -> list[int]:
        """Stop every process this grid started; returns pids that would not die (none)."""
        if self._operator is not None:
            self._operator.close()
            self._operator = None
        for d in self.domains:
            if d.client is not None:
                d.client.close()
                d.client = None
        started = self.processes

        def reap() -> None:
            for process in started:
                process.reap()

        left = stop_sessions([p.record() for p in started], timeout=timeout, reap=reap)
        if self._wrote_state:
            state_path(self.data_dir).unlink(missing_ok=True)
            self._wrote_state = False
        return left


@dataclass(frozen=True)
class DownReport:
    """What `grid down` did: which processes it stopped, and which ports are now free."""

    stopped: list[str]
    left: list[int]
    busy_ports: list[int]


def down(data_dir: Path, timeout: float = 30.0) -> DownReport:
    """Stop the grid started from `data_dir`: its `grid up` process, then every process left."""
    state = read_state(data_dir)
    running = [p.name for p in state.processes if session_members(p)]
    supervisor = state.supervisor
    if supervisor is not None and supervisor.pid != os.getpid():
        for pid in session_members_of_pid(supervisor):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        # It stops its own grid; what remains after that is stopped below.
        with contextlib.suppress(GridUpError):
            poll(lambda: not session_members_of_pid(supervisor), "grid up to stop", timeout)
    left = stop_sessions(state.processes, timeout=timeout)
    with contextlib.suppress(FileNotFoundError):
        state_path(data_dir).unlink()
    busy = [port for port in state.ports if not port_is_free(port)]
    return DownReport(running, left, busy)
