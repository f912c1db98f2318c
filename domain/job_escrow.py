"""A job's record on chain as this domain's console shows it: which chain job, and its
escrow and payouts.

The chain job is what this domain recorded itself: its own job's id (a data-centric job),
or the network's job it attested the final model on, as its outbox holds that attestation.
Nothing a peer or the network says now is taken for it; the figures are read from the chain
this domain is configured with.
"""

from __future__ import annotations

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from domain import federated, registry_writes
from domain.models import Job
from registry.escrow import JobEscrow, read_escrow

THIS_DOMAIN = "this domain"


def chain_job_id(session: Session, job_id: int) -> str | None:
    """The chain job of this domain's job (or federated request) `job_id`; None when it is
    not recorded, or a federated one this domain has not attested yet."""
    job = session.get(Job, job_id)
    if job is not None and job.registry_job_id is not None:
        return job.registry_job_id
    reg = registry_writes.current_registry()
    participation = federated.participation_of(session, job_id)
    if reg is None or participation is None or participation.attested_hash is None:
        return None
    attested = "0x" + participation.attested_hash.removeprefix("0x").lower()
    entries = session.scalars(
        select(reg.entry_model)
        .where(reg.entry_model.op == "attest")
        .order_by(reg.entry_model.id.desc())
    )
    for entry in entries:
        if entry.args.get("model_hash") == attested:
            found: str = entry.args["job_id"]
            return found
    return None


def job_escrow(session: Session, job_id: int) -> JobEscrow | None:
    """The chain job's bounty, stake per participant and payouts, this domain's own address
    named; None when registry writes are off or the job is not on chain."""
    reg = registry_writes.current_registry()
    found = chain_job_id(session, job_id) if reg is not None else None
    if reg is None or found is None:
        return None
    config = current_app.config["GRID"]
    return read_escrow(
        config.chain_rpc_url, reg.registry_address, found, {reg.address: THIS_DOMAIN}
    )
