"""The chain stops in the middle of a federated job: the job finishes, and every registry write
the domains queued lands once the chain is back, in the order it was queued, none twice."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
    engine = create_engine(f"sqlite:///{member.domain.data_dir / 'domain.db'}")
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


def landed(member: Member) -> bool:
    rows = outbox(member)
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
    grid_with_chain: LocalGrid,
) -> None:
    local = grid_with_chain
    members = local.members
    assert local.running.chain is not None
    rpc_url, registry_address = local.running.chain.rpc_url, local.running.chain.registry_address
    # Before the job: each domain has registered itself on chain.
    for member in members:
        eventually(lambda m=member: landed(m), f"{member.name}'s registration to land", 120)

    fl = local.scientist.federated_training(
        mlp(), datasets=local.scientist.search("digits"), plan=PLAN, rounds=3, progress=False
    )
    local.approve_all()
    # Mid-job: every domain's job is on chain and training has begun.
    for member in members:
        eventually(
            lambda m=member: landed(m) and any(r.op == "create_job" for r in outbox(m)),
            f"{member.name}'s job to be created on chain",
            120,
        )
    eventually(lambda: fl.refresh().info.current_round >= 1, "round 1 to open", 120)

    with chain_stopped(local):
        for member in members:
            # The domain answers while its chain does not.
            assert member.owner.registry_status().enabled
            member.owner.anchor_audit_log()  # queued mid-job, before the job's result writes
        fl.wait(timeout=400, progress=False)
        assert fl.info.status == "completed"
        for member in members:
            # The domain finished its part with its result writes queued, not on chain.
            eventually(
                lambda m=member: {"log_round", "attest", "finalize"} <= {r.op for r in outbox(m)},
                f"{member.name} to queue its result writes",
            )
            counts = member.owner.registry_status().outbox
            member.owner.anchor_audit_log()  # and one after them
            waiting = [r.op for r in outbox(member) if r.status != "confirmed"]
            assert waiting == ["anchor", "log_round", "attest", "finalize", "anchor"], waiting
            assert {r.status for r in outbox(member)} <= {"pending", "signed", "confirmed"}
            assert counts is not None and counts.pending + counts.signed == len(waiting) - 1

    for member in members:
        eventually(lambda m=member: landed(m), f"{member.name}'s writes to land", 240)

    reader = RegistryClient(rpc_url, registry_address)
    for member in members:
        rows = outbox(member)
        tx = rpc(rpc_url, "eth_getTransactionByHash", [rows[0].tx_hash])
        address = to_checksum_address(tx["from"])
        # Nothing lost, nothing sent twice: the node's key sent exactly one transaction per
        # entry, with consecutive nonces in queue order.
        assert [r.nonce for r in rows] == list(range(len(rows)))
        assert int(rpc(rpc_url, "eth_getTransactionCount", [address, "latest"]), 16) == len(rows)
        # Mined in queue order.
        mined = []
        for row in rows:
            tx = rpc(rpc_url, "eth_getTransactionByHash", [row.tx_hash])
            mined.append((int(tx["blockNumber"], 16), int(tx["transactionIndex"], 16)))
        assert mined == sorted(mined)
        # Each write once: the job created, its round logged, attested and settled, with the
        # audit anchors queued around them.
        assert [r.op for r in rows] == [
            *("register", "anchor", "create_job"),  # before the outage
            *("anchor", "log_round", "attest", "finalize", "anchor"),  # queued during it
        ]
        (job_id,) = {r.job_id for r in rows if r.op == "finalize"}
        assert job_id is not None
        assert {r.job_id for r in rows if r.op in ("log_round", "attest")} == {job_id}
        anchored = [e.args["seq"] for e in reader.events("AuditAnchored", node=address)]
        assert len(anchored) == 3 and anchored == sorted(anchored)
        on_chain = reader.job(job_id)
        assert (on_chain.status, on_chain.rounds, on_chain.attestations) == ("finalized", 1, 1)
        assert len(reader.rounds(job_id)) == 1
        result = member.owner.job(1).info
        assert result.status == "completed"
        assert on_chain.model_hash == "0x" + local_result_digest(member)


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
