"""The network's registry writes: its registration, the associations of its domains, and one
chain job per federated or analytics job.

With a chain configured the network has its own Ethereum key (made once in its data dir),
registers itself as a network and records on chain each domain it approves or that stops
being associated, through its durable outbox. A federated job is created on chain as it
starts, each closed round is logged, every participating domain attests the final model on
that job (through its own outbox) and the network finalizes it once they agree. Without a
chain these calls do nothing and the network works as before.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from grid_common.db import Database
from network.config import NetworkConfig
from network.models import (
    Association,
    FederatedJob,
    FederatedParticipant,
    FederatedRound,
    FederatedUpdate,
    RegistryOutboxEntry,
    RegistrySenderLease,
)
from registry.client import job_id_of, round_mask
from registry.node import EXTENSION, NodeRegistry, off_message

log = logging.getLogger(__name__)
# After its last round may close, how long a job's domains have to attest before a majority
# of them may settle it without the rest (who then forfeit any stake).
ATTESTATION_WINDOW_S = 24 * 3600
OFF_MESSAGE = off_message("this network and the associations of its domains")


def init_app(app: Flask, config: NetworkConfig, database: Database) -> NodeRegistry | None:
    """Turn registry writes on when a chain is configured; otherwise say clearly that they
    are off. The network's Ethereum key is made in its data dir on first start."""
    if not (config.chain_rpc_url and config.registry_address):
        log.warning(OFF_MESSAGE)
        app.extensions[EXTENSION] = None
        return None
    node = NodeRegistry(
        "network",
        data_dir=config.data_dir,
        rpc_url=config.chain_rpc_url,
        registry_address=config.registry_address,
        sessions=database.sessionmaker,
        entry_model=RegistryOutboxEntry,
        lease_model=RegistrySenderLease,
    )
    node.attach(app, database.sessionmaker, background=config.background)
    return node


def current_registry() -> NodeRegistry | None:
    """This app's registry side, or None when registry writes are off."""
    found: NodeRegistry | None = current_app.extensions.get(EXTENSION)
    return found


def enqueue_association(session: Session, item: Association, associated: bool) -> None:
    """Record in the caller's transaction that the domain of `item` is (or no longer is)
    associated with this network; nothing when writes are off or the domain gave no address
    when joining (it has none on chain)."""
    reg = current_registry()
    if reg is None or item.eth_address is None:
        return
    reg.outbox.set_association(session, item.eth_address, associated)


# --- federated and analytics jobs ---------------------------------------------------------


def job_key_for(job: FederatedJob) -> str:
    """The name the network gives a federated job on chain: unique per job row and its spec,
    so a network whose database was reset does not collide with its own earlier jobs."""
    return f"federated/{job.id}/{job.spec_hash.removeprefix('0x')[:16]}"


def _participant_addresses(session: Session, job: FederatedJob) -> dict[int, str | None]:
    """The registered address of each domain that had approved when the job started, by
    participant id, in job order: the job's participants on chain."""
    rows = session.execute(
        select(FederatedParticipant.id, Association.eth_address)
        .join(Association, Association.id == FederatedParticipant.association_id)
        .where(
            FederatedParticipant.job_id == job.id,
            FederatedParticipant.status == "approved",
            FederatedParticipant.decided_at <= job.started_at,
        )
        .order_by(FederatedParticipant.position)
    ).all()
    return {participant_id: address for participant_id, address in rows}


def enqueue_job_started(session: Session, job: FederatedJob) -> str | None:
    """Create the job on chain as it starts, with the approving domains' registered addresses
    as participants; returns its on-chain id. Nothing when writes are off or a participant
    gave no address (it is not on chain, so the job cannot be either)."""
    reg = current_registry()
    if reg is None:
        return None
    found = list(_participant_addresses(session, job).values())
    addresses = [a for a in found if a is not None]
    if not found or len(addresses) < len(found):
        log.warning(
            "federated job %s is not recorded on chain: a participant has no address", job.id
        )
        return None
    reg.outbox.create_job(
        session,
        job_key_for(job),
        job.spec_hash,
        addresses,
        stake_wei=job_stake(session, job),
        deadline=chain_deadline(job),
    )
    return job_id_of(reg.address, job_key_for(job))


def job_stake(session: Session, job: FederatedJob) -> int:
    """What every participant deposits before attesting: the largest stake any owner of the
    approving domains requires (each asks it of all, the contract has one stake per job)."""
    found = session.scalars(
        select(FederatedParticipant.stake_wei).where(
            FederatedParticipant.job_id == job.id,
            FederatedParticipant.status == "approved",
            FederatedParticipant.decided_at <= job.started_at,
        )
    ).all()
    return max((int(s) for s in found), default=0)


def chain_deadline(job: FederatedJob) -> int:
    """When a majority may settle the job on chain: every round run to its timeout, then
    `ATTESTATION_WINDOW_S` for the attestations."""
    assert job.started_at is not None
    # Read from the stored spec (an analysis has one round): spec_of lives above this module.
    rounds = int(job.spec.get("rounds", 1))
    window = rounds * float(job.spec["round_timeout"]) + ATTESTATION_WINDOW_S
    return int(job.started_at.timestamp() + window)


def enqueue_round_logged(session: Session, job: FederatedJob, round_: FederatedRound) -> None:
    """Log a closed round of a job created on chain: its aggregate's hash as the network
    stored it, which participants it counts and the samples each reported."""
    reg = current_registry()
    if reg is None or round_.aggregate_digest is None:
        return
    by_participant = _participant_addresses(session, job)
    if not by_participant or None in by_participant.values():
        return  # the job was never created on chain (see enqueue_job_started)
    reported = session.execute(
        select(FederatedUpdate.participant_id, FederatedUpdate.samples).where(
            FederatedUpdate.round_id == round_.id
        )
    ).all()
    samples = {str(by_participant[pid]): n for pid, n in reported if pid in by_participant}
    counted, sample_list = round_mask([str(a) for a in by_participant.values()], samples)
    reg.outbox.log_round(
        session,
        job_id_of(reg.address, job_key_for(job)),
        round_.aggregate_digest,
        counted,
        sample_list,
    )


def registry_job(session: Session, job: FederatedJob) -> tuple[str, int] | None:
    """The job's id on chain and how many rounds the network logs there so far, for the
    domains that attest on it; None when it is not recorded (writes off, not started, or a
    participant without an address)."""
    reg = current_registry()
    if reg is None or job.started_at is None:
        return None
    by_participant = _participant_addresses(session, job)
    if not by_participant or None in by_participant.values():
        return None
    logged = session.scalar(
        select(func.count())
        .select_from(FederatedRound)
        .where(
            FederatedRound.job_id == job.id,
            FederatedRound.status == "closed",
            FederatedRound.aggregate_digest.is_not(None),
        )
    )
    return job_id_of(reg.address, job_key_for(job)), int(logged or 0)


def enqueue_job_called_off(session: Session, job: FederatedJob) -> None:
    """Cancel a recorded job that ended before any domain attested (failed or cancelled):
    deposits go back and the data scientist may reclaim the bounty. Once a domain attested,
    the job is settled by finalize instead (see `enqueue_job_settled`)."""
    reg = current_registry()
    found = registry_job(session, job)
    if reg is None or found is None:
        return
    attested = session.scalar(
        select(func.count())
        .select_from(FederatedParticipant)
        .where(
            FederatedParticipant.job_id == job.id,
            FederatedParticipant.attested_hash.is_not(None),
        )
    )
    if not attested:
        reg.outbox.cancel_job(session, found[0])


def registry_job_id(session: Session, job: FederatedJob) -> str | None:
    """The job's id on chain, for its data scientist to verify; None when not recorded."""
    found = registry_job(session, job)
    return found[0] if found else None


def enqueue_job_settled(session: Session, job: FederatedJob) -> None:
    """Every domain whose data is in the result attested: finalize the job on chain. The
    sender holds it until the attestations are mined; if they differ the chain settles it
    at the deadline by majority, and a domain that attested another hash forfeits its stake."""
    reg = current_registry()
    found = registry_job(session, job)
    if reg is None or found is None:
        return
    reg.outbox.finalize(session, found[0])
