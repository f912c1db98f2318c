"""Process supervision for a local grid: each part runs in a session of its own, so that
stopping it also stops what it started (gunicorn's workers, a worker's training process)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import requests

from grid_cli.local.state import GridUpError, ProcessRecord

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


def session_members_of_pid(record: ProcessRecord) -> list[int]:
    """The process itself if it still runs (a `grid up` shares its shell's session)."""
    if not _alive(record.pid):
        return []
    ticks = start_ticks(record.pid)
    return [record.pid] if ticks in (0, record.start_ticks) else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat_fields(pid)
    return fields is None or fields[0] not in ("Z", "X")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


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
    """A port free on 127.0.0.1 now (the system picks it)."""
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
    """The environment of a grid process: this one's, less what each node must have its own
    of, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV}
    env.setdefault("GRID_LOG_FORMAT", "text")
    return {**env, **extra}
