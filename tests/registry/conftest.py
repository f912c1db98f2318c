"""Registry fixtures: fresh funded accounts on the session's anvil, chain time, test contracts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy.orm import Session, sessionmaker

from grid_common.db import make_engine
from registry.build import compile_contract
from registry.chain import LocalChain, fund, rpc
from registry.client import RegistryClient
from registry.errors import RegistryError

HERE = Path(__file__).parent
ETHER = 10**18
HOUR = 3600

ClientFactory = Callable[..., RegistryClient]


@pytest.fixture
def new_client(anvil: LocalChain) -> ClientFactory:
    """A client with a brand-new funded key; `role=` registers it first. Tests share one
    chain, so each one works with accounts and jobs nobody else touches."""

    def make(role: str | None = None, *, ether: int = 100) -> RegistryClient:
        account: LocalAccount = Account.create()
        fund(anvil.rpc_url, [account.address], ether)
        client = RegistryClient(anvil.rpc_url, anvil.registry_address, account)
        if role is not None:
            client.register(role, "0x" + account.address[2:].lower().rjust(64, "0"))  # type: ignore[arg-type]
        return client

    return make


def chain_now(anvil: LocalChain) -> int:
    block = rpc(anvil.rpc_url, "eth_getBlockByNumber", ["latest", False])
    return int(block["timestamp"], 16)


def advance_time(anvil: LocalChain, seconds: int) -> None:
    """Move the chain's clock forward (deadlines in tests are set from chain time)."""
    rpc(anvil.rpc_url, "evm_increaseTime", [seconds])
    rpc(anvil.rpc_url, "evm_mine", [])


def reverts(reason: str) -> Any:
    """`with reverts("NotCoordinator"):` — the call must revert with that custom error."""
    return pytest.raises(RegistryError, match=rf"reverted: {reason}\b")


@pytest.fixture(scope="session")
def attacker_artifact() -> dict[str, Any]:
    return compile_contract(HERE / "ReentrantWithdrawer.sol", "ReentrantWithdrawer")


def deploy(client: RegistryClient, artifact: dict[str, Any], *args: Any) -> Any:
    """Deploy a test contract from `client`'s account; returns a web3 contract object."""
    w3 = client.w3
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    assert client.account is not None
    tx = factory.constructor(*args).build_transaction(
        {"from": client.sender, "nonce": client.pending_nonce()}
    )
    signed = client.account.sign_transaction(tx)
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(signed.raw_transaction)
    )
    assert receipt["status"] == 1
    return w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])


def send(client: RegistryClient, call: Any, value: int = 0) -> Any:
    """Send a call to a test contract from `client`'s account and wait for its receipt."""
    assert client.account is not None
    tx = call.build_transaction(
        {"from": client.sender, "nonce": client.pending_nonce(), "value": value}
    )
    signed = client.account.sign_transaction(tx)
    w3 = client.w3
    return w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on a fresh, migrated domain database (it holds the outbox tables)."""
    engine = make_engine(database_url)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()
