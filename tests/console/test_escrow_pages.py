"""A federated job's escrow and payouts on the network console, read from a real anvil
chain by the network itself: the chain job id, the bounty the data scientist escrowed, the
stake per participant and, after finalize, each domain's payout, named from the network's
own records of the domains' addresses."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from eth_account import Account
from flask import Flask

from grid_common.ether import parse_wei
from registry.bounty import fund_when_open
from registry.chain import LocalChain, fund
from registry.client import RegistryClient
from registry.node import NodeRegistry
from tests.console.conftest import sign_in
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
