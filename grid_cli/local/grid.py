"""A whole grid on one machine: a chain with the registry, a network, domains and their workers.

`LocalGrid(GridConfig(...)).start()` runs every part as its own process, each in a session of
its own so that stopping it also stops what it started (gunicorn's workers, a worker's
training process). A state file in the data dir lists the processes, URLs and accounts, so
`grid down` in another shell stops everything a `grid up` started.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import requests

from grid_cli.client.connect import login, login_network
from grid_cli.client.domain import DomainClient
from grid_cli.client.network import NetworkClient
from grid_cli.local.demo_data import SeedDataset, demo_datasets
from grid_cli.local.launch import DomainLaunch

STATE_FILE = "grid.json"
# What `grid up` made in its data dir, so that the next `grid up` replaces just that.
MANIFEST_FILE = ".grid-up"
MADE = ("logs", "seeds", "workers", "network", "results", STATE_FILE)
NETWORK_NAME = "research-net"
OPERATOR_EMAIL = "operator@research-net.example"
SCIENTIST_EMAIL = "scientist@university.example"
# Inherited variables a grid's processes must not share: each node has its own database,
# keys, URL and token.
_PRIVATE_ENV = (
    "GRID_DATABASE_URL",
    "GRID_ETH_PRIVATE_KEY",
    "GRID_PUBLIC_URL",
    "GRID_SECRET_KEY",
    "GRID_WORKER_TOKEN",
    "GRID_DATA_DIR",
    "GRID_NODE_NAME",
    "GRID_URL",
    "GRID_CHAIN_RPC_URL",
    "GRID_REGISTRY_ADDRESS",
)
Role = Literal["chain", "network", "domain", "worker"]
T = TypeVar("T")


class GridUpError(RuntimeError):
    """A local grid could not be started or stopped; the message says what to do."""


# --- what the state file holds ------------------------------------------------------------


@dataclass(frozen=True)
class Account:
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
    # It holds the grid's passwords: owner-only, written whole and then renamed into place.
    path = state_path(Path(state.data_dir))
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(state.to_json(), handle, indent=2)
        handle.write("\n")
    staging.replace(path)


# --- processes ------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def start_ticks(pid: int) -> int:
    """When a process started (clock ticks after boot); 0 where /proc is not available."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else 0


def session_members(record: ProcessRecord) -> list[int]:
    """Live processes of a record's session: the leader and whatever it started."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: only the leader can be checked
        return [record.pid] if _alive(record.pid) else []
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        # state, ppid, pgrp, session, …; zombies hold no port and run nothing
        if fields is None or fields[0] in ("Z", "X") or int(fields[3]) != record.pid:
            continue
        if int(fields[19]) >= record.start_ticks:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat_fields(pid)
    return fields is None or fields[0] not in ("Z", "X")


def stop_sessions(
    records: Iterable[ProcessRecord],
    *,
    timeout: float = 20.0,
    reap: Callable[[], None] = lambda: None,
) -> list[int]:
    """SIGTERM every process of the records' sessions, SIGKILL what is left after `timeout`.

    Returns the pids still alive at the end (none, unless they ignore SIGKILL). `reap` is
    called while waiting, so that a parent waits for its own children.
    """
    records = list(records)
    for sig, wait_s in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        deadline = time.monotonic() + wait_s
        signalled: set[int] = set()
        while True:
            reap()
            left = [pid for record in records for pid in session_members(record)]
            if not left:
                return []
            for pid in set(left) - signalled:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                signalled.add(pid)
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    return left


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:port now."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def poll(
    check: Callable[[], T | None], what: str, deadline_s: float = 60.0, every: float = 0.1
) -> T:
    """Call `check` until it returns something truthy; GridUpError naming `what` past the
    deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise GridUpError(f"timed out after {deadline_s:g} s waiting for {what}")
        time.sleep(every)


def child_environment(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV}
    env.setdefault("GRID_LOG_FORMAT", "text")
    return {**env, **extra}


@dataclass
class ManagedProcess:
    """A process of the grid in a session of its own; restartable with `start()`."""

    name: str
    role: Role
    command: list[str]
    env: dict[str, str]
    log: Path
    port: int | None = None
    health_url: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, wait_s: float | None = 120.0) -> None:
        """Start it; with `wait_s`, wait that long for it to answer its health URL."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command,
                env=child_environment(self.env),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        if wait_s is not None and self.health_url is not None:
            poll(self.ready, f"{self.name} to answer", wait_s)

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        """Whether it answers its health URL; GridUpError with its log's end if it exited."""
        if self.process is not None and self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise GridUpError(
                f"{self.name} exited with status {self.process.returncode}; the end of "
                f"{self.log}:\n{tail}"
            )
        if self.health_url is None:
            return True
        try:
            return requests.get(self.health_url, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def record(self) -> ProcessRecord:
        return ProcessRecord(
            self.name, self.role, self.pid, start_ticks(self.pid), self.port, str(self.log)
        )

    def stop(self, *, kill: bool = False, timeout: float = 20.0) -> None:
        """Stop it and everything it started; `kill` sends SIGKILL at once (no goodbye)."""
        if self.process is None:
            return
        record = self.record()
        if kill:
            for pid in session_members(record):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        stop_sessions([record], timeout=timeout, reap=self.reap)
        self.reap()

    def reap(self) -> None:
        """Collect its exit status if it ended, so it does not linger as a zombie."""
        if self.process is not None:
            self.process.poll()


# --- the grid -------------------------------------------------------------------------------


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


def session_members_of_pid(record: ProcessRecord) -> list[int]:
    """The process itself if it still runs (a `grid up` shares its shell's session)."""
    if not _alive(record.pid):
        return []
    ticks = start_ticks(record.pid)
    return [record.pid] if ticks in (0, record.start_ticks) else []


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
