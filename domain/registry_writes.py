"""The domain's registry writes: its outbox, the sending thread, self-registration, anchors.

Job code calls the `enqueue_*` functions inside the transaction that changes the job; with no
chain configured they do nothing and return None, and the domain works as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app
from sqlalchemy.orm import Session

from domain import audit
from domain.config import DomainConfig
from domain.models import AuditHead, RegistryOutboxEntry, RegistrySenderLease
from grid_common.db import Database
from registry.client import job_id_of, round_mask
from registry.node import EXTENSION, NodeRegistry, off_message
from registry.outbox import ExpectedJob

log = logging.getLogger(__name__)
OFF_MESSAGE = off_message("this domain's jobs and audit anchors")


class DomainRegistry(NodeRegistry):
    """The registry side of one domain app: a node registry that also anchors the audit log
    and names the jobs it coordinates."""

    def __init__(self, config: DomainConfig, database: Database) -> None:
        super().__init__(
            "domain",
            data_dir=config.data_dir,
            rpc_url=config.chain_rpc_url,
            registry_address=config.registry_address,
            sessions=database.sessionmaker,
            entry_model=RegistryOutboxEntry,
            lease_model=RegistrySenderLease,
        )
        self.anchor_interval_s = float(config.registry_anchor_interval_s)
        self.sender.every_tick(self.anchor_if_due)

    def job_id(self, job_key: str) -> str:
        """The on-chain id of a job this domain coordinates."""
        return job_id_of(self.address, job_key)

    def anchor(self, session: Session, *, force: bool = False) -> RegistryOutboxEntry | None:
        """Enqueue an anchor of the audit chain's head, unless that head is already anchored."""
        head = session.get(AuditHead, 1)
        if head is None or head.seq == 0:
            return None
        last = self.outbox.last(session, "anchor")
        if not force and last is not None and int(last.args["seq"]) == head.seq:
            return None
        entry: RegistryOutboxEntry = self.outbox.anchor(session, head.seq, head.hash)
        return entry

    def anchor_if_due(self, session: Session) -> None:
        """The sender's periodic hook: anchor a changed head once per interval."""
        last = self.outbox.last(session, "anchor")
        if last is not None and time.time() - last.created_at.timestamp() < self.anchor_interval_s:
            return
        self.anchor(session)


def init_app(app: Flask, config: DomainConfig, database: Database) -> DomainRegistry | None:
    """Turn registry writes on when a chain is configured; otherwise say clearly that they
    are off. The node's Ethereum key is made in its data dir on first start."""
    if not (config.chain_rpc_url and config.registry_address):
        log.warning(OFF_MESSAGE)
        app.extensions[EXTENSION] = None
        return None
    node = DomainRegistry(config, database)
    node.attach(app, database.sessionmaker, background=config.background)
    return node


def current_registry() -> DomainRegistry | None:
    """This app's registry side, or None when registry writes are off."""
    found: DomainRegistry | None = current_app.extensions.get(EXTENSION)
    return found


# --- what job code calls -------------------------------------------------------------------


def job_key_for(job_id: int, spec_hash: str) -> str:
    """The name a domain gives a job on chain: unique per job row and its spec, so a domain
    whose database was reset does not collide with its own earlier jobs of the same id."""
    return f"job/{job_id}/{spec_hash.removeprefix('0x')[:16]}"


def registry_job_id(job_key: str) -> str | None:
    """The on-chain id of this domain's job, to show the data scientist (None when off)."""
    reg = current_registry()
    return reg.job_id(job_key) if reg else None


def enqueue_job_created(
    session: Session,
    job_key: str,
    spec_hash: str,
    *,
    participants: list[str] | None = None,
    stake_wei: int = 0,
    bounty_wei: int = 0,
    deadline: int | None = None,
) -> str | None:
    """Record a job's creation with this domain as coordinator (and, for a data-centric job,
    as its only participant, the default). Returns the on-chain job id, or None when off."""
    reg = current_registry()
    if reg is None:
        return None
    reg.outbox.create_job(
        session,
        job_key,
        spec_hash,
        participants or [reg.address],
        stake_wei=stake_wei,
        bounty_wei=bounty_wei,
        deadline=deadline,
    )
    return reg.job_id(job_key)


def enqueue_round_logged(
    session: Session,
    job_key: str,
    aggregate_hash: str,
    samples: int | Mapping[str, int],
    *,
    participants: list[str] | None = None,
) -> None:
    """Log one round of a job this domain coordinates: the aggregate's hash and the samples
    each participant reported (an int means this domain alone)."""
    reg = current_registry()
    if reg is None:
        return
    members = participants or [reg.address]
    counts = {reg.address: samples} if isinstance(samples, int) else dict(samples)
    counted, sample_list = round_mask(members, counts)
    reg.outbox.log_round(session, reg.job_id(job_key), aggregate_hash, counted, sample_list)


def enqueue_result_attested(
    session: Session, job_id: str, model_hash: str, *, finalize: bool = False
) -> None:
    """Attest the final model's hash for a job this domain takes part in (`job_id` is the
    on-chain id); `finalize=True` also settles it once every attestation is in."""
    reg = current_registry()
    if reg is None:
        return
    reg.outbox.attest(session, job_id, model_hash)
    if finalize:
        reg.outbox.finalize(session, job_id)


def enqueue_federated_attestation(
    session: Session,
    job_id: str,
    model_hash: str,
    rounds: int,
    *,
    coordinator: str | None,
    spec_hash: str,
    stake_wei: int = 0,
    willing_wei: int = 0,
) -> None:
    """Attest the final model of a network's federated job (`job_id` on chain), once the
    network's `rounds` rounds are on chain, after depositing the job's stake; the network
    finalizes it. Both wait for the chain to show that job coordinated by `coordinator` (the
    network's address, as it gave it at join), with `spec_hash` (the one its invitation
    signed) and this domain among its participants; otherwise neither is sent. A stake above
    what this domain's owner requires (`willing_wei`) is not deposited, so nothing is
    attested: the network sets the stake, the owner's setting caps what it spends. A
    malformed id from the network is logged and skipped."""
    reg = current_registry()
    if reg is None:
        return
    if coordinator is None:
        log.warning(
            "not attesting federated job %s on chain: its network gave no Ethereum address "
            "when this domain joined it (join it again once the network writes on chain)",
            job_id,
        )
        return
    if stake_wei > willing_wei:
        log.warning(
            "not attesting federated job %s on chain: it asks a stake of %s wei, more than "
            "this domain's %s (grid settings set --stake)",
            job_id,
            stake_wei,
            willing_wei,
        )
        return
    try:
        expect = ExpectedJob(coordinator=coordinator, spec_hash=spec_hash)
        if stake_wei:
            reg.outbox.deposit_stake(session, job_id, stake_wei, expect=expect)
        reg.outbox.attest(session, job_id, model_hash, await_rounds=rounds, expect=expect)
    except ValueError as exc:
        log.warning("not attesting federated job %s on chain: %s", job_id, exc)


def enqueue_data_centric_result(
    session: Session, job_key: str, model_hash: str, samples: int
) -> None:
    """A finished data-centric job in one go: its single round (the model is the aggregate,
    `samples` the rows trained on), this domain's attestation, and settlement."""
    reg = current_registry()
    if reg is None:
        return
    enqueue_round_logged(session, job_key, model_hash, samples)
    enqueue_result_attested(session, reg.job_id(job_key), model_hash, finalize=True)


def enqueue_job_cancelled(session: Session, job_key: str) -> None:
    """Call off a job this domain coordinates (failed or cancelled before any attestation)."""
    reg = current_registry()
    if reg is None:
        return
    reg.outbox.cancel_job(session, reg.job_id(job_key))


def registry_status(session: Session) -> dict[str, Any]:
    """What the domain tells its operators about registry writes."""
    reg = current_registry()
    if reg is None:
        return {"enabled": False, "message": OFF_MESSAGE}
    last_anchor = reg.outbox.last(session, "anchor")
    return {
        **reg.status(session),
        "last_anchor": None
        if last_anchor is None
        else {
            "seq": int(last_anchor.args["seq"]),
            "head_hash": last_anchor.args["head_hash"],
            "status": last_anchor.status,
            "tx_hash": last_anchor.tx_hash,
            "block_number": last_anchor.block_number,
        },
    }


def anchor_now(session: Session, *, actor: str, address: str) -> dict[str, Any]:
    """Anchor the audit head on demand; the request is itself audited (and anchored)."""
    reg = current_registry()
    if reg is None:
        raise RuntimeError(OFF_MESSAGE)
    audit.append(session, actor=actor, action="registry.anchor", address=address)
    session.flush()
    entry = reg.anchor(session, force=True)
    if entry is None:
        raise RuntimeError("the audit log is empty")  # not reached: we just appended to it
    return {
        "seq": int(entry.args["seq"]),
        "head_hash": entry.args["head_hash"],
        "message": "anchor queued",
    }
