"""A real domain under gunicorn, pointed at the chain by its environment, registers itself."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from eth_account import Account

from registry.chain import LocalChain, fund
from registry.client import RegistryClient
from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD, eventually


@pytest.fixture
def live_domain_env(anvil: LocalChain) -> dict[str, str]:
    return {
        "GRID_CHAIN_RPC_URL": anvil.rpc_url,
        "GRID_REGISTRY_ADDRESS": anvil.registry_address,
        "GRID_ETH_PRIVATE_KEY": "",
    }


def test_a_gunicorn_domain_registers_and_anchors_through_its_outbox(
    live_domain: str, anvil: LocalChain, tmp_path: Path
) -> None:
    key = (tmp_path / "live" / "eth_key").read_text().strip()
    address = Account.from_key(key).address
    fund(anvil.rpc_url, [address])
    token = requests.post(
        f"{live_domain}/api/v1/auth/login",
        json={"email": OWNER_EMAIL, "password": OWNER_PASSWORD},
        timeout=10,
    ).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    queued = requests.post(f"{live_domain}/api/v1/registry/anchor", headers=auth, timeout=10)
    assert queued.status_code == 202, queued.text

    seq = queued.json()["seq"]
    reader = RegistryClient(anvil.rpc_url, anvil.registry_address)

    def landed() -> list[int] | None:
        anchors = [e.args["seq"] for e in reader.events("AuditAnchored", node=address)]
        if seq in anchors and reader.node(address).registered:
            return anchors
        requests.get(f"{live_domain}/healthz", timeout=5)  # wakes a worker's sender if idle
        return None

    anchors = eventually(landed, "the domain's registration and anchor to land")
    assert reader.node(address).role == "domain"
    assert anchors == sorted(anchors)  # periodic and on-demand anchors, in order
    status = requests.get(f"{live_domain}/api/v1/registry", headers=auth, timeout=10).json()
    assert status["node_address"] == address
