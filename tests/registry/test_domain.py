"""A domain with a chain configured registers itself and anchors its audit log; without one
it works as before and says that registry writes are off."""

from __future__ import annotations

import hashlib
import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from domain import DomainConfig, audit, create_app
from domain.models import AuditHead, RegistryOutboxEntry
from domain.registry_writes import DomainRegistry, enqueue_federated_attestation
from grid_common.identity import load_identity
from registry.chain import LocalChain, fund
from registry.client import RegistryClient
from registry.keys import key_path
from tests.conftest import NODE_NAME, OWNER_EMAIL, OWNER_PASSWORD, eventually


@pytest.fixture
def domain_config(database_url: str, tmp_path: Path, anvil: LocalChain) -> DomainConfig:
    return DomainConfig(
        data_dir=tmp_path / "node",
        name=NODE_NAME,
        database_url=database_url,
        owner_email=OWNER_EMAIL,
        owner_password=OWNER_PASSWORD,
        chain_rpc_url=anvil.rpc_url,
        registry_address=anvil.registry_address,
    )


@pytest.fixture
def app(domain_config: DomainConfig, anvil: LocalChain) -> Iterator[Flask]:
    application = create_app(domain_config)
    registry: DomainRegistry = application.extensions["registry"]
    fund(anvil.rpc_url, [registry.address])
    yield application
    registry.sender.stop()
    application.extensions["database"].engine.dispose()


def test_the_domain_registers_itself_with_its_own_key(
    app: Flask, client: FlaskClient, domain_config: DomainConfig, anvil: LocalChain
) -> None:
    registry: DomainRegistry = app.extensions["registry"]
    path = key_path(domain_config.data_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    client.get("/healthz")  # the first request starts the sender in this process

    reader = RegistryClient(anvil.rpc_url, anvil.registry_address)
    node = eventually(lambda: (n := reader.node(registry.address)).registered and n, "registration")
    identity = load_identity(domain_config.data_dir)
    expected = hashlib.sha256(bytes(identity.signing_key.verify_key)).hexdigest()
    assert (node.role, node.key_hash) == ("domain", "0x" + expected)


def test_a_restart_does_not_register_twice(app: Flask, domain_config: DomainConfig) -> None:
    app.extensions["registry"].sender.stop()
    again = create_app(domain_config)
    try:
        with app.extensions["database"].sessionmaker() as session:
            ops = session.scalars(select(RegistryOutboxEntry.op)).all()
        assert ops.count("register") == 1
    finally:
        again.extensions["database"].engine.dispose()


def test_anchoring_on_demand_puts_the_audit_head_on_chain(
    app: Flask, client: FlaskClient, headers: dict[str, dict[str, str]], anvil: LocalChain
) -> None:
    registry: DomainRegistry = app.extensions["registry"]
    response = client.post("/api/v1/registry/anchor", headers=headers["compliance_officer"])
    assert response.status_code == 202, response.json
    queued = response.json
    with app.extensions["database"].sessionmaker() as session:
        head = session.get(AuditHead, 1)
        assert head is not None and (head.seq, head.hash) == (
            queued["seq"],
            queued["head_hash"][2:],
        )

    reader = RegistryClient(anvil.rpc_url, anvil.registry_address)
    # The sender's first tick may anchor the head the fixtures' audit entries made, before this
    # request: the on-demand anchor is the one with the queued sequence number.
    (event,) = eventually(
        lambda: [
            e
            for e in reader.events("AuditAnchored", node=registry.address)
            if e.args["seq"] == queued["seq"]
        ],
        "the anchor landing",
    )
    assert event.args["seq"] == queued["seq"]
    assert event.args["headHash"] == queued["head_hash"]

    status = eventually(
        lambda: (
            (s := client.get("/api/v1/registry", headers=headers["data_scientist"]).json)["outbox"][
                "pending"
            ]
            + s["outbox"]["signed"]
            == 0
            and s
        ),
        "the outbox draining",
    )
    assert status["enabled"] and status["node_address"] == registry.address
    assert status["last_anchor"]["status"] == "confirmed"
    assert status["last_anchor"]["tx_hash"].startswith("0x")


def test_a_changed_audit_head_is_anchored_once_per_interval(app: Flask) -> None:
    registry: DomainRegistry = app.extensions["registry"]
    registry.sender.stop()
    sessions = app.extensions["database"].sessionmaker
    registry.anchor_interval_s = 0
    with sessions() as session, session.begin():
        registry.anchor_if_due(session)  # the owner's creation is in the log: anchor it
        registry.anchor_if_due(session)  # same head: nothing new
    # A change made without a request: a request would start the sender thread again, and
    # its own anchoring would race the calls this test makes.
    with sessions() as session, session.begin():
        audit.append(session, actor="test", action="test.changed")
    registry.anchor_interval_s = 3600
    with sessions() as session, session.begin():
        registry.anchor_if_due(session)  # changed head, but the interval has not passed
    registry.anchor_interval_s = 0
    with sessions() as session, session.begin():
        registry.anchor_if_due(session)
    with sessions() as session:
        anchors = session.scalars(
            select(RegistryOutboxEntry).where(RegistryOutboxEntry.op == "anchor")
        ).all()
        head = session.get(AuditHead, 1)
    assert head is not None
    assert len(anchors) == 2 and anchors[-1].args["seq"] == head.seq


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # what is queued, not SQL
def test_a_federated_attestation_names_the_network_and_spec_it_must_find_on_chain(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    registry: DomainRegistry = app.extensions["registry"]
    registry.sender.stop()
    sessions = app.extensions["database"].sessionmaker
    job_id, model, spec = "0x" + "ab" * 32, "cd" * 32, "ef" * 32  # the invitation's spec hash
    network = "0x" + "12" * 20
    with app.app_context(), sessions() as session, session.begin():
        # A network that gave no address at join: there is nothing to check its job against.
        with caplog.at_level(logging.WARNING, logger="domain.registry_writes"):
            enqueue_federated_attestation(
                session, job_id, model, 2, coordinator=None, spec_hash=spec, stake_wei=5
            )
        assert "gave no Ethereum address" in caplog.text
        enqueue_federated_attestation(
            session,
            job_id,
            model,
            2,
            coordinator=network,
            spec_hash=spec,
            stake_wei=5,
            willing_wei=5,
        )
    with sessions() as session:
        rows = session.scalars(
            select(RegistryOutboxEntry).where(RegistryOutboxEntry.op != "register")
        ).all()
        queued = [(r.op, r.args.get("expect")) for r in rows]
    expect = {"coordinator": network, "spec_hash": "0x" + spec}
    assert queued == [("deposit_stake", expect), ("attest", expect)]


def test_without_a_chain_the_domain_works_and_says_registry_writes_are_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="domain.registry_writes"):
        app = create_app(
            DomainConfig(data_dir=tmp_path, owner_email=OWNER_EMAIL, owner_password=OWNER_PASSWORD)
        )
    assert "registry writes are off" in caplog.text and "GRID_CHAIN_RPC_URL" in caplog.text
    client = app.test_client()
    token = client.post(
        "/api/v1/auth/login", json={"email": OWNER_EMAIL, "password": OWNER_PASSWORD}
    ).json["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    status = client.get("/api/v1/registry", headers=auth).json
    assert status["enabled"] is False and "GRID_REGISTRY_ADDRESS" in status["message"]
    refused = client.post("/api/v1/registry/anchor", headers=auth)
    assert refused.status_code == 409 and refused.json["error"]["code"] == "registry_off"
    assert not key_path(tmp_path).exists()
    app.extensions["database"].engine.dispose()
