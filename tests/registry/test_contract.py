"""GridRegistry on a real anvil: every rule, every revert, every payout."""

from __future__ import annotations

import secrets

import pytest

from registry.chain import LocalChain
from registry.client import RegistryClient, job_id_of, job_key_bytes, round_mask
from registry.errors import decode_revert
from tests.registry.conftest import (
    ETHER,
    HOUR,
    ClientFactory,
    advance_time,
    chain_now,
    deploy,
    reverts,
    send,
)


def h() -> str:
    """A fresh random 32-byte hash."""
    return "0x" + secrets.token_hex(32)


def new_job(
    anvil: LocalChain,
    coordinator: RegistryClient,
    participants: list[RegistryClient],
    *,
    stake: int = 0,
    bounty: int = 0,
    window: int = HOUR,
) -> str:
    key = secrets.token_hex(8)
    coordinator.create_job(
        key,
        h(),
        [p.sender for p in participants],
        deadline=chain_now(anvil) + window,
        stake=stake,
        bounty=bounty,
    )
    return job_id_of(coordinator.sender, key)


def log(coordinator: RegistryClient, job_id: str, samples: dict[RegistryClient, int]) -> None:
    participants = coordinator.participants(job_id)
    counted, counts = round_mask(participants, {c.sender: n for c, n in samples.items()})
    coordinator.log_round(job_id, h(), counted, counts)


# --- nodes ------------------------------------------------------------------------------


def test_register_records_role_and_key_hash_and_allows_key_rotation(
    new_client: ClientFactory,
) -> None:
    node = new_client()
    first, second = h(), h()
    receipt = node.register("domain", first)
    assert node.node(node.sender).role == "domain"
    assert node.node(node.sender).key_hash == first
    (event,) = node.contract.events.NodeRegistered().process_receipt(receipt)
    assert event["args"]["node"] == node.sender
    node.register("domain", second)
    assert node.node(node.sender).key_hash == second


def test_register_refuses_a_role_change_no_role_and_a_zero_key(new_client: ClientFactory) -> None:
    node = new_client("domain")
    with reverts("RoleChange"):
        node.register("network", h())
    with reverts("BadRole"):
        node.transact("register", 0, bytes.fromhex(h()[2:]))
    with reverts("ZeroHash"):
        node.register("domain", "0x" + "00" * 32)


def test_only_a_network_associates_and_only_domains(new_client: ClientFactory) -> None:
    network, domain, other = new_client("network"), new_client("domain"), new_client("domain")
    network.set_association(domain.sender)
    assert network.contract.functions.associated(network.sender, domain.sender).call()
    network.set_association(domain.sender, False)
    assert not network.contract.functions.associated(network.sender, domain.sender).call()
    with reverts("NotNetwork"):
        other.set_association(domain.sender)
    with reverts("NotDomain"):
        network.set_association(new_client().sender)


# --- jobs ---------------------------------------------------------------------------------


def test_create_job_stores_spec_participants_and_namespaces_ids(
    anvil: LocalChain, new_client: ClientFactory
) -> None:
    a, b = new_client("domain"), new_client("domain")
    spec = h()
    deadline = chain_now(anvil) + HOUR
    receipt = a.create_job("same-key", spec, [a.sender, b.sender], deadline=deadline)
    b.create_job("same-key", spec, [b.sender], deadline=deadline)  # another coordinator's id
    job_id = job_id_of(a.sender, "same-key")
    on_chain = a.contract.functions.jobIdOf(a.sender, job_key_bytes("same-key")).call()
    assert "0x" + on_chain.hex() == job_id
    job = a.job(job_id)
    assert (job.status, job.coordinator, job.spec_hash) == ("open", a.sender, spec)
    assert job.participant_count == 2 and job.deadline == deadline
    assert a.participants(job_id) == [a.sender, b.sender]
    (event,) = a.contract.events.JobCreated().process_receipt(receipt)
    assert "0x" + event["args"]["jobId"].hex() == job_id
    assert b.job(job_id_of(b.sender, "same-key")).coordinator == b.sender


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unregistered coordinator", "NotRegistered"),
        ("participant not a domain", "NotDomain"),
        ("duplicate participant", "DuplicateParticipant"),
        ("no participants", "BadParticipants"),
        ("deadline passed", "DeadlinePassed"),
        ("zero spec hash", "ZeroHash"),
        ("same key twice", "JobExists"),
    ],
)
def test_create_job_refuses(
    anvil: LocalChain, new_client: ClientFactory, case: str, reason: str
) -> None:
    coordinator = new_client(None if case == "unregistered coordinator" else "domain")
    domain = new_client("domain")
    participants = {
        "participant not a domain": [new_client("network").sender],
        "duplicate participant": [domain.sender, domain.sender],
        "no participants": [],
    }.get(case, [domain.sender])
    deadline = chain_now(anvil) + (-1 if case == "deadline passed" else HOUR)
    spec = "0x" + "00" * 32 if case == "zero spec hash" else h()
    if case == "same key twice":
        coordinator.create_job("k", h(), participants, deadline=deadline)
    with reverts(reason):
        coordinator.create_job("k", spec, participants, deadline=deadline)


# --- rounds -------------------------------------------------------------------------------


def test_only_the_coordinator_logs_rounds(anvil: LocalChain, new_client: ClientFactory) -> None:
    network, a, b = new_client("network"), new_client("domain"), new_client("domain")
    job_id = new_job(anvil, network, [a, b])
    counted, samples = round_mask([a.sender, b.sender], {a.sender: 10, b.sender: 20})
    receipt = network.log_round(job_id, h(), counted, samples)
    assert receipt["gasUsed"] < 60_000
    with reverts("NotCoordinator"):
        a.log_round(job_id, h(), counted, samples)
    with reverts("UnknownJob"):
        network.log_round(h(), h(), counted, samples)
    assert network.job(job_id).rounds == 1
    (logged,) = network.rounds(job_id)
    assert (logged.round, logged.counted, logged.samples) == (1, 0b11, [10, 20])


@pytest.mark.parametrize(
    ("aggregate", "counted", "samples"),
    [
        ("zero", 0b01, [5]),
        ("ok", 0, []),
        ("ok", 0b100, [5]),  # bit 2 names a third participant the job does not have
        ("ok", 0b11, [5]),  # two counted, one sample count
        ("ok", 0b01, [5, 6]),
    ],
)
def test_log_round_refuses_malformed_rounds(
    anvil: LocalChain,
    new_client: ClientFactory,
    aggregate: str,
    counted: int,
    samples: list[int],
) -> None:
    a, b = new_client("domain"), new_client("domain")
    job_id = new_job(anvil, a, [a, b])
    with reverts("BadRound"):
        a.log_round(job_id, "0x" + "00" * 32 if aggregate == "zero" else h(), counted, samples)


def test_no_round_after_attestations_began(anvil: LocalChain, new_client: ClientFactory) -> None:
    a = new_client("domain")
    job_id = new_job(anvil, a, [a])
    a.attest(job_id, h())
    with reverts("AttestationsStarted"):
        a.log_round(job_id, h(), 1, [1])


# --- attestations ---------------------------------------------------------------------------


def test_only_participants_attest_and_only_once(
    anvil: LocalChain, new_client: ClientFactory
) -> None:
    coordinator, a, outsider = new_client("network"), new_client("domain"), new_client("domain")
    job_id = new_job(anvil, coordinator, [a])
    model = h()
    receipt = a.attest(job_id, model)
    assert receipt["gasUsed"] < 60_000
    assert a.attestation(job_id, a.sender) == model
    with reverts("AlreadyAttested"):
        a.attest(job_id, model)
    with reverts("NotParticipant"):
        outsider.attest(job_id, model)
    with reverts("NotParticipant"):
        coordinator.attest(job_id, model)
    with reverts("UnknownJob"):
        a.attest(h(), model)


def test_attest_refuses_a_zero_hash_and_a_missing_stake(
    anvil: LocalChain, new_client: ClientFactory
) -> None:
    a = new_client("domain")
    job_id = new_job(anvil, a, [a], stake=ETHER)
    with reverts("ZeroHash"):
        a.attest(job_id, "0x" + "00" * 32)
    with reverts("StakeMissing"):
        a.attest(job_id, h())
    a.deposit_stake(job_id, ETHER)
    a.attest(job_id, h())


def test_stake_rules(anvil: LocalChain, new_client: ClientFactory) -> None:
    a, outsider = new_client("domain"), new_client("domain")
    staked = new_job(anvil, a, [a], stake=ETHER)
    unstaked = new_job(anvil, a, [a])
    with reverts("WrongStake"):
        a.deposit_stake(staked, ETHER // 2)
    with reverts("NotParticipant"):
        outsider.deposit_stake(staked, ETHER)
    with reverts("NoStakeRequired"):
        a.deposit_stake(unstaked, ETHER)
    a.deposit_stake(staked, ETHER)
    with reverts("AlreadyStaked"):
        a.deposit_stake(staked, ETHER)
    with reverts("NoValue"):
        a.fund_bounty(staked, 0)


# --- finalization and payouts -----------------------------------------------------------------


def test_unanimous_job_pays_pro_rata_by_samples_times_rounds_and_returns_deposits(
    anvil: LocalChain, new_client: ClientFactory
) -> None:
    network, a, b = new_client("network"), new_client("domain"), new_client("domain")
    funder = new_client()
    job_id = new_job(anvil, network, [a, b], stake=ETHER, bounty=3 * ETHER)
    funder.fund_bounty(job_id, ETHER)
    a.deposit_stake(job_id, ETHER)
    b.deposit_stake(job_id, ETHER)
    log(network, job_id, {a: 100, b: 300})
    log(network, job_id, {a: 100, b: 300})
    log(network, job_id, {a: 200})  # b not counted in round 3: no penalty, no contribution
    model = h()
    a.attest(job_id, model)
    b.attest(job_id, model)
    before = network.node(a.sender).reputation, network.node(network.sender).reputation

    funder.finalize(job_id)  # anyone may settle, handing back the logged rounds

    job = network.job(job_id)
    assert (job.status, job.model_hash) == ("finalized", model)
    # contributions: a = 400, b = 600 of a 4-ether pool
    assert network.balance(a.sender) == ETHER + 4 * ETHER * 400 // 1000
    assert network.balance(b.sender) == ETHER + 4 * ETHER * 600 // 1000
    assert network.node(a.sender).reputation == before[0] + 1
    assert network.node(network.sender).reputation == before[1] + 1
    payouts = {p.args["participant"]: p.args for p in network.events("Payout", jobId=job_id)}
    assert payouts[a.sender]["contribution"] == 400 and payouts[b.sender]["eligible"]
    with reverts("JobNotOpen"):
        a.attest(job_id, model)
    with reverts("JobNotOpen"):
        funder.finalize(job_id)


def test_finalize_refuses_rounds_that_differ_from_the_logged_ones(
    anvil: LocalChain, new_client: ClientFactory
) -> None:
    a = new_client("domain")
    job_id = new_job(anvil, a, [a])
    log(a, job_id, {a: 10})
    a.attest(job_id, h())
    (logged,) = a.rounds(job_id)
    inflated = (bytes.fromhex(logged.aggregate_hash[2:]), logged.counted, [10_000])
    with reverts("RoundsMismatch"):
        a.transact("finalize", bytes.fromhex(job_id[2:]), [inflated])
    with reverts("RoundsMismatch"):
        a.transact("finalize", bytes.fromhex(job_id[2:]), [])
    a.finalize(job_id)


def test_before_the_deadline_a_split_or_missing_vote_cannot_finalize(
    anvil: LocalChain, new_client: ClientFactory
) -> None:
    a, b = new_client("domain"), new_client("domain")
    job_id = new_job(anvil, a, [a, b])
    a.attest(job_id, h())
    with reverts("NotFinalizable"):
        a.finalize(job_id)
    b.attest(job_id, h())  # a different hash
    with reverts("NotFinalizable"):
        a.finalize(job_id)


def test_after_the_deadline_the_majority_wins_and_dissenters_and_absentees_forfeit(
    anvil: LocalChain, new_client: ClientFactory
) -> None:
    net = new_client("network")
    a, b, c, d = (new_client("domain") for _ in range(4))
    job_id = new_job(anvil, net, [a, b, c, d], stake=ETHER, bounty=2 * ETHER)
    for p in (a, b, c, d):
        p.deposit_stake(job_id, ETHER)
    log(net, job_id, {a: 10, b: 10, c: 10, d: 10})
    log(net, job_id, {a: 10, b: 0, c: 10, d: 10})  # b was counted but did not report
    model = h()
    for p in (a, b, c):
        p.attest(job_id, model)
    d.attest(job_id, h())  # dissent
    advance_time(anvil, 2 * HOUR)

    net.finalize(job_id)

    assert net.job(job_id).model_hash == model
    pool = 2 * ETHER + 2 * ETHER  # bounty plus the deposits of b (missed a round) and d
    assert net.balance(a.sender) == ETHER + pool // 2
    assert net.balance(c.sender) == ETHER + pool // 2
    assert net.balance(b.sender) == 0 and net.balance(d.sender) == 0
    forfeits = {
        p.args["participant"]: p.args["forfeited"] for p in net.events("Payout", jobId=job_id)
    }
    assert forfeits[b.sender] == ETHER and forfeits[d.sender] == ETHER


def test_after_the_deadline_without_a_majority_the_job_fails_and_everything_returns(
    anvil: LocalChain, new_client: ClientFactory
) -> None:
    a, b = new_client("domain"), new_client("domain")
    funder = new_client()
    job_id = new_job(anvil, a, [a, b], stake=ETHER)
    funder.fund_bounty(job_id, ETHER)
    a.deposit_stake(job_id, ETHER)
    b.deposit_stake(job_id, ETHER)
    a.attest(job_id, h())
    b.attest(job_id, h())
    advance_time(anvil, 2 * HOUR)

    a.finalize(job_id)

    assert a.job(job_id).status == "failed"
    assert a.balance(a.sender) == ETHER and a.balance(b.sender) == ETHER
    funder.reclaim_bounty(job_id)
    assert a.balance(funder.sender) == ETHER
    with reverts("NothingToReclaim"):
        funder.reclaim_bounty(job_id)


def test_only_the_coordinator_cancels_and_only_before_attestations(
    anvil: LocalChain, new_client: ClientFactory
) -> None:
    a, b = new_client("domain"), new_client("domain")
    job_id = new_job(anvil, a, [a, b], stake=ETHER, bounty=ETHER)
    b.deposit_stake(job_id, ETHER)
    with reverts("NotCoordinator"):
        b.cancel_job(job_id)
    a.cancel_job(job_id)
    assert a.job(job_id).status == "cancelled"
    assert a.balance(b.sender) == ETHER
    a.reclaim_bounty(job_id)
    assert a.balance(a.sender) == ETHER
    with reverts("JobNotOpen"):
        a.cancel_job(job_id)

    attested = new_job(anvil, a, [a])
    a.attest(attested, h())
    with reverts("AttestationsStarted"):
        a.cancel_job(attested)


# --- withdrawals and anchors ------------------------------------------------------------------


def test_withdraw_pays_the_balance_once(anvil: LocalChain, new_client: ClientFactory) -> None:
    a = new_client("domain")
    job_id = new_job(anvil, a, [a], bounty=ETHER)
    a.attest(job_id, h())
    a.finalize(job_id)
    assert a.balance(a.sender) == ETHER
    before = a.w3.eth.get_balance(a.sender)
    receipt = a.withdraw()
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert a.w3.eth.get_balance(a.sender) == before + ETHER - fee
    assert a.balance(a.sender) == 0
    with reverts("NothingToWithdraw"):
        a.withdraw()


def test_withdraw_cannot_be_reentered(
    anvil: LocalChain, new_client: ClientFactory, attacker_artifact: dict
) -> None:
    owner, coordinator = new_client(), new_client("domain")
    attacker = deploy(owner, attacker_artifact, coordinator.address)
    job_id = new_job(anvil, coordinator, [coordinator])
    send(owner, attacker.functions.fund(bytes.fromhex(job_id[2:])), value=ETHER)
    coordinator.cancel_job(job_id)
    send(owner, attacker.functions.reclaim(bytes.fromhex(job_id[2:])))
    assert coordinator.balance(attacker.address) == ETHER
    registry_before = owner.w3.eth.get_balance(coordinator.address)

    receipt = send(owner, attacker.functions.attack())

    assert receipt["status"] == 1
    assert attacker.functions.reentered().call()
    assert not attacker.functions.reentrySucceeded().call()
    error = attacker.functions.reentryError().call()
    assert decode_revert(bytes(error)) == ("Reentrancy", ())
    assert attacker.functions.received().call() == ETHER
    assert owner.w3.eth.get_balance(coordinator.address) == registry_before - ETHER
    assert coordinator.balance(attacker.address) == 0


def test_anchor_records_the_audit_head_of_registered_nodes(new_client: ClientFactory) -> None:
    a = new_client("domain")
    head = h()
    receipt = a.anchor(42, head)
    (event,) = a.contract.events.AuditAnchored().process_receipt(receipt)
    assert (event["args"]["node"], event["args"]["seq"]) == (a.sender, 42)
    assert "0x" + event["args"]["headHash"].hex() == head
    with reverts("NotRegistered"):
        new_client().anchor(1, h())
    with reverts("ZeroHash"):
        a.anchor(1, "0x" + "00" * 32)
