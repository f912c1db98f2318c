"""A network with a chain configured registers itself with its own key and records on chain
each domain it approves or removes, through its outbox; without a chain it works as before
and says that registry writes are off."""

from __future__ import annotations

import hashlib
import logging
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from eth_account import Account
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from grid_common.identity import load_identity
from network import NetworkConfig, create_app
from network.models import RegistryOutboxEntry
from registry.chain import LocalChain, fund
from registry.client import RegistryClient
from registry.keys import key_path
from registry.node import NodeRegistry
from tests.network.conftest import (
    NETWORK_NAME,
    OPERATOR_EMAIL,
    OPERATOR_PASSWORD,
    Signer,
    approved,
)


@pytest.fixture
def network_config(network_database_url: str, tmp_path: Path, anvil: LocalChain) -> NetworkConfig:
    """The network of every test here has a chain; no background thread sends its outbox:
    each test drains it when it wants the writes on chain."""
    return NetworkConfig(
        data_dir=tmp_path / "network",
        name=NETWORK_NAME,
        database_url=network_database_url,
        operator_email=OPERATOR_EMAIL,
        operator_password=OPERATOR_PASSWORD,
        background=False,
        chain_rpc_url=anvil.rpc_url,
        registry_address=anvil.registry_address,
    )


@pytest.fixture
def registry(network_app: Flask, anvil: LocalChain) -> NodeRegistry:
    node: NodeRegistry = network_app.extensions["registry"]
    fund(anvil.rpc_url, [node.address])
    return node


@pytest.fixture
def reader(anvil: LocalChain) -> RegistryClient:
    return RegistryClient(anvil.rpc_url, anvil.registry_address)


def registered_domain(anvil: LocalChain) -> str:
    """A fresh domain account, registered on chain as a domain; returns its address."""
    account = Account.create()
    fund(anvil.rpc_url, [account.address])
    RegistryClient(anvil.rpc_url, anvil.registry_address, account).register(
        "domain", "0x" + hashlib.sha256(account.address.encode()).hexdigest()
    )
    return str(account.address)


def join_with_address(signer: Signer, address: str, name: str = "hospital-a") -> int:
    """Ask to join as `signer`, naming `address` as the domain's on chain; the request's id."""
    body = {
        "name": name,
        "url": "http://127.0.0.1:9",
        "encryption_key": signer.identity.encryption_public_key,
        "eth_address": address,
    }
    response = signer.call("POST", "/api/v1/associations", body)
    assert response.status_code == 201, response.json
    assert response.json["eth_address"] == address.lower()
    association_id: int = response.json["id"]
    return association_id


def test_the_network_registers_itself_with_its_own_key(
    registry: NodeRegistry,
    network: FlaskClient,
    network_config: NetworkConfig,
    reader: RegistryClient,
) -> None:
    assert stat.S_IMODE(key_path(network_config.data_dir).stat().st_mode) == 0o600
    assert network.get("/api/v1/node").json["eth_address"] == registry.address

    registry.sender.run_until_idle()

    node = reader.node(registry.address)
    identity = load_identity(network_config.data_dir)
    expected = hashlib.sha256(bytes(identity.signing_key.verify_key)).hexdigest()
    assert (node.role, node.key_hash) == ("network", "0x" + expected)


def test_a_restart_does_not_register_twice(
    registry: NodeRegistry, network_app: Flask, network_config: NetworkConfig
) -> None:
    again = create_app(network_config)
    try:
        assert again.extensions["registry"].address == registry.address  # the same key
        with network_app.extensions["database"].sessionmaker() as session:
            ops = session.scalars(select(RegistryOutboxEntry.op)).all()
        assert ops == ["register"]
    finally:
        again.extensions["database"].engine.dispose()


def test_approving_and_removing_domains_land_on_chain_in_order(
    registry: NodeRegistry,
    network: FlaskClient,
    operator: dict[str, str],
    make_signer: Callable[[], Signer],
    reader: RegistryClient,
    anvil: LocalChain,
) -> None:
    staying, removed = registered_domain(anvil), registered_domain(anvil)
    staying_id = join_with_address(make_signer(), staying)
    removed_id = join_with_address(make_signer(), removed)
    for association_id in (removed_id, staying_id):
        decided = network.post(
            f"/api/v1/associations/{association_id}/approve", json={}, headers=operator
        )
        assert decided.status_code == 200, decided.json
    assert network.delete(f"/api/v1/associations/{removed_id}", headers=operator).status_code == 204

    # Nothing was sent yet: the chain sees the three writes in the order they were made.
    registry.sender.run_until_idle()

    events = reader.events("DomainAssociated", network=registry.address)
    assert [(e.args["domain"], e.args["associated"]) for e in events] == [
        (removed, True),
        (staying, True),
        (removed, False),
    ]
    associated = reader.contract.functions.associated
    assert associated(registry.address, staying).call() is True
    assert associated(registry.address, removed).call() is False


def test_a_domain_without_an_address_is_approved_with_nothing_on_chain(
    registry: NodeRegistry,
    network: FlaskClient,
    network_app: Flask,
    operator: dict[str, str],
    make_signer: Callable[[], Signer],
) -> None:
    association_id = approved(make_signer(), network, operator)
    removed = network.delete(f"/api/v1/associations/{association_id}", headers=operator)
    assert removed.status_code == 204
    with network_app.extensions["database"].sessionmaker() as session:
        ops = session.scalars(select(RegistryOutboxEntry.op)).all()
    assert ops == ["register"]


def test_rejecting_or_removing_a_pending_domain_writes_nothing(
    registry: NodeRegistry,
    network: FlaskClient,
    network_app: Flask,
    operator: dict[str, str],
    make_signer: Callable[[], Signer],
    anvil: LocalChain,
) -> None:
    rejected = join_with_address(make_signer(), registered_domain(anvil))
    pending = join_with_address(make_signer(), registered_domain(anvil))
    refused = network.post(f"/api/v1/associations/{rejected}/reject", json={}, headers=operator)
    assert refused.status_code == 200, refused.json
    assert network.delete(f"/api/v1/associations/{pending}", headers=operator).status_code == 204
    with network_app.extensions["database"].sessionmaker() as session:
        ops = session.scalars(select(RegistryOutboxEntry.op)).all()
    assert ops == ["register"]


def test_without_a_chain_the_network_works_and_says_registry_writes_are_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="network.registry_writes"):
        app = create_app(
            NetworkConfig(
                data_dir=tmp_path,
                operator_email=OPERATOR_EMAIL,
                operator_password=OPERATOR_PASSWORD,
                background=False,
            )
        )
    try:
        assert "registry writes are off" in caplog.text and "GRID_CHAIN_RPC_URL" in caplog.text
        client = app.test_client()
        assert client.get("/api/v1/node").json["eth_address"] is None
        token = client.post(
            "/api/v1/auth/login", json={"email": OPERATOR_EMAIL, "password": OPERATOR_PASSWORD}
        ).json["access_token"]
        signer = Signer(client, app.extensions["identity"].node_id)
        association_id = join_with_address(signer, "0x" + "ab" * 20)
        decided = client.post(
            f"/api/v1/associations/{association_id}/approve",
            json={},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert decided.status_code == 200 and decided.json["status"] == "approved"
        with app.extensions["database"].sessionmaker() as session:
            assert session.scalars(select(RegistryOutboxEntry)).all() == []
        assert not key_path(tmp_path).exists()
    finally:
        app.extensions["background"].stop()
        app.extensions["database"].engine.dispose()
