"""A real network under gunicorn and a domain, both pointed at the chain: the domain sends
its address when it joins, and the network's approval and the domain's leaving land on chain
from the network's own key, in order."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from eth_account import Account
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

import grid_cli as grid
from domain.models import NetworkMembership
from registry.chain import LocalChain, fund
from registry.client import RegistryClient
from tests.conftest import eventually
from tests.network.conftest import NETWORK_NAME, OPERATOR_EMAIL, OPERATOR_PASSWORD, LiveNode
from tests.registry.test_domain import domain_config

__all__ = ["domain_config"]  # the domain on the chain, as the registry's domain tests make it


def after(poke: Callable[[], object], check: Callable[[], Any]) -> Callable[[], Any]:
    """`check`, each time after `poke`: a request that starts or wakes the sender thread of
    the serving process."""

    def poked() -> Any:
        poke()
        return check()

    return poked


@pytest.fixture
def chain_network(
    network_database_url: str, tmp_path: Path, anvil: LocalChain
) -> Iterator[LiveNode]:
    node = LiveNode(
        "network",
        {
            "GRID_DATA_DIR": str(tmp_path / "live-network"),
            "GRID_DATABASE_URL": network_database_url,
            "GRID_NODE_NAME": NETWORK_NAME,
            "GRID_OPERATOR_EMAIL": OPERATOR_EMAIL,
            "GRID_OPERATOR_PASSWORD": OPERATOR_PASSWORD,
            "GRID_CHAIN_RPC_URL": anvil.rpc_url,
            "GRID_REGISTRY_ADDRESS": anvil.registry_address,
            "GRID_ETH_PRIVATE_KEY": "",
        },
        tmp_path / "network.log",
    )
    yield node
    node.stop()


def test_a_domain_joins_and_leaves_a_network_on_chain(
    app: Flask,
    client: FlaskClient,
    headers: dict[str, dict[str, str]],
    chain_network: LiveNode,
    anvil: LocalChain,
    tmp_path: Path,
) -> None:
    key = (tmp_path / "live-network" / "eth_key").read_text().strip()
    network_address = Account.from_key(key).address
    domain_address = app.extensions["registry"].address
    fund(anvil.rpc_url, [network_address, domain_address])
    info = requests.get(f"{chain_network.url}/api/v1/node", timeout=10).json()
    assert info["eth_address"] == network_address
    reader = RegistryClient(anvil.rpc_url, anvil.registry_address)
    # The contract associates only a registered domain: the domain registers on its start.
    eventually(
        after(lambda: client.get("/healthz"), lambda: reader.node(domain_address).registered),
        "the domain's registration",
    )

    owner = headers["owner"]
    joined = client.post("/api/v1/networks", json={"url": chain_network.url}, headers=owner)
    assert joined.status_code == 201, joined.json
    # The domain keeps the network's address from its node info: the only coordinator whose
    # chain jobs it will stake or attest on for this network.
    with app.extensions["database"].sessionmaker() as session:
        membership = session.scalar(select(NetworkMembership))
        assert membership is not None and membership.eth_address == network_address.lower()
    network = grid.connect(chain_network.url)
    network.sign_in(OPERATOR_EMAIL, OPERATOR_PASSWORD)
    [request] = network.associations()
    assert request.eth_address == domain_address.lower()
    network.approve(request.id)

    def healthz() -> object:
        return requests.get(f"{chain_network.url}/healthz", timeout=5)

    associated = reader.contract.functions.associated
    eventually(
        after(healthz, lambda: associated(network_address, domain_address).call()),
        "the association",
    )
    assert reader.node(network_address).role == "network"

    left = client.delete(f"/api/v1/networks/{joined.json['network_id']}", headers=owner)
    assert left.status_code == 204
    events = eventually(
        after(
            healthz,
            lambda: len(e := reader.events("DomainAssociated", network=network_address)) == 2 and e,
        ),
        "the association's end",
    )
    assert [(e.args["domain"], e.args["associated"]) for e in events] == [
        (domain_address, True),
        (domain_address, False),
    ]
    assert associated(network_address, domain_address).call() is False
