"""`grid up` starts a whole grid that answers; `grid down` or Ctrl-C stops every process of it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import requests

import grid_cli as grid
from grid_cli.local.processes import poll, port_is_free, session_members
from grid_cli.local.state import Account, GridState, GridUpError, read_state, state_path

pytestmark = pytest.mark.timeout(300)


def _grid(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "grid_cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.fixture
def grid_up(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[subprocess.Popen[str]]:
    """`grid up` in the foreground with the test's arguments; stopped whatever happens."""
    data_dir = tmp_path / "grid"
    command = [sys.executable, "-m", "grid_cli", "up", "--port", "0", "--data-dir", str(data_dir)]
    process = subprocess.Popen(
        [*command, *request.param], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield process
    finally:
        if process.poll() is None and state_path(data_dir).exists():
            _grid("down", "--data-dir", data_dir)
        process.kill()
        process.communicate(timeout=30)


def _wait_until_up(data_dir: Path, process: subprocess.Popen[str]) -> GridState:
    def up() -> GridState | None:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"grid up exited with {process.returncode}:\n{output}")
        try:
            state = read_state(data_dir)
        except GridUpError:
            return None
        return state if state.status == "up" else None

    return poll(up, "grid up to finish starting", 180, every=0.2)


def _assert_all_stopped(state: GridState) -> None:
    left = {p.name: session_members(p) for p in state.processes}
    assert not any(left.values()), f"processes left behind: {left}"
    busy = [port for port in state.ports if not port_is_free(port)]
    assert not busy, f"ports still taken: {busy}"
    assert not state_path(Path(state.data_dir)).exists()


@pytest.mark.parametrize("grid_up", [("--domains", "2", "--workers", "1")], indirect=True)
def test_grid_up_answers_and_grid_down_stops_every_process(
    grid_up: subprocess.Popen[str], tmp_path: Path
) -> None:
    state = _wait_until_up(tmp_path / "grid", grid_up)
    assert state_path(tmp_path / "grid").stat().st_mode & 0o777 == 0o600  # it holds passwords
    names = {p.name for p in state.processes}
    assert names == {
        "chain",
        "research-net",
        "hospital-a",
        "hospital-b",
        "hospital-a-worker-1",
        "hospital-b-worker-1",
    }
    assert all(session_members(p) for p in state.processes), "every listed process runs"

    # The chain answers, with the registry deployed at the printed address.
    assert state.chain is not None
    code = requests.post(
        state.chain.rpc_url,
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "eth_getCode",
            "params": [state.chain.registry_address, "latest"],
        },
        timeout=5,
    ).json()["result"]
    assert len(code) > 2

    # The network knows both domains and indexes their datasets; its accounts sign in.
    network = state.network
    operator = grid.login_network(network.url, **_credentials(network.account("operator")))
    assert {a.name for a in operator.associations(status="approved")} == {
        "hospital-a",
        "hospital-b",
    }
    scientist = grid.login_network(network.url, **_credentials(network.account("data_scientist")))
    assert {h.domain.name for h in scientist.search("digits")} == {"hospital-a", "hospital-b"}
    assert len(scientist.search("breast tumour")) == 2

    # Each domain: its owner and data scientist sign in, the datasets are there, the worker
    # is alive, registry writes are on.
    for domain in state.domains:
        owner = grid.login(domain.url, **_credentials(domain.account("owner")))
        assert {d.name for d in owner.datasets} == {"digits", "breast-cancer"}
        poll(partial(_workers_checked_in, owner), f"{domain.name}'s worker", 120, every=0.3)
        assert owner.registry_status().enabled
        ds = grid.login(domain.url, **_credentials(domain.account("data_scientist")))
        assert ds.me.role == "data_scientist"

    # `grid down` from another process stops `grid up` and everything it started.
    result = _grid("down", "--data-dir", tmp_path / "grid", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["stopped"]) == names
    assert report["left"] == [] and report["busy_ports"] == []
    assert grid_up.wait(timeout=60) == 0
    _assert_all_stopped(state)


def _credentials(account: Account) -> dict[str, str]:
    return {"email": account.email, "password": account.password}


def _workers_checked_in(owner: grid.DomainClient) -> bool:
    workers = owner.workers
    return bool(workers) and all(w.last_heartbeat_at is not None for w in workers)


@pytest.mark.parametrize("grid_up", [("--domains", "1", "--no-chain")], indirect=True)
def test_ctrl_c_stops_every_process(grid_up: subprocess.Popen[str], tmp_path: Path) -> None:
    state = _wait_until_up(tmp_path / "grid", grid_up)
    assert {p.name for p in state.processes} == {
        "research-net",
        "hospital-a",
        "hospital-a-worker-1",
    }
    grid_up.send_signal(signal.SIGINT)
    assert grid_up.wait(timeout=60) == 0
    _assert_all_stopped(state)


def test_grid_down_without_a_grid_says_how_to_start_one(tmp_path: Path) -> None:
    result = _grid("down", "--data-dir", tmp_path)
    assert result.returncode == 1
    assert "no grid is running from" in result.stderr and "grid up" in result.stderr


def test_grid_up_leaves_files_it_did_not_make_alone(tmp_path: Path) -> None:
    mine = tmp_path / "network" / "mine.txt"
    mine.parent.mkdir()
    mine.write_text("keep me")
    result = _grid("up", "--port", "0", "--no-chain", "--data-dir", tmp_path)
    assert result.returncode == 1
    assert "was not made by `grid up`" in result.stderr and "--data-dir" in result.stderr
    assert mine.read_text() == "keep me"


def test_grid_up_on_a_taken_port_names_the_option_to_move(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _grid("up", "--port", str(port), "--no-chain", "--data-dir", tmp_path / "g")
    assert result.returncode == 1
    assert f"network {port}" in result.stderr and "--port 0" in result.stderr
    assert not os.path.exists(state_path(tmp_path / "g"))
