"""A local chain for development: anvil from node_modules, the registry deployed, nodes funded."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from registry.artifact import PACKAGE_DIR
from registry.client import deploy_registry

ANVIL_PACKAGE = "@foundry-rs/anvil-linux-amd64"
ANVIL_ENV = "GRID_ANVIL_BIN"
# anvil's first development account (from its well-known test mnemonic): it deploys the
# registry on a local chain. Never use it on a real one.
ANVIL_DEPLOYER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
WEI_PER_ETHER = 10**18


class ChainError(RuntimeError):
    """The local chain could not be started or set up."""


def find_anvil() -> Path:
    """anvil from `GRID_ANVIL_BIN`, else from node_modules in the repository (`make` puts it
    there with `npm install`)."""
    if os.environ.get(ANVIL_ENV):
        return Path(os.environ[ANVIL_ENV])
    relative = Path("node_modules") / ANVIL_PACKAGE / "bin" / "anvil"
    for base in (Path.cwd(), *Path.cwd().parents, PACKAGE_DIR.parent):
        candidate = base / relative
        if candidate.is_file():
            return candidate
    raise ChainError(
        f"anvil not found: run `make` (it runs `npm install` for {ANVIL_PACKAGE}) in the "
        f"repository, or set {ANVIL_ENV} to an anvil binary"
    )


def anvil_command(anvil: Path, port: int, *, chain_id: int = 31337) -> list[str]:
    # Loopback only, and no historical states kept: a dev chain runs for days without growing.
    return [
        str(anvil),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--prune-history",
        "--chain-id",
        str(chain_id),
        "--accounts",
        "1",
    ]


def rpc(url: str, method: str, params: list[Any], timeout: float = 5) -> Any:
    response = requests.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, timeout=timeout
    )
    response.raise_for_status()
    body = response.json()
    if "error" in body:
        raise ChainError(f"{method}: {body['error'].get('message', body['error'])}")
    return body.get("result")


def wait_for_rpc(url: str, process: subprocess.Popen[bytes], deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ChainError(f"anvil exited with {process.returncode} before answering at {url}")
        try:
            rpc(url, "eth_chainId", [], timeout=1)
            return
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.05)
    raise ChainError(f"anvil did not answer at {url} within {deadline_s}s")


@dataclass
class LocalChain:
    """A running anvil with the registry deployed on it."""

    process: subprocess.Popen[bytes]
    rpc_url: str
    registry_address: str
    chain_id: int

    def fund(self, addresses: Iterable[str], ether: int = 100) -> None:
        fund(self.rpc_url, addresses, ether)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def environment(self) -> dict[str, str]:
        """The variables that point a node at this chain."""
        return {"GRID_CHAIN_RPC_URL": self.rpc_url, "GRID_REGISTRY_ADDRESS": self.registry_address}


def fund(rpc_url: str, addresses: Iterable[str], ether: int = 100) -> None:
    """Give local accounts a balance (anvil only: it sets balances directly)."""
    for address in addresses:
        rpc(rpc_url, "anvil_setBalance", [to_checksum_address(address), hex(ether * WEI_PER_ETHER)])


def start_local_chain(
    port: int,
    *,
    fund_addresses: Iterable[str] = (),
    ether: int = 100,
    chain_id: int = 31337,
    log: IO[bytes] | int | None = subprocess.DEVNULL,
) -> LocalChain:
    """Start anvil on 127.0.0.1:port, deploy the registry, fund the given addresses."""
    anvil = find_anvil()
    process = subprocess.Popen(
        anvil_command(anvil, port, chain_id=chain_id), stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_rpc(url, process)
        deployer: LocalAccount = Account.from_key(ANVIL_DEPLOYER_KEY)
        address, _ = deploy_registry(url, deployer)
        fund(url, fund_addresses, ether)
    except BaseException:
        process.terminate()
        process.wait(timeout=10)
        raise
    return LocalChain(process=process, rpc_url=url, registry_address=address, chain_id=chain_id)


def write_chain_file(path: Path, chain: LocalChain) -> None:
    """Where the chain is, for tools that start later (`grid chain start` writes it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "rpc_url": chain.rpc_url,
        "registry_address": chain.registry_address,
        "chain_id": chain.chain_id,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
