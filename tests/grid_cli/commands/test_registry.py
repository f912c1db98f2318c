"""`grid registry …` and `grid chain start` against a real chain (anvil)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from click.testing import CliRunner
from eth_account import Account

import grid_cli.commands.registry
from grid_cli.commands.app import main
from grid_common.registry_schemas import RegistryStatus
from registry.chain import LocalChain, fund, rpc
from registry.client import RegistryClient
from registry.keys import KEY_ENV, key_path
from tests.conftest import free_port
from tests.registry.conftest import ETHER


def test_grid_registry_verify_prints_the_proof_and_fails_for_an_altered_model(
    finished_job: tuple[RegistryClient, str, Path, str],
) -> None:
    domain, job_id, model, spec = finished_job
    env = {"GRID_CHAIN_RPC_URL": domain.rpc_url, "GRID_REGISTRY_ADDRESS": domain.address}
    runner = CliRunner()
    ok = runner.invoke(
        main, ["registry", "verify", job_id, "--model", str(model), "--spec-hash", spec], env=env
    )
    assert ok.exit_code == 0, ok.output
    assert "VERIFIED" in ok.output and job_id in ok.output

    as_json = runner.invoke(main, ["registry", "verify", job_id, "--json"], env=env)
    assert json.loads(as_json.output)["ok"] is True

    model.write_bytes(model.read_bytes()[:-1] + b"\x00")
    bad = runner.invoke(main, ["registry", "verify", job_id, "--model", str(model)], env=env)
    assert bad.exit_code == 1
    assert "NOT VERIFIED" in bad.output and "your model does not match" in bad.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["0x" + "44" * 32], "is not on the registry"),
        (["not-a-job-id"], "not a hex string"),
        (["0x" + "44" * 32, "--model-hash", "12"], "expected 32 bytes"),
    ],
)
def test_grid_registry_verify_names_bad_input_in_one_line(
    anvil: LocalChain, args: list[str], message: str
) -> None:
    env = {"GRID_CHAIN_RPC_URL": anvil.rpc_url, "GRID_REGISTRY_ADDRESS": anvil.registry_address}
    result = CliRunner().invoke(main, ["registry", "verify", *args], env=env)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_grid_registry_verify_says_when_the_chain_is_unreachable() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(
        main,
        ["registry", "verify", "0x" + "44" * 32, "--rpc", dead, "--registry", "0x" + "55" * 20],
    )
    assert result.exit_code == 1 and "chain unreachable" in result.output


def test_grid_registry_deploy_puts_the_contract_on_a_chain(anvil: LocalChain) -> None:
    account = Account.create()
    fund(anvil.rpc_url, [account.address])
    result = CliRunner().invoke(
        main,
        ["registry", "deploy", "--rpc", anvil.rpc_url, "--json"],
        env={KEY_ENV: account.key.hex()},
    )
    assert result.exit_code == 0, result.output
    address = json.loads(result.output)["registry_address"]
    assert RegistryClient(anvil.rpc_url, address).has_code()


def test_grid_registry_address_prints_the_nodes_key_address(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["registry", "address", "--data-dir", str(tmp_path)], env={KEY_ENV: ""}
    )
    assert result.exit_code == 0
    assert result.output.strip() == str(
        Account.from_key(key_path(tmp_path).read_text().strip()).address
    )


def test_grid_chain_start_runs_anvil_deploys_and_funds_until_stopped(tmp_path: Path) -> None:
    node = tmp_path / "nodes" / "hospital-a"
    node.mkdir(parents=True)
    (node / "domain.db").touch()
    port = free_port()
    command = [
        sys.executable, "-m", "grid_cli", "chain", "start", "--port", str(port),
        "--data-dir", str(tmp_path / "chain"), "--nodes-dir", str(tmp_path / "nodes"),
    ]  # fmt: skip
    env = {**os.environ, KEY_ENV: ""}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line, f"grid chain start exited early: {lines}"
            lines.append(line)
            if "export" in line:
                break
        output = "".join(lines)
        address = str(Account.from_key(key_path(node).read_text().strip()).address)
        assert f"Funded {address}" in output
        url = f"http://127.0.0.1:{port}"
        assert f"GRID_CHAIN_RPC_URL={url}" in output
        chain_file = json.loads((tmp_path / "chain" / "chain.json").read_text())
        assert RegistryClient(url, chain_file["registry_address"]).has_code()
        assert int(rpc(url, "eth_getBalance", [address, "latest"]), 16) == 100 * ETHER
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    with pytest.raises(requests.ConnectionError):
        requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}, timeout=2)


def test_grid_registry_balance_and_withdraw_pay_out_a_reward_to_its_key(
    finished_job: tuple[RegistryClient, str, Path, str], tmp_path: Path
) -> None:
    domain, _, _, _ = finished_job  # the only participant: the 1 ETH bounty is its reward
    assert domain.account is not None
    key_file = tmp_path / "key"
    key_file.write_text(domain.account.key.hex())
    key_file.chmod(0o600)
    env = {"GRID_CHAIN_RPC_URL": domain.rpc_url, "GRID_REGISTRY_ADDRESS": domain.address}
    runner = CliRunner()
    keyed = ["--key-file", str(key_file)]

    address = runner.invoke(main, ["registry", "address", *keyed], env={KEY_ENV: ""})
    assert address.output.strip() == domain.sender
    balance = runner.invoke(main, ["registry", "balance", *keyed, "--json"], env=env)
    assert json.loads(balance.output)["balance_wei"] == str(ETHER)
    paid = runner.invoke(main, ["registry", "withdraw", *keyed], env=env)
    assert paid.exit_code == 0, paid.output
    assert f"Withdrew 1 ETH to {domain.sender}" in paid.output
    again = runner.invoke(main, ["registry", "withdraw", *keyed], env=env)
    assert again.exit_code == 1 and "nothing to withdraw" in again.output
    # No key named anywhere: the command says where a key comes from.
    none = runner.invoke(main, ["registry", "withdraw"], env={**env, KEY_ENV: ""})
    assert none.exit_code == 1 and "--key-file" in none.output


def test_grid_registry_status_shows_the_nodes_balance_and_yours(
    finished_job: tuple[RegistryClient, str, Path, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    domain, _, _, _ = finished_job  # its key holds the 1 ETH bounty as its reward
    assert domain.account is not None
    status = RegistryStatus(
        enabled=True,
        message="registry writes on",
        node_address=domain.sender,
        registry_address=domain.address,
    )
    # The signed-in domain's side is the stored status; the balances are the chain's own.
    monkeypatch.setattr(
        grid_cli.commands.registry,
        "open_client",
        lambda url: SimpleNamespace(registry_status=lambda: status),
    )
    monkeypatch.setenv("COLUMNS", "200")
    mine = Account.create()
    runner = CliRunner()
    env = {"GRID_CHAIN_RPC_URL": domain.rpc_url, "GRID_REGISTRY_ADDRESS": "", KEY_ENV: ""}

    shown = runner.invoke(main, ["registry", "status", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["balances"] == {
        "node": {"address": domain.sender, "balance_wei": str(ETHER)}
    }
    keyed = runner.invoke(main, ["registry", "status"], env={**env, KEY_ENV: mine.key.hex()})
    assert keyed.exit_code == 0, keyed.output
    assert f"node balance │ 1 ETH ({domain.sender})" in keyed.output
    assert f"your balance │ 0 ETH ({mine.address})" in keyed.output
    # Without a chain there are no balances to read, and asking for yours says what is missing.
    key_file = tmp_path / "key"
    key_file.write_text(mine.key.hex())
    key_file.chmod(0o600)
    offline = runner.invoke(
        main,
        ["registry", "status", "--key-file", str(key_file)],
        env={**env, "GRID_CHAIN_RPC_URL": ""},
    )
    assert offline.exit_code == 2 and "pass --rpc" in offline.output
