"""A federated job of domains that are on chain is one job there: the network creates it as
the job starts, with the approving domains as participants, logs each closed round, tells
each domain where to attest, and finalizes the job once the attestations are in."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from eth_account import Account
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from grid_common.db import db_session
from grid_common.ether import parse_wei
from network import federated, registry_writes
from network.api.federated_domains import _invitation
from network.models import Association, FederatedJob, FederatedRound, RegistryOutboxEntry
from network.registry_writes import job_key_for
from registry.bounty import fund_when_open, scientist_account
from registry.chain import LocalChain, fund
from registry.client import RegistryClient, job_id_of
from registry.node import NodeRegistry
from registry.outbox import ExpectedJob
from registry.verify import Expected, verify_job
from tests.network.conftest import Signer, dataset
from tests.network.test_federated import (  # noqa: F401 (fixtures)
    NAMES,
    SAMPLES,
    Job,
    _finish,
    _send_all,
    created,
    job_keys,
    model_files,
    scientist,
    start_job,
)
from tests.network.test_registry import (  # noqa: F401 (fixtures)
    join_with_address,
    network_config,
    reader,
    registry,
)
from tests.registry.conftest import advance_time, chain_now


@pytest.fixture
def domain_keys(anvil: LocalChain) -> list[RegistryClient]:
    """Each domain's own key on chain, registered as a domain, in the job's order."""
    clients = []
    for _ in NAMES:
        account = Account.create()
        fund(anvil.rpc_url, [account.address])
        client = RegistryClient(anvil.rpc_url, anvil.registry_address, account)
        client.register("domain", "0x" + hashlib.sha256(account.address.encode()).hexdigest())
        clients.append(client)
    return clients


@pytest.fixture
def addresses(domain_keys: list[RegistryClient]) -> list[str]:
    """One registered domain address per domain of the job, in the job's order."""
    return [c.sender for c in domain_keys]


@pytest.fixture
def domains(
    network: FlaskClient,
    operator: dict[str, str],
    make_signer: Callable[[], Signer],
    addresses: list[str],
) -> list[Signer]:
    """The job's domains, each approved with its address on chain and publishing `records`."""
    signers = []
    for name, address in zip(NAMES, addresses, strict=True):
        signer = make_signer()
        association_id = join_with_address(signer, address, name=name)
        decided = network.post(
            f"/api/v1/associations/{association_id}/approve", json={}, headers=operator
        )
        assert decided.status_code == 200, decided.json
        assert signer.push([dataset("records")]).status_code == 200
        signers.append(signer)
    return signers


def test_a_federated_job_is_one_job_on_chain_with_every_round(
    start_job: Callable[..., Job],  # noqa: F811
    registry: NodeRegistry,  # noqa: F811
    network_app: Flask,
    reader: RegistryClient,  # noqa: F811
    addresses: list[str],
) -> None:
    job = start_job("none")
    for number in (1, 2):
        _send_all(job, number)
    assert job.view()["status"] == "finishing"

    registry.sender.run_until_idle()

    with network_app.extensions["database"].sessionmaker() as session:
        row = session.get(FederatedJob, job.id)
        assert row is not None
        digests = session.scalars(
            select(FederatedRound.aggregate_digest)
            .where(FederatedRound.job_id == job.id)
            .order_by(FederatedRound.number)
        ).all()
    chain_id = job_id_of(registry.address, job_key_for(row))
    record = reader.job(chain_id)
    assert record.coordinator == registry.address
    assert record.spec_hash == "0x" + row.spec_hash
    assert reader.participants(chain_id) == addresses
    rounds = reader.rounds(chain_id)
    assert [r.aggregate_hash for r in rounds] == ["0x" + str(d) for d in digests]
    assert [(r.counted, r.samples) for r in rounds] == [(0b111, list(SAMPLES))] * 2


def test_a_job_with_a_domain_off_chain_is_not_recorded(
    created: Callable[..., Job],  # noqa: F811
    registry: NodeRegistry,  # noqa: F811
    network_app: Flask,
) -> None:
    job = created("none")
    # A domain without an address is not on chain, so a job it takes part in cannot be.
    with network_app.extensions["database"].sessionmaker() as session, session.begin():
        first = session.scalars(select(Association).where(Association.name == NAMES[0])).one()
        first.eth_address = None
    for signer in job.domains:
        assert job.decide(signer).status_code == 200
    for number in (1, 2):
        _send_all(job, number)
    with network_app.extensions["database"].sessionmaker() as session:
        ops = session.scalars(select(RegistryOutboxEntry.op)).all()
    assert ops == ["register", "set_association", "set_association", "set_association"]


def _attest_to_network(job: Job, hashes: list[str]) -> list[dict[str, object]]:
    states = []
    for signer, model_hash in zip(job.domains, hashes, strict=True):
        response = signer.call("POST", job.path("/attestation"), {"model_hash": model_hash})
        assert response.status_code == 200, response.json
        states.append(response.json)
    return states


def _chain_id(network_app: Flask, registry: NodeRegistry, job: Job) -> str:  # noqa: F811
    with network_app.extensions["database"].sessionmaker() as session:
        row = session.get(FederatedJob, job.id)
        assert row is not None
        return job_id_of(registry.address, job_key_for(row))


def test_each_domain_attests_on_the_networks_job_and_the_network_finalizes_it(
    start_job: Callable[..., Job],  # noqa: F811
    registry: NodeRegistry,  # noqa: F811
    network_app: Flask,
    reader: RegistryClient,  # noqa: F811
    domain_keys: list[RegistryClient],
    anvil: LocalChain,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = start_job("none", rounds=1)
    chain_id = _chain_id(network_app, registry, job)
    # The data scientist escrows a bounty from a key file of their own as the job runs.
    funder = Account.create()
    fund(anvil.rpc_url, [funder.address])
    key_file = tmp_path / "scientist_key"
    key_file.write_text(funder.key.hex())
    key_file.chmod(0o600)
    monkeypatch.delenv("GRID_ETH_PRIVATE_KEY", raising=False)
    with pytest.raises(ValueError, match="GRID_ETH_PRIVATE_KEY"):
        scientist_account()
    payer = RegistryClient(anvil.rpc_url, anvil.registry_address, scientist_account(key_file))
    registry.sender.run_until_idle()  # the network's createJob
    fund_when_open(payer, chain_id, parse_wei("0.05 ether"))
    # What each domain's sender checks before it stakes or attests holds for the network's
    # job: coordinated from the address in the network's node info, with the spec hash of the
    # invitation it signed (as the invitation writes it), each domain among its participants.
    node_info = job.network.get("/api/v1/node").json
    on_chain = reader.job(chain_id)
    with network_app.app_context():
        session = db_session()
        row = session.get(FederatedJob, job.id)
        assert row is not None
        for participant in federated.participants_of(session, row):
            invitation = _invitation(session, row, participant)
            expect = ExpectedJob(node_info["eth_address"], invitation.spec_hash).as_args()
            assert (on_chain.coordinator.lower(), on_chain.spec_hash) == tuple(expect.values())
    assert set(reader.participants(chain_id)) == {key.sender for key in domain_keys}
    digest = "0x" + hashlib.sha256(_finish(job)).hexdigest()

    states = _attest_to_network(job, [digest.removeprefix("0x")] * len(NAMES))

    # Each domain learns where to attest and after how many logged rounds.
    assert {(s["registry_job_id"], s["registry_rounds"]) for s in states} == {(chain_id, 1)}
    registry.sender.run_until_idle()
    assert reader.job(chain_id).status == "open"  # finalize waits for the attestations
    for key in domain_keys[:-1]:
        key.attest(chain_id, digest)
    registry.sender.run_until_idle()
    assert reader.job(chain_id).status == "open"  # one is still missing
    domain_keys[-1].attest(chain_id, digest)
    registry.sender.run_until_idle()
    record = reader.job(chain_id)
    assert (record.status, record.model_hash, record.rounds) == ("finalized", digest, 1)
    assert record.attestations == len(NAMES)
    # The bounty is paid by contribution: samples times rounds counted.
    paid = {
        e.args["participant"]: (e.args["reward"], e.args["contribution"])
        for e in reader.events("Payout", jobId=chain_id)
    }
    bounty = parse_wei("0.05 ether")
    assert paid == {
        key.sender: (bounty * n // sum(SAMPLES), n)
        for key, n in zip(domain_keys, SAMPLES, strict=True)
    }


def test_a_domain_that_attests_another_hash_is_outvoted_forfeits_its_stake_and_is_named(
    created: Callable[..., Job],  # noqa: F811
    registry: NodeRegistry,  # noqa: F811
    network_app: Flask,
    reader: RegistryClient,  # noqa: F811
    domain_keys: list[RegistryClient],
    anvil: LocalChain,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A short attestation window, counted from the chain's clock (the session's chain may
    # be ahead of this machine's): moving the chain past it barely moves it for other tests.
    ahead = max(0, chain_now(anvil) - int(time.time()))
    monkeypatch.setattr(registry_writes, "ATTESTATION_WINDOW_S", ahead + 60)
    job = created("none", rounds=1)
    # Two owners require a stake; the job asks every participant the largest.
    stake = parse_wei("0.01 ether")
    for signer, required in zip(job.domains, (0, stake, stake // 2), strict=True):
        body = {"approved": True, "reason": "ok", "stake_wei": required}
        assert signer.call("POST", job.path("/decision"), body).status_code == 200
    digest = hashlib.sha256(_finish(job)).hexdigest()
    other = hashlib.sha256(b"another model").hexdigest()
    chain_id = _chain_id(network_app, registry, job)
    states = _attest_to_network(job, [digest, digest, other])
    assert {s["registry_stake_wei"] for s in states} == {stake}
    assert job.view()["status"] == "failed"  # the network saw them differ
    registry.sender.run_until_idle()  # the job and its round on chain; finalize waits
    assert reader.job(chain_id).stake == stake
    for key, model_hash in zip(domain_keys, (digest, digest, other), strict=True):
        key.deposit_stake(chain_id, stake)
        key.attest(chain_id, "0x" + model_hash)

    registry.sender.run_until_idle()
    assert reader.job(chain_id).status == "open"  # not unanimous: it waits for the deadline
    advance_time(anvil, int(job.view()["round_timeout"]) + 120)
    registry.sender.run_until_idle()

    record = reader.job(chain_id)
    assert (record.status, record.model_hash) == ("finalized", "0x" + digest)
    names = dict(zip(NAMES, (k.sender for k in domain_keys), strict=True))
    proof = verify_job(
        reader,
        chain_id,
        model_hash=digest,
        expected=Expected(coordinator=registry.address, participants=names),
    )
    failed = {c.name: c.detail for c in proof.checks if not c.ok}
    assert list(failed) == ["attestations"]
    assert NAMES[2] in failed["attestations"] and NAMES[0] not in failed["attestations"]
    rendered = proof.render()
    assert "NOT VERIFIED" in rendered and "✓ coordinator" in rendered
    assert "✓ participants" in rendered and "✓ your model" in rendered
    # The outvoted domain forfeits its stake to those that attested the agreed hash.
    payouts = {p.participant: (p.eligible, p.forfeited, p.deposit_returned) for p in proof.payouts}
    assert payouts == {
        domain_keys[0].sender: (True, 0, stake),
        domain_keys[1].sender: (True, 0, stake),
        domain_keys[2].sender: (False, stake, 0),
    }
    assert sum(p.reward for p in proof.payouts) == stake
    assert "deposit forfeited 0.01 ETH" in rendered


def test_a_job_cancelled_before_any_attestation_is_called_off_and_its_bounty_reclaimed(
    start_job: Callable[..., Job],  # noqa: F811
    registry: NodeRegistry,  # noqa: F811
    network_app: Flask,
    network: FlaskClient,
    reader: RegistryClient,  # noqa: F811
    anvil: LocalChain,
) -> None:
    job = start_job("none", rounds=2)
    chain_id = _chain_id(network_app, registry, job)
    registry.sender.run_until_idle()
    funder = Account.create()
    fund(anvil.rpc_url, [funder.address])
    payer = RegistryClient(anvil.rpc_url, anvil.registry_address, funder)
    fund_when_open(payer, chain_id, parse_wei("0.05 ether"))

    cancelled = network.post(job.path("/cancel"), headers=job.scientist)
    assert cancelled.status_code == 200, cancelled.json
    registry.sender.run_until_idle()

    assert reader.job(chain_id).status == "cancelled"
    payer.reclaim_bounty(chain_id)
    assert reader.balance(funder.address) == parse_wei("0.05 ether")
