"""The chain stops in the middle of a federated job: the job finishes, and every registry write
the network and the domains queued lands once the chain is back, in the order it was queued,
none twice; the network's one chain job ends finalized with every domain's attestation."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from eth_utils import to_checksum_address
from sqlalchemy import create_engine, text

import grid_cli as grid
from registry.chain import rpc
from registry.client import RegistryClient
from tests.e2e.grid import LocalGrid, Member, eventually, start_grid
from tests.worker.live import mlp

pytestmark = pytest.mark.timeout(900)

STAKE = 10**16  # 0.01 ether
PLAN = grid.TrainingPlan(
    loss="cross_entropy", optimizer="adam", lr=0.01, epochs=2, batch_size=32, metrics=["loss"]
)


@dataclass(frozen=True)
class Row:
    """One entry of a domain's registry outbox."""

    id: int
    op: str
    status: str
    nonce: int | None
    tx_hash: str | None
    job_id: str | None


def outbox(member: Member) -> list[Row]:
    """The domain's outbox, read from its database in queue order."""
    return outbox_at(member.domain.data_dir / "domain.db")


def outbox_at(database: Path) -> list[Row]:
    """A node's outbox, read from its SQLite database in queue order."""
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as db:
            found = db.execute(
                text("SELECT id, op, status, nonce, tx_hash, args FROM registry_outbox ORDER BY id")
            ).all()
    finally:
        engine.dispose()
    rows = []
    for id_, op, status, nonce, tx_hash, args in found:
        values = args if isinstance(args, dict) else json.loads(args)
        rows.append(Row(id_, op, status, nonce, tx_hash, values.get("job_id")))
    return rows


def landed(rows: list[Row]) -> bool:
    return bool(rows) and all(r.status == "confirmed" for r in rows)


@contextmanager
def chain_stopped(local: LocalGrid) -> Iterator[None]:
    """SIGSTOP the chain (anvil and its whole session) and SIGCONT it on the way out.

    A stopped anvil keeps its state and its port: connections still open, nothing answers.
    That is what a hung or overloaded RPC endpoint does, and the harder case for a sender
    (each call runs into its timeout instead of being refused at once).
    """
    chain = local.running.chain_process
    assert chain is not None
    os.killpg(chain.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(chain.pid, signal.SIGCONT)


@pytest.fixture
def grid_with_chain(tmp_path: Path) -> Iterator[LocalGrid]:
    local = start_grid(tmp_path, 3, chain=True)
    yield local
    local.stop()


def test_the_chain_stops_mid_job_and_every_write_lands_after_in_order(
    grid_with_chain: LocalGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GRID_REGISTRY_ADDRESS", raising=False)
    local = grid_with_chain
    members = local.members
    assert local.running.chain is not None
    rpc_url, registry_address = local.running.chain.rpc_url, local.running.chain.registry_address
    network_outbox = partial(outbox_at, local.root / "network" / "network.db")
    # Before the job: each domain has registered itself on chain, the network too, and the
    # network has recorded its association with each.
    for member in members:
        eventually(lambda m=member: landed(outbox(m)), f"{member.name}'s registration to land", 120)
    eventually(lambda: landed(network_outbox()), "the network's associations to land", 120)
    # Every owner requires a stake: each domain deposits it before it attests.
    for member in members:
        member.owner.update_settings(member.owner.settings.model_copy(update={"stake_wei": STAKE}))

    fl = local.scientist.federated_training(
        mlp(), datasets=local.scientist.search("digits"), plan=PLAN, rounds=3, progress=False
    )
    local.approve_all()
    # Mid-job: the network's one job for it is on chain and training has begun.
    eventually(
        lambda: landed(network_outbox()) and "create_job" in {r.op for r in network_outbox()},
        "the network's job to be created on chain",
        120,
    )
    eventually(lambda: fl.refresh().info.current_round >= 1, "round 1 to open", 120)
    job_id = fl.refresh().info.registry_job_id
    assert job_id is not None

    with chain_stopped(local):
        for member in members:
            # The domain answers while its chain does not.
            assert member.owner.registry_status().enabled
            member.owner.anchor_audit_log()  # queued mid-job, before the job's result writes
        fl.wait(timeout=400, progress=False)
        assert fl.info.status == "completed"
        for member in members:
            # The domain finished its part with its attestation queued, not on chain.
            eventually(
                lambda m=member: "attest" in {r.op for r in outbox(m)},
                f"{member.name} to queue its attestation",
            )
            counts = member.owner.registry_status().outbox
            member.owner.anchor_audit_log()  # and one after it
            waiting = [r.op for r in outbox(member) if r.status != "confirmed"]
            assert waiting == ["anchor", "deposit_stake", "attest", "anchor"], waiting
            assert {r.status for r in outbox(member)} <= {"pending", "signed", "confirmed"}
            assert counts is not None and counts.pending + counts.signed == len(waiting) - 1
        waiting = [r.op for r in network_outbox() if r.status != "confirmed"]
        assert waiting[-1] == "finalize" and set(waiting[:-1]) == {"log_round"}, waiting

    for member in members:
        eventually(lambda m=member: landed(outbox(m)), f"{member.name}'s writes to land", 240)
    eventually(lambda: landed(network_outbox()), "the network's writes to land", 240)

    reader = RegistryClient(rpc_url, registry_address)
    for rows in [network_outbox(), *(outbox(m) for m in members)]:
        tx = rpc(rpc_url, "eth_getTransactionByHash", [rows[0].tx_hash])
        address = to_checksum_address(tx["from"])
        # Nothing lost, nothing sent twice: the node's key sent exactly one transaction per
        # entry, with consecutive nonces in queue order; a domain's stake and attestation
        # wait for the network's job and rounds, so the anchor queued after them may go first.
        assert sorted(r.nonce or 0 for r in rows) == list(range(len(rows)))
        in_order = [r for r in rows if r.op not in ("deposit_stake", "attest")]
        assert [r.nonce for r in in_order] == sorted(r.nonce or 0 for r in in_order)
        assert int(rpc(rpc_url, "eth_getTransactionCount", [address, "latest"]), 16) == len(rows)
        # Mined in queue order.
        mined = []
        for row in in_order:
            tx = rpc(rpc_url, "eth_getTransactionByHash", [row.tx_hash])
            mined.append((int(tx["blockNumber"], 16), int(tx["transactionIndex"], 16)))
        assert mined == sorted(mined)
        # The job's writes name the network's one chain job.
        assert {r.job_id for r in rows if r.job_id is not None} == {job_id}
    # Each write once: the network registered, associated its domains, created the job, logged
    # its three rounds and settled it; each domain attested it, with its audit anchors around.
    assert [r.op for r in network_outbox()] == [
        *("register", "set_association", "set_association", "set_association", "create_job"),
        *("log_round", "log_round", "log_round", "finalize"),
    ]
    for member in members:
        rows = outbox(member)
        assert [r.op for r in rows] == [
            *("register", "anchor"),  # before the outage
            *("anchor", "deposit_stake", "attest", "anchor"),  # queued during it
        ]
        address = rpc(rpc_url, "eth_getTransactionByHash", [rows[0].tx_hash])["from"]
        anchored = [
            e.args["seq"] for e in reader.events("AuditAnchored", node=to_checksum_address(address))
        ]
        assert len(anchored) == 3 and anchored == sorted(anchored)
    on_chain = reader.job(job_id)
    assert (on_chain.status, on_chain.rounds, on_chain.stake) == ("finalized", 3, STAKE)
    assert on_chain.attestations == on_chain.participant_count == len(members)
    assert len(reader.rounds(job_id)) == 3
    for member in members:
        assert member.owner.job(1).info.status == "completed"
        assert on_chain.model_hash == "0x" + local_result_digest(member)

    # The data scientist's proof: the registry is theirs to name, every check passes.
    with pytest.raises(ValueError, match="GRID_REGISTRY_ADDRESS"):
        fl.verify(rpc_url)
    proof = fl.verify(rpc_url, registry_address=registry_address)
    assert proof.ok, proof.render()
    assert [c.name for c in proof.checks] == [
        *("coordinator", "participants", "spec hash", "rounds", "attestations", "your model"),
    ]
    text = proof.render()
    count = len(members)
    assert f"Participants ({count})" in text and "Rounds (3)" in text
    assert f"Attestations ({count} of {count})" in text and "VERIFIED" in text
    assert [p.deposit_returned for p in proof.payouts] == [STAKE] * count


def local_result_digest(member: Member) -> str:
    """The weights digest the domain stored as its job's result."""
    engine = create_engine(f"sqlite:///{member.domain.data_dir / 'domain.db'}")
    try:
        with engine.connect() as db:
            digest: str = db.execute(
                text("SELECT result_digest FROM jobs WHERE status = 'completed'")
            ).scalar_one()
    finally:
        engine.dispose()
    return digest
