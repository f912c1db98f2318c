"""Submits outbox entries in order: one sender per node (a lease), nonces kept in the rows.

Each entry is signed with the next nonce and written back (nonce, raw transaction, hash)
before it is broadcast, so after a crash or a chain outage the same transaction is sent
again and can land at most once. Up to `max_in_flight` entries are on their way at a time;
an entry whose arguments come from the chain (finalize) waits for all before it. An entry on
a job another node coordinates (a domain's attestation on a network's job) waits, with the
later entries of that job, until the chain shows what it needs: the job created, its rounds
logged, every attestation in; the rest of the outbox goes on meanwhile. Such a job's id comes
from its coordinator, so before staking or attesting on it the sender checks that the chain's
job is the one the node agreed to (`ExpectedJob`); if not, the entry fails, naming the check.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from web3.contract.contract import ContractFunction

from grid_common.db import utcnow
from registry.client import (
    ROLE_IDS,
    JobRecord,
    RegistryClient,
    job_key_bytes,
    to_bytes32,
)
from registry.errors import ChainUnavailable, RegistryError
from registry.outbox import (
    AWAITS,
    CHAIN_READ_OPS,
    EXPECTS,
    OutboxEntryMixin,
    SenderLeaseMixin,
)

log = logging.getLogger(__name__)
LEASE_ROW = 1


def _chain_ready(entry: Any, job: JobRecord) -> bool:
    """Whether the chain holds what an entry on another node's job needs: the job itself and,
    for an attestation, every round its coordinator logs (none may follow an attestation)."""
    if not job.exists:
        return False
    return not (job.status == "open" and job.rounds < int(entry.args[AWAITS]))


def _not_yet(entry: Any, exc: RegistryError) -> bool:
    """Whether a revert means "try again later": a job another node has yet to create, or a
    finalize before every attestation is in (or the deadline passed)."""
    if entry.op == "finalize":
        return exc.reason == "NotFinalizable"
    return AWAITS in entry.args and exc.reason == "UnknownJob"


@dataclass
class TickReport:
    """What one pass did; `busy` means there is more to do right away."""

    leader: bool = False
    signed: int = 0
    confirmed: int = 0
    failed: int = 0
    in_flight: int = 0
    pending: int = 0
    # Pending entries that wait for another node's writes: no reason to poll fast for them.
    deferred: int = 0
    error: str | None = None

    @property
    def busy(self) -> bool:
        ready = self.pending - self.deferred
        return self.leader and self.error is None and (ready > 0 or self.in_flight > 0)


class OutboxSender:
    """Sends one app's outbox through `client` (which holds the node's key)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        entry_model: type[OutboxEntryMixin],
        lease_model: type[SenderLeaseMixin],
        client: RegistryClient,
        *,
        max_in_flight: int = 16,
        batch: int = 64,
        lease_s: float = 30.0,
        resend_after_s: float = 30.0,
        idle_poll_s: float = 2.0,
        busy_poll_s: float = 0.05,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.sessions = sessions
        self.Entry: Any = entry_model
        self.Lease: Any = lease_model
        self.client = client
        self.max_in_flight = max_in_flight
        self.batch = batch
        self.lease_s = lease_s
        self.resend_after_s = resend_after_s
        self.idle_poll_s = idle_poll_s
        self.busy_poll_s = busy_poll_s
        self.max_backoff_s = max_backoff_s
        self.holder = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.ready = False
        self.last_error: str | None = None
        self._next_nonce: int | None = None
        self._failures = 0
        self._hooks: list[Callable[[Session], None]] = []
        # Other nodes' jobs that name this node as a participant: a job's participants never
        # change, so the chain is asked once per job.
        self._participating: set[str] = set()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()

    def every_tick(self, hook: Callable[[Session], None]) -> None:
        """Run `hook(session)` in its own transaction on each pass while leading (the domain
        enqueues its periodic audit anchors this way); its failures are logged, not raised."""
        self._hooks.append(hook)

    # --- the loop ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the sending thread in this process (a no-op if it already runs here)."""
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        self._pid = os.getpid()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._loop, name="grid-registry-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10) -> None:
        """Stop the sending thread after its pass and give the lease up; a no-op where it
        never ran (another process, or an app that serves no requests)."""
        self._stop.set()
        self._wake.set()
        if self._thread is None or self._pid != os.getpid():
            return
        self._thread.join(timeout_s)
        self._thread = None
        try:
            self.release()
        except Exception as exc:  # the database may be gone already; the lease expires anyway
            log.warning("registry sender lease not released: %s", exc)

    def wake(self) -> None:
        """Look at the outbox now instead of at the next poll."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            report = self.tick()
            if report.error is not None:
                self._failures += 1
                delay = min(self.max_backoff_s, self.busy_poll_s * 2 ** min(self._failures, 10))
            else:
                self._failures = 0
                delay = self.busy_poll_s if report.busy else self.idle_poll_s
            self._wake.wait(delay)
            self._wake.clear()

    def run_until_idle(self, timeout_s: float = 60) -> TickReport:
        """Tick until nothing is pending or in flight (tests, benchmarks, one-shot tools)."""
        deadline = time.monotonic() + timeout_s
        while True:
            report = self.tick()
            if not report.busy and report.error is None and report.leader:
                return report
            if time.monotonic() > deadline:
                raise TimeoutError(f"outbox not drained in {timeout_s}s: {report}")
            time.sleep(self.busy_poll_s if report.error is None else 0.2)

    # --- one pass ---------------------------------------------------------------------

    def tick(self) -> TickReport:
        """Take or renew the lease, settle what is in flight, sign and send what is next."""
        report = TickReport()
        try:
            report.leader = self._hold_lease()
            if not report.leader:
                self._next_nonce = None
                return report
            if not self.ready:
                if not self.client.has_code():
                    raise RegistryError(
                        f"no contract at {self.client.address} on this chain: "
                        "check GRID_REGISTRY_ADDRESS"
                    )
                self.ready = True
            for hook in self._hooks:
                self._run_hook(hook)
            with self.sessions() as session:
                self._settle(session, report)
                self._send_new(session, report)
                report.pending = int(
                    session.scalar(
                        select(func.count())
                        .select_from(self.Entry)
                        .where(self.Entry.status == "pending")
                    )
                    or 0
                )
        except RegistryError as exc:
            report.error = str(exc)
        except Exception as exc:
            log.exception("registry sender pass failed")
            report.error = f"{type(exc).__name__}: {exc}"
        if report.error is not None:
            self._next_nonce = None  # re-read from the rows and the chain next time
        if report.error is not None and report.error != self.last_error:
            log.warning("registry writes delayed: %s", report.error)
        self.last_error = report.error
        return report

    def _run_hook(self, hook: Callable[[Session], None]) -> None:
        try:
            with self.sessions() as session, session.begin():
                hook(session)
        except Exception:
            log.exception("registry sender hook failed")

    def _hold_lease(self) -> bool:
        now = time.time()
        try:
            with self.sessions() as session, session.begin():
                lease = session.get(self.Lease, LEASE_ROW, with_for_update=True)
                if lease is None:
                    session.add(
                        self.Lease(id=LEASE_ROW, holder=self.holder, expires_at=now + self.lease_s)
                    )
                    return True
                if lease.holder != self.holder and lease.expires_at > now:
                    return False
                if lease.holder != self.holder:
                    self._next_nonce = None  # the last holder may have signed since we led
                lease.holder, lease.expires_at = self.holder, now + self.lease_s
                return True
        except IntegrityError:
            return False  # another process created the row first

    def _still_leading(self, session: Session) -> bool:
        """Whether this process still holds the lease, renewed if so, checked (row locked) in
        the transaction that records new signatures: a successor either sees them or, having
        taken over first, makes this pass record nothing."""
        lease = session.get(self.Lease, LEASE_ROW, with_for_update=True, populate_existing=True)
        if lease is None or lease.holder != self.holder:
            return False
        lease.expires_at = time.time() + self.lease_s
        return True

    def release(self) -> None:
        """Give the lease up (on shutdown) so another process takes over at once."""
        with self.sessions() as session, session.begin():
            lease = session.get(self.Lease, LEASE_ROW, with_for_update=True)
            if lease is not None and lease.holder == self.holder:
                lease.expires_at = 0.0

    def _nonce(self, session: Session) -> int:
        if self._next_nonce is None:
            # Only transactions still in flight: mined ones are in the chain's count already,
            # and rows signed by an earlier key must not push this key's nonce forward.
            highest = session.scalar(
                select(func.max(self.Entry.nonce)).where(self.Entry.status == "signed")
            )
            from_rows = -1 if highest is None else int(highest)
            self._next_nonce = max(self.client.pending_nonce(), from_rows + 1)
        return self._next_nonce

    def _settle(self, session: Session, report: TickReport) -> None:
        """Record receipts of signed entries; resend those the chain has not mined yet."""
        signed = session.scalars(
            select(self.Entry).where(self.Entry.status == "signed").order_by(self.Entry.id)
        ).all()
        now = utcnow()
        receipts = self.client.receipts([e.tx_hash for e in signed])
        for entry in signed:
            receipt = receipts[entry.tx_hash]
            if receipt is not None:
                entry.block_number = receipt.block_number
                entry.gas_used = receipt.gas_used
                entry.confirmed_at = now
                if receipt.status == 1:
                    entry.status = "confirmed"
                    report.confirmed += 1
                else:
                    entry.status = "failed"
                    entry.last_error = f"reverted on chain in {entry.tx_hash}"
                    report.failed += 1
                    log.error("registry %s (entry %s) reverted on chain", entry.op, entry.id)
                continue
            stale = (
                entry.sent_at is None or (now - entry.sent_at).total_seconds() > self.resend_after_s
            )
            if stale:
                self._broadcast(session, entry)
        session.commit()
        report.in_flight = sum(1 for e in signed if e.status == "signed")

    def _broadcast(self, session: Session, entry: Any) -> None:
        entry.attempts += 1
        try:
            self.client.broadcast(entry.raw_tx)
        except ChainUnavailable:
            session.commit()
            raise
        except RegistryError as exc:
            message = str(exc).lower()
            if "nonce too low" in message and self.client.receipt(entry.tx_hash) is None:
                # Someone else used this nonce with the node's key: sign the entry afresh.
                log.warning(
                    "registry entry %s lost its nonce %s; re-signing", entry.id, entry.nonce
                )
                entry.status, entry.nonce, entry.raw_tx, entry.tx_hash = "pending", None, None, None
                self._next_nonce = None
            elif exc.reason == "insufficient_funds":
                entry.last_error = str(exc)
                session.commit()
                raise RegistryError(
                    f"the node's address {self.client.sender} cannot pay for gas: fund it",
                    reason="insufficient_funds",
                ) from exc
            else:
                entry.last_error = str(exc)
                log.warning("registry entry %s not accepted yet: %s", entry.id, exc)
            return
        entry.sent_at = utcnow()

    def _send_new(self, session: Session, report: TickReport) -> None:
        if report.in_flight >= self.max_in_flight:
            return
        pending = session.scalars(
            select(self.Entry)
            .where(self.Entry.status == "pending")
            .order_by(self.Entry.id)
            .limit(self.batch)
        ).all()
        if not pending:
            return
        fees = self.client.fees()
        signed_now: list[Any] = []
        outage: RegistryError | None = None
        deferred_jobs: set[str] = set()
        for entry in pending:
            waiting = report.in_flight + len(signed_now)
            if waiting >= self.max_in_flight:
                break
            job_id = entry.args.get("job_id")
            if job_id is not None and job_id in deferred_jobs:
                report.deferred += 1  # after an entry of its job that waits: keep their order
                continue
            if entry.op in CHAIN_READ_OPS and waiting:
                break
            try:
                if AWAITS in entry.args:
                    job = self.client.job(entry.args["job_id"])
                    if job.exists and self._refused(entry, job):
                        report.failed += 1
                        continue
                    if not _chain_ready(entry, job):
                        deferred_jobs.add(job_id)
                        report.deferred += 1
                        continue
                function = self._function(entry)
                value = int(entry.value_wei or 0)
                signed = self.client.sign(
                    function, nonce=self._nonce(session), fees=fees, value=value
                )
            except ChainUnavailable as exc:
                outage = exc
                break
            except RegistryError as exc:
                if _not_yet(entry, exc):
                    deferred_jobs.add(job_id)
                    report.deferred += 1
                    continue
                if exc.reason in (None, "insufficient_funds"):
                    outage = RegistryError(
                        f"cannot send {entry.op} from {self.client.sender}: {exc}",
                        reason=exc.reason,
                    )
                    break
                if waiting:
                    break  # it may only need what is still in flight: try again after it
                entry.status, entry.last_error = "failed", str(exc)
                report.failed += 1
                log.error("registry %s (entry %s) refused: %s", entry.op, entry.id, exc)
                continue
            except ValueError as exc:
                entry.status, entry.last_error = "failed", f"bad arguments: {exc}"
                report.failed += 1
                continue
            entry.status = "signed"
            entry.nonce, entry.raw_tx, entry.tx_hash = signed.nonce, signed.raw, signed.tx_hash
            self._next_nonce = signed.nonce + 1
            signed_now.append(entry)
        if signed_now and not self._still_leading(session):
            # The lease ran out during this pass (a slow chain) and another process took over:
            # it may be sending these very entries with these nonces, so record none of it.
            session.rollback()
            self._next_nonce = None
            log.warning("registry sender lease taken over mid-pass; signatures dropped")
            return
        # Written before anything is broadcast: after a crash from here on, the same
        # transactions are sent again, never new ones with other nonces.
        session.commit()
        for entry in signed_now:
            report.signed += 1
            report.in_flight += 1
            self._broadcast(session, entry)
        session.commit()
        if outage is not None:
            raise outage

    def _refused(self, entry: Any, job: JobRecord) -> bool:
        """Fail an entry on another node's job that is not the job it expects (no retry: the
        chain's job will not change), logging why."""
        refusal = self._refusal(entry, job)
        if refusal is None:
            return False
        entry.status, entry.last_error = "failed", refusal
        log.error("registry %s (entry %s) not sent: %s", entry.op, entry.id, refusal)
        return True

    def _refusal(self, entry: Any, job: JobRecord) -> str | None:
        """Why this node must not stake or attest on another node's job as the chain shows it,
        naming the failed check; None when the job is the one the entry expects."""
        expect = entry.args.get(EXPECTS)
        if not isinstance(expect, dict):
            return "expected-job check failed: the entry records no coordinator or spec hash"
        coordinator, spec_hash = str(expect.get("coordinator")), str(expect.get("spec_hash"))
        if job.coordinator.lower() != coordinator.lower():
            return (
                f"coordinator check failed: job {job.job_id} is coordinated by "
                f"{job.coordinator}, not by the network this node joined ({coordinator})"
            )
        if job.spec_hash.lower() != spec_hash.lower():
            return (
                f"spec hash check failed: job {job.job_id} carries spec hash {job.spec_hash}, "
                f"not the {spec_hash} its network signed"
            )
        if job.job_id not in self._participating:
            members = {a.lower() for a in self.client.participants(job.job_id)}
            if self.client.sender.lower() not in members:
                return (
                    f"participant check failed: job {job.job_id} does not name "
                    f"{self.client.sender} among its participants"
                )
            self._participating.add(job.job_id)
        return None

    def _function(self, entry: Any) -> ContractFunction:
        args: dict[str, Any] = entry.args
        c = self.client
        match entry.op:
            case "register":
                return c.function("register", ROLE_IDS[args["role"]], to_bytes32(args["key_hash"]))
            case "set_association":
                return c.function(
                    "setAssociation",
                    c.w3.to_checksum_address(args["domain"]),
                    bool(args["associated"]),
                )
            case "create_job":
                return c.function(
                    "createJob",
                    job_key_bytes(args["job_key"]),
                    to_bytes32(args["spec_hash"]),
                    [c.w3.to_checksum_address(p) for p in args["participants"]],
                    int(args["stake_wei"]),
                    int(args["deadline"]),
                )
            case "fund_bounty" | "deposit_stake" | "cancel_job" | "reclaim_bounty":
                name = {
                    "fund_bounty": "fundBounty",
                    "deposit_stake": "depositStake",
                    "cancel_job": "cancelJob",
                    "reclaim_bounty": "reclaimBounty",
                }[entry.op]
                return c.function(name, to_bytes32(args["job_id"]))
            case "log_round":
                return c.function(
                    "logRound",
                    to_bytes32(args["job_id"]),
                    to_bytes32(args["aggregate_hash"]),
                    int(args["counted"]),
                    [int(s) for s in args["samples"]],
                )
            case "attest":
                return c.function(
                    "attest", to_bytes32(args["job_id"]), to_bytes32(args["model_hash"])
                )
            case "finalize":
                rounds = [
                    r.as_argument()
                    for r in c.rounds(args["job_id"], from_block=int(args.get("from_block", 0)))
                ]
                return c.function("finalize", to_bytes32(args["job_id"]), rounds)
            case "withdraw":
                return c.function("withdraw")
            case "anchor":
                return c.function("anchor", int(args["seq"]), to_bytes32(args["head_hash"]))
        raise ValueError(f"unknown op {entry.op!r}")
