"""A federated job's escrow and payouts on the network console, read from a real anvil
chain by the network itself: the chain job id, the bounty the data scientist escrowed, the
stake per participant and, after finalize, each domain's payout, named from the network's
own records of the domains' addresses."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from eth_account import Account
from flask import Flask
from flask.testing import FlaskClient

from domain import DomainConfig, registry_writes
from domain.models import FederatedParticipation
from domain.registry_writes import DomainRegistry
from grid_common.db import db_session
from grid_common.ether import parse_wei
from registry.bounty import fund_when_open
from registry.chain import LocalChain, fund
from registry.client import RegistryClient, job_id_of
from registry.escrow import read_escrow
from registry.node import NodeRegistry
from tests.conftest import NODE_NAME, OWNER_EMAIL, OWNER_PASSWORD
from tests.console.conftest import sign_in
from tests.console.test_federated_request_page import _file_federated_request
from tests.domain.uploads import upload
from tests.network.conftest import (  # noqa: F401 (fixtures)
    OPERATOR_EMAIL,
    OPERATOR_PASSWORD,
    operator,
)
from tests.network.test_federated import (  # noqa: F401 (fixtures)
    NAMES,
    SAMPLES,
    Job,
    _finish,
    created,
    job_keys,
    model_files,
    scientist,
    start_job,
)
from tests.network.test_federated_chain import (  # noqa: F401 (fixtures)
    _attest_to_network,
    _chain_id,
    addresses,
    domain_keys,
    domains,
)
from tests.network.test_registry import network_config, registry  # noqa: F401 (fixtures)
from tests.registry.conftest import chain_now


def _text(page: str) -> str:
    return " ".join(page.split())


def test_the_job_page_shows_the_escrow_then_each_domains_payout(
    start_job: Callable[..., Job],  # noqa: F811
    registry: NodeRegistry,  # noqa: F811
    network_app: Flask,
    domain_keys: list[RegistryClient],  # noqa: F811
    anvil: LocalChain,
) -> None:
    job = start_job("none", rounds=1)
    chain_id = _chain_id(network_app, registry, job)
    console = network_app.test_client()
    sign_in(console, OPERATOR_EMAIL, OPERATOR_PASSWORD)

    queued = _text(console.get(f"/federated/{job.id}").get_data(as_text=True))
    assert chain_id in queued and "not on chain yet" in queued

    funder = Account.create()
    fund(anvil.rpc_url, [funder.address])
    registry.sender.run_until_idle()  # the network's createJob
    payer = RegistryClient(anvil.rpc_url, anvil.registry_address, funder)
    fund_when_open(payer, chain_id, parse_wei("0.05 ether"))
    running = _text(console.get(f"/federated/{job.id}").get_data(as_text=True))
    assert 'Bounty escrowed</dt><dd data-testid="escrow-bounty">0.05 ETH' in running
    assert 'Stake per participant</dt><dd data-testid="escrow-stake">0 ETH' in running
    assert ", ".join(NAMES) in running and "Payouts come at finalize" in running

    digest = "0x" + hashlib.sha256(_finish(job)).hexdigest()
    _attest_to_network(job, [digest.removeprefix("0x")] * len(NAMES))
    registry.sender.run_until_idle()
    for key in domain_keys:
        key.attest(chain_id, digest)
    registry.sender.run_until_idle()  # finalize

    paid = _text(console.get(f"/federated/{job.id}").get_data(as_text=True))
    assert "<dt>Status</dt><dd>finalized</dd>" in paid
    bounty = parse_wei("0.05 ether")
    for name, samples in zip(NAMES, SAMPLES, strict=True):
        reward = f"{bounty * samples // sum(SAMPLES) / 1e18:.6g} ETH"
        assert (
            f'<tr data-testid="payout-{name}"> <td>{name}</td><td>yes</td>'
            f'<td class="num">{samples}</td> <td class="num">{reward}</td>'
        ) in paid, paid


@pytest.fixture
def domain_config(database_url: str, tmp_path: Path, anvil: LocalChain) -> DomainConfig:
    """The domain of the tests here records on chain; each drains its outbox when it wants."""
    return DomainConfig(
        data_dir=tmp_path / "domain",
        name=NODE_NAME,
        database_url=database_url,
        owner_email=OWNER_EMAIL,
        owner_password=OWNER_PASSWORD,
        chain_rpc_url=anvil.rpc_url,
        registry_address=anvil.registry_address,
        background=False,
    )


def test_the_domain_request_page_shows_the_networks_job_it_attested_and_its_payout(
    app: Flask, client: FlaskClient, headers: dict[str, dict[str, str]], anvil: LocalChain
) -> None:
    node: DomainRegistry = app.extensions["registry"]
    fund(anvil.rpc_url, [node.address])
    node.sender.run_until_idle()  # its registration
    assert upload(client, headers["owner"]).status_code == 201
    network_key = Account.create()
    fund(anvil.rpc_url, [network_key.address])
    net = RegistryClient(anvil.rpc_url, anvil.registry_address, network_key)
    net.register("network", "0x" + "ab" * 32)
    bounty = parse_wei("0.01 ether")
    net.create_job(
        "federated/7", "0x" + "22" * 32, [node.address], deadline=chain_now(anvil) + 3600,
        bounty=bounty,
    )  # fmt: skip
    chain_id = job_id_of(net.sender, "federated/7")
    request_id = _file_federated_request(app, "none", 7)
    console = app.test_client()
    sign_in(console, OWNER_EMAIL, OWNER_PASSWORD)
    # Not attested yet: this domain has recorded no chain job for the request.
    assert 'data-testid="escrow"' not in console.get(f"/requests/{request_id}").get_data(
        as_text=True
    )

    digest = "4" * 64
    with app.app_context():
        session = db_session()
        participation = session.get(FederatedParticipation, request_id)
        assert participation is not None
        participation.attested_hash = digest
        registry_writes.enqueue_federated_attestation(
            session, chain_id, digest, 1, coordinator=net.sender, spec_hash="22" * 32
        )
        session.commit()
    net.log_round(chain_id, "0x" + "33" * 32, 1, [30])
    node.sender.run_until_idle()
    net.finalize(chain_id)

    page = _text(console.get(f"/requests/{request_id}").get_data(as_text=True))
    assert chain_id in page and "0.01 ETH" in page, page
    assert (
        '<tr data-testid="payout-this domain"> <td>this domain</td><td>yes</td>'
        '<td class="num">30</td> <td class="num">0.01 ETH</td>'
    ) in page


def test_a_chain_that_is_down_shows_as_such_not_as_an_error_page() -> None:
    escrow = read_escrow("http://127.0.0.1:9", "0x" + "11" * 20, "0x" + "22" * 32, {})
    assert escrow.error is not None and "chain unreachable" in escrow.error
    assert (escrow.bounty_wei, escrow.payouts) == (0, [])
