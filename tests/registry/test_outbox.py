"""The outbox commits with the change it records; the sender lands every entry, in order, once."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from eth_account import Account
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from domain import audit
from domain.models import AuditHead, RegistryOutboxEntry, RegistrySenderLease
from registry.chain import LocalChain, fund
from registry.client import RegistryClient, job_id_of, round_mask
from registry.errors import ChainUnavailable
from registry.outbox import ExpectedJob, Outbox
from registry.sender import OutboxSender
from tests.conftest import free_port
from tests.proxy import Forwarder
from tests.registry.conftest import chain_now

OUTBOX = Outbox(RegistryOutboxEntry)


def h() -> str:
    return "0x" + secrets.token_hex(32)


def node_client(anvil: LocalChain, url: str | None = None) -> RegistryClient:
    account = Account.create()
    fund(anvil.rpc_url, [account.address])
    return RegistryClient(
        url or anvil.rpc_url, anvil.registry_address, account, timeout=2, transport_retries=False
    )


def sender_for(sessions: sessionmaker[Session], client: RegistryClient, **kw: Any) -> OutboxSender:
    return OutboxSender(sessions, RegistryOutboxEntry, RegistrySenderLease, client, **kw)


def entries(sessions: sessionmaker[Session]) -> list[RegistryOutboxEntry]:
    with sessions() as session:
        return list(session.scalars(select(RegistryOutboxEntry).order_by(RegistryOutboxEntry.id)))


def anchored_seqs(client: RegistryClient) -> list[int]:
    return [e.args["seq"] for e in client.events("AuditAnchored", node=client.sender)]


def test_entries_commit_and_roll_back_with_the_change_they_record(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session, session.begin():
        audit.append(session, actor="a@example.org", action="x")
        OUTBOX.anchor(session, 1, h())
        session.rollback()
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(RegistryOutboxEntry)) == 0
        assert session.get(AuditHead, 1).seq == 0  # type: ignore[union-attr]

    with sessions() as session, session.begin():
        entry = audit.append(session, actor="a@example.org", action="x")
        OUTBOX.anchor(session, entry.seq, entry.hash)
    (row,) = entries(sessions)
    assert (row.op, row.status, row.args["seq"]) == ("anchor", "pending", 1)


def test_commit_wakes_the_sender_and_a_rollback_does_not(sessions: sessionmaker[Session]) -> None:
    woken: list[bool] = []
    outbox = Outbox(RegistryOutboxEntry, notify=lambda: woken.append(True))
    with sessions() as session, session.begin():
        outbox.anchor(session, 1, h())
        outbox.anchor(session, 2, h())
        assert woken == []
    assert woken == [True]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: OUTBOX.anchor(s, 1, "0x12"), "64 hex digits"),
        (lambda s: OUTBOX.create_job(s, "k", h(), []), "at least one participant"),
        (lambda s: OUTBOX.create_job(s, "k", h(), ["0xnope"]), "not an Ethereum address"),
        (lambda s: OUTBOX.log_round(s, h(), h(), 0b11, [1]), "one count per bit"),
        (lambda s: OUTBOX.fund_bounty(s, h(), -1), "negative"),
    ],
)
def test_bad_entries_are_refused_before_they_are_written(
    sessions: sessionmaker[Session], call: Any, message: str
) -> None:
    with sessions() as session, pytest.raises(ValueError, match=message):
        call(session)


def test_sender_lands_every_entry_in_order_with_consecutive_nonces(
    anvil: LocalChain, sessions: sessionmaker[Session]
) -> None:
    client = node_client(anvil)
    with sessions() as session, session.begin():
        OUTBOX.register(session, "domain", h())
        for seq in range(1, 41):
            OUTBOX.anchor(session, seq, h())

    report = sender_for(sessions, client).run_until_idle()

    assert report.leader and report.error is None
    rows = entries(sessions)
    assert {r.status for r in rows} == {"confirmed"}
    assert [r.nonce for r in rows] == list(range(41))
    assert anchored_seqs(client) == list(range(1, 41))
    assert client.node(client.sender).role == "domain"


def test_a_chain_outage_during_a_job_delays_writes_and_loses_none(
    anvil: LocalChain, sessions: sessionmaker[Session]
) -> None:
    proxy = Forwarder(int(anvil.rpc_url.rsplit(":", 1)[1]), free_port())
    proxy.start()
    client = node_client(anvil, proxy.url)
    me = client.sender
    job_id = job_id_of(me, "job/outage")
    aggregates = [h() for _ in range(4)]
    counted, samples = round_mask([me], {me: 100})
    sender = sender_for(sessions, client)
    with sessions() as session, session.begin():
        OUTBOX.register(session, "domain", h())
        OUTBOX.create_job(session, "job/outage", h(), [me], deadline=chain_now(anvil) + 3600)
        OUTBOX.log_round(session, job_id, aggregates[0], counted, samples)
    sender.run_until_idle()

    proxy.stop()  # the chain is gone in the middle of the job
    with sessions() as session, session.begin():
        for aggregate in aggregates[1:]:
            OUTBOX.log_round(session, job_id, aggregate, counted, samples)
        OUTBOX.attest(session, job_id, aggregates[-1])
        OUTBOX.finalize(session, job_id)
        for seq in range(1, 6):
            OUTBOX.anchor(session, seq, h())
    for _ in range(3):
        report = sender.tick()
        assert report.error is not None and "unreachable" in report.error
    with sessions() as session:
        assert OUTBOX.counts(session)["pending"] == 10

    proxy.start()  # and back, on the same address
    try:
        report = sender.run_until_idle()
    finally:
        proxy.stop()

    assert report.error is None
    rows = entries(sessions)
    assert {r.status for r in rows} == {"confirmed"}
    assert [r.nonce for r in rows] == list(range(len(rows)))
    direct = RegistryClient(anvil.rpc_url, anvil.registry_address, client.account)
    assert [r.aggregate_hash for r in direct.rounds(job_id)] == aggregates
    job = direct.job(job_id)
    assert (job.status, job.rounds, job.model_hash) == ("finalized", 4, aggregates[-1])
    assert anchored_seqs(direct) == list(range(1, 6))
    blocks = [r.block_number for r in rows]
    assert blocks == sorted(blocks)


def test_a_transaction_signed_before_a_crash_is_resent_not_signed_again(
    anvil: LocalChain, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = node_client(anvil)
    with sessions() as session, session.begin():
        OUTBOX.register(session, "domain", h())
        OUTBOX.anchor(session, 7, h())
    crashing = sender_for(sessions, client)

    def down(raw: str) -> None:
        raise ChainUnavailable("chain unreachable (ConnectionError)")

    monkeypatch.setattr(client, "broadcast", down)
    assert crashing.tick().error is not None
    (signed, pending) = entries(sessions)
    assert (signed.status, pending.status) == ("signed", "pending")
    first_hash = signed.tx_hash
    monkeypatch.undo()

    # A new process of the same node (the crashed one's lease has run out).
    successor = sender_for(sessions, client, lease_s=30)
    crashing.release()
    successor.run_until_idle()

    rows = entries(sessions)
    assert [r.status for r in rows] == ["confirmed", "confirmed"]
    assert rows[0].tx_hash == first_hash and rows[0].attempts >= 2
    assert anchored_seqs(client) == [7]


def test_a_refused_entry_fails_with_its_reason_and_the_queue_goes_on(
    anvil: LocalChain, sessions: sessionmaker[Session]
) -> None:
    client = node_client(anvil)
    with sessions() as session, session.begin():
        OUTBOX.register(session, "domain", h())
    sender = sender_for(sessions, client)
    sender.run_until_idle()
    with sessions() as session, session.begin():
        OUTBOX.attest(session, h(), h())  # no such job
        OUTBOX.anchor(session, 3, h())

    sender.run_until_idle()

    _, refused, anchored = entries(sessions)
    assert refused.status == "failed" and "UnknownJob" in (refused.last_error or "")
    assert anchored.status == "confirmed"


def test_a_whole_job_in_one_transaction_lands_and_settles(
    anvil: LocalChain, sessions: sessionmaker[Session]
) -> None:
    client = node_client(anvil)
    me = client.sender
    counted, samples = round_mask([me], {me: 250})
    model = h()
    job_id = job_id_of(me, "job/1")
    with sessions() as session, session.begin():
        OUTBOX.register(session, "domain", h())
        OUTBOX.create_job(session, "job/1", h(), [me], deadline=chain_now(anvil) + 3600)
        OUTBOX.log_round(session, job_id, model, counted, samples)
        OUTBOX.attest(session, job_id, model)
        OUTBOX.finalize(session, job_id)

    sender_for(sessions, client).run_until_idle()

    assert {r.status for r in entries(sessions)} == {"confirmed"}
    job = client.job(job_id)
    assert (job.status, job.model_hash, job.rounds) == ("finalized", model, 1)


def test_only_one_process_sends_at_a_time(
    anvil: LocalChain, sessions: sessionmaker[Session]
) -> None:
    client = node_client(anvil)
    first, second = sender_for(sessions, client), sender_for(sessions, client)
    assert first.tick().leader
    assert not second.tick().leader
    first.release()
    assert second.tick().leader
    assert not first.tick().leader


def test_no_contract_at_the_address_stops_sending_with_a_clear_error(
    anvil: LocalChain, sessions: sessionmaker[Session]
) -> None:
    account = Account.create()
    fund(anvil.rpc_url, [account.address])
    client = RegistryClient(anvil.rpc_url, account.address, account)  # an account, no code
    with sessions() as session, session.begin():
        OUTBOX.anchor(session, 1, h())
    report = sender_for(sessions, client).tick()
    assert report.error is not None and "GRID_REGISTRY_ADDRESS" in report.error
    assert [r.status for r in entries(sessions)] == ["pending"]


def test_an_unfunded_key_says_so_and_sends_once_funded(
    anvil: LocalChain, sessions: sessionmaker[Session]
) -> None:
    account = Account.create()
    client = RegistryClient(anvil.rpc_url, anvil.registry_address, account)
    with sessions() as session, session.begin():
        OUTBOX.register(session, "domain", h())
    sender = sender_for(sessions, client)
    report = sender.tick()
    assert report.error is not None and f"{account.address} cannot pay for gas" in report.error
    assert [r.status for r in entries(sessions)] != ["confirmed"]

    fund(anvil.rpc_url, [account.address])
    sender.run_until_idle()
    assert [r.status for r in entries(sessions)] == ["confirmed"]
    assert client.node(account.address).role == "domain"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_sender_whose_lease_ran_out_mid_pass_records_nothing_its_successor_sent(
    anvil: LocalChain, sessions: sessionmaker[Session]
) -> None:
    # PostgreSQL only: on SQLite a pass holds the write lock from its first statement, so no
    # successor can take over in the middle of it.
    account = Account.create()
    fund(anvil.rpc_url, [account.address])
    slow_client, client = (
        RegistryClient(anvil.rpc_url, anvil.registry_address, account) for _ in range(2)
    )
    with sessions() as session, session.begin():
        OUTBOX.register(session, "domain", h())
        OUTBOX.anchor(session, 1, h())
    slow, successor = sender_for(sessions, slow_client), sender_for(sessions, client)
    sign = slow_client.sign

    def stalls_while_its_lease_runs_out(*args: Any, **kwargs: Any) -> Any:
        # A chain that answers slowly: the slow sender's lease runs out while it signs, and
        # another process of the node takes over and sends the same entries meanwhile.
        slow_client.sign = sign  # type: ignore[method-assign]
        with sessions() as session, session.begin():
            lease = session.get(RegistrySenderLease, 1)
            assert lease is not None
            lease.expires_at = 0.0
        successor.run_until_idle()
        return sign(*args, **kwargs)

    slow_client.sign = stalls_while_its_lease_runs_out  # type: ignore[method-assign]
    slow.tick()
    slow.tick()
    successor.run_until_idle()

    rows = entries(sessions)
    assert [(r.op, r.status, r.nonce) for r in rows] == [
        ("register", "confirmed", 0),
        ("anchor", "confirmed", 1),
    ]
    assert anchored_seqs(client) == [1]
    assert client.pending_nonce() == 2  # two entries, two transactions: none sent twice


def test_an_attestation_on_another_nodes_job_waits_for_its_rounds_not_the_queue(
    anvil: LocalChain, sessions: sessionmaker[Session]
) -> None:
    client = node_client(anvil)
    client.register("domain", h())
    coordinator = node_client(anvil)
    coordinator.register("network", h())
    job_id = job_id_of(coordinator.sender, "federated/1")
    model, spec = h(), h()
    expect = ExpectedJob(coordinator=coordinator.sender, spec_hash=spec)
    with sessions() as session, session.begin():
        # The job is not on chain yet.
        OUTBOX.attest(session, job_id, model, await_rounds=2, expect=expect)
        OUTBOX.anchor(session, 1, h())
    sender = sender_for(sessions, client)

    sender.run_until_idle()
    waiting, anchored = entries(sessions)
    assert (waiting.status, anchored.status) == ("pending", "confirmed")

    coordinator.create_job("federated/1", spec, [client.sender], deadline=chain_now(anvil) + 3600)
    coordinator.log_round(job_id, h(), 1, [10])
    sender.run_until_idle()
    assert entries(sessions)[0].status == "pending"  # one round of two: the second must fit

    coordinator.log_round(job_id, h(), 1, [10])
    sender.run_until_idle()
    assert entries(sessions)[0].status == "confirmed"
    assert client.attestation(job_id, client.sender) == model


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # a chain check, not SQL
@pytest.mark.parametrize(
    "job_as_created, refusal",
    [
        ("honest", None),
        ("by another coordinator", "coordinator check failed"),
        ("with another spec hash", "spec hash check failed"),
        ("without this domain", "participant check failed"),
    ],
)
def test_a_domain_stakes_and_attests_only_on_the_job_its_network_signed(
    anvil: LocalChain, sessions: sessionmaker[Session], job_as_created: str, refusal: str | None
) -> None:
    # The attack: the network this domain joined answers its attestation with the id of a
    # chain job that is not the one it signed the invitation for.
    client = node_client(anvil)
    client.register("domain", h())
    network, stranger, peer = node_client(anvil), node_client(anvil), node_client(anvil)
    network.register("network", h())
    stranger.register("network", h())
    peer.register("domain", h())
    spec, model, stake = h(), h(), 10**15
    creator = stranger if job_as_created == "by another coordinator" else network
    members = [peer.sender] if job_as_created == "without this domain" else [client.sender]
    creator.create_job(
        "federated/7",
        h() if job_as_created == "with another spec hash" else spec,
        members,
        deadline=chain_now(anvil) + 3600,
        stake=stake,
    )
    job_id = job_id_of(creator.sender, "federated/7")
    creator.log_round(job_id, model, 1, [10])
    expect = ExpectedJob(coordinator=network.sender, spec_hash=spec[2:])  # as invitations sign it
    with sessions() as session, session.begin():
        OUTBOX.deposit_stake(session, job_id, stake, expect=expect)
        OUTBOX.attest(session, job_id, model, await_rounds=1, expect=expect)
    sender = sender_for(sessions, client)
    nonce = client.pending_nonce()

    sender.run_until_idle()
    sender.run_until_idle()  # failed for good: nothing is tried again

    rows = entries(sessions)
    staked = client.events("StakeDeposited", jobId=job_id)
    if refusal is None:
        assert [r.status for r in rows] == ["confirmed", "confirmed"]
        assert client.attestation(job_id, client.sender) == model
        assert [e.args["amount"] for e in staked] == [stake]
        return
    assert [r.status for r in rows] == ["failed", "failed"]
    assert all(refusal in (r.last_error or "") for r in rows), [r.last_error for r in rows]
    assert all(r.tx_hash is None for r in rows)
    assert client.pending_nonce() == nonce  # not a transaction sent
    assert staked == []
    assert client.attestation(job_id, client.sender) == "0x" + "00" * 32


def test_a_coordinators_finalize_waits_for_every_attestation(
    anvil: LocalChain, sessions: sessionmaker[Session]
) -> None:
    client = node_client(anvil)
    me = client.sender
    domains = [node_client(anvil) for _ in range(2)]
    for d in domains:
        d.register("domain", h())
    members = [d.sender for d in domains]
    counted, samples = round_mask(members, {members[0]: 5, members[1]: 7})
    job_id = job_id_of(me, "federated/2")
    model = h()
    with sessions() as session, session.begin():
        OUTBOX.register(session, "network", h())
        OUTBOX.create_job(session, "federated/2", h(), members, deadline=chain_now(anvil) + 3600)
        OUTBOX.log_round(session, job_id, model, counted, samples)
        OUTBOX.finalize(session, job_id)
        OUTBOX.anchor(session, 1, h())
    sender = sender_for(sessions, client)

    sender.run_until_idle()
    statuses = [e.status for e in entries(sessions)]
    assert statuses == ["confirmed", "confirmed", "confirmed", "pending", "confirmed"]

    domains[0].attest(job_id, model)
    sender.run_until_idle()
    assert entries(sessions)[3].status == "pending"  # one of two attestations

    domains[1].attest(job_id, model)
    sender.run_until_idle()
    assert entries(sessions)[3].status == "confirmed"
    assert client.job(job_id).status == "finalized"
