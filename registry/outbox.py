"""The durable registry outbox: rows written in the caller's transaction, sent later in order.

A node app defines its two tables from the mixins here on its own declarative base
(`class RegistryOutboxEntry(OutboxEntryMixin, Base): __tablename__ = "registry_outbox"`),
so the outbox commits or rolls back with the state change it records. `registry.sender`
submits the rows; this module imports no web3, so models can import it cheaply.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import JSON, BigInteger, Float, Integer, String, Text, event, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from grid_common.db import UtcDateTime, utcnow

Op = Literal[
    "register",
    "set_association",
    "create_job",
    "fund_bounty",
    "deposit_stake",
    "log_round",
    "attest",
    "finalize",
    "cancel_job",
    "reclaim_bounty",
    "withdraw",
    "anchor",
]
OPS: frozenset[str] = frozenset(get_args(Op))
Status = Literal["pending", "signed", "confirmed", "failed"]
# Ops whose arguments are read from the chain when sent (finalize hands back every logged
# round): they wait until everything before them is mined.
CHAIN_READ_OPS = frozenset({"finalize"})
# The argument that marks an entry on a job another node coordinates (a domain's stake and
# attestation on a network's job): it waits, without holding up the rest of the outbox, until
# that job is on chain with at least this many rounds logged.
AWAITS = "await_rounds"
# The argument, on such an entry, holding what the job must be on chain (`ExpectedJob`): the
# sender checks it before it stakes or attests, since the job's id comes from its coordinator.
EXPECTS = "expect"
DEFAULT_JOB_WINDOW_S = 30 * 24 * 3600
_WAKE_ARMED = "registry_outbox_wake_armed"


class OutboxEntryMixin:
    """One registry write. `id` orders them; nonce, raw transaction and hash are kept once
    signed, so a crash or an outage resends the same transaction and never a second one."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    op: Mapped[str] = mapped_column(String(32))
    args: Mapped[dict[str, Any]] = mapped_column(JSON)
    value_wei: Mapped[str] = mapped_column(String(80), default="0")
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    nonce: Mapped[int | None] = mapped_column(BigInteger)
    tx_hash: Mapped[str | None] = mapped_column(String(66), index=True)
    raw_tx: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    gas_used: Mapped[int | None] = mapped_column(BigInteger)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class SenderLeaseMixin:
    """One row: which process sends right now. A lease that is not renewed expires, so a
    crashed sender's successor takes over; two senders never hold it at once."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    holder: Mapped[str] = mapped_column(String(100))
    expires_at: Mapped[float] = mapped_column(Float)


def _hex32(value: str) -> str:
    raw = value.lower().removeprefix("0x")
    if len(raw) != 64 or any(c not in "0123456789abcdef" for c in raw):
        raise ValueError(f"expected 32 bytes as 64 hex digits, got {value!r}")
    return "0x" + raw


def _address(value: str) -> str:
    raw = value.lower().removeprefix("0x")
    if len(raw) != 40 or any(c not in "0123456789abcdef" for c in raw):
        raise ValueError(f"not an Ethereum address: {value!r}")
    return "0x" + raw


@dataclass(frozen=True)
class ExpectedJob:
    """What a job another node coordinates must be on chain before this node stakes or attests
    on it: coordinated from `coordinator` (the address of the network it joined), with the spec
    hash that network signed. The sender also requires this node among its participants."""

    coordinator: str
    spec_hash: str

    def as_args(self) -> dict[str, str]:
        """The entry's `expect` argument; ValueError for a malformed address or hash."""
        return {"coordinator": _address(self.coordinator), "spec_hash": _hex32(self.spec_hash)}


class Outbox:
    """Typed enqueueing for one app's outbox table. Every method adds a row to `session`
    and flushes nothing on its own: the caller's commit makes it durable, its rollback
    drops it along with the change it describes."""

    def __init__(
        self, entry_model: type[OutboxEntryMixin], notify: Callable[[], None] | None = None
    ) -> None:
        self.model: Any = entry_model
        self.notify = notify

    def enqueue(
        self, session: Session, op: Op, args: Mapping[str, Any], *, value_wei: int = 0
    ) -> OutboxEntryMixin:
        if op not in OPS:
            raise ValueError(f"unknown registry op {op!r}")
        if value_wei < 0:
            raise ValueError("value_wei cannot be negative")
        entry = self.model(op=op, args=dict(args), value_wei=str(value_wei), status="pending")
        session.add(entry)
        if self.notify is not None and not session.info.get(_WAKE_ARMED):
            # Wake the sender when this transaction commits, not before: until then the row
            # is invisible to it, and on rollback there is nothing to send.
            session.info[_WAKE_ARMED] = True
            event.listen(session, "after_commit", self._after_commit, once=True)
        return entry

    def _after_commit(self, session: Session) -> None:
        session.info.pop(_WAKE_ARMED, None)
        if self.notify is not None:
            self.notify()

    def register(self, session: Session, role: Literal["domain", "network"], key_hash: str) -> Any:
        return self.enqueue(session, "register", {"role": role, "key_hash": _hex32(key_hash)})

    def set_association(self, session: Session, domain: str, associated: bool = True) -> Any:
        return self.enqueue(
            session, "set_association", {"domain": _address(domain), "associated": associated}
        )

    def create_job(
        self,
        session: Session,
        job_key: str,
        spec_hash: str,
        participants: Sequence[str],
        *,
        stake_wei: int = 0,
        bounty_wei: int = 0,
        deadline: int | None = None,
    ) -> Any:
        if not participants:
            raise ValueError("a job needs at least one participant")
        args = {
            "job_key": job_key,
            "spec_hash": _hex32(spec_hash),
            "participants": [_address(p) for p in participants],
            "stake_wei": str(stake_wei),
            "deadline": int(deadline or time.time() + DEFAULT_JOB_WINDOW_S),
        }
        return self.enqueue(session, "create_job", args, value_wei=bounty_wei)

    def fund_bounty(self, session: Session, job_id: str, amount_wei: int) -> Any:
        return self.enqueue(
            session, "fund_bounty", {"job_id": _hex32(job_id)}, value_wei=amount_wei
        )

    def deposit_stake(
        self, session: Session, job_id: str, amount_wei: int, *, expect: ExpectedJob
    ) -> Any:
        """Deposit the stake a job asks; sent once the job is on chain (another node's) and
        is what `expect` says."""
        args = {"job_id": _hex32(job_id), AWAITS: 0, EXPECTS: expect.as_args()}
        return self.enqueue(session, "deposit_stake", args, value_wei=amount_wei)

    def log_round(
        self,
        session: Session,
        job_id: str,
        aggregate_hash: str,
        counted: int,
        samples: Sequence[int],
    ) -> Any:
        if counted <= 0 or len(samples) != counted.bit_count():
            raise ValueError("samples must hold one count per bit set in `counted`")
        args = {
            "job_id": _hex32(job_id),
            "aggregate_hash": _hex32(aggregate_hash),
            "counted": str(counted),
            "samples": [int(s) for s in samples],
        }
        return self.enqueue(session, "log_round", args)

    def attest(
        self,
        session: Session,
        job_id: str,
        model_hash: str,
        *,
        await_rounds: int | None = None,
        expect: ExpectedJob | None = None,
    ) -> Any:
        """Attest the final model. On another node's job give `await_rounds` and `expect`: it
        is sent once the job is on chain as expected with that many rounds (its coordinator
        may log none after an attestation)."""
        if (await_rounds is None) != (expect is None):
            raise ValueError("an attestation on another node's job needs await_rounds and expect")
        args: dict[str, Any] = {"job_id": _hex32(job_id), "model_hash": _hex32(model_hash)}
        if await_rounds is not None and expect is not None:
            args[AWAITS], args[EXPECTS] = int(await_rounds), expect.as_args()
        return self.enqueue(session, "attest", args)

    def finalize(self, session: Session, job_id: str) -> Any:
        return self.enqueue(session, "finalize", {"job_id": _hex32(job_id)})

    def cancel_job(self, session: Session, job_id: str) -> Any:
        return self.enqueue(session, "cancel_job", {"job_id": _hex32(job_id)})

    def reclaim_bounty(self, session: Session, job_id: str) -> Any:
        return self.enqueue(session, "reclaim_bounty", {"job_id": _hex32(job_id)})

    def withdraw(self, session: Session) -> Any:
        return self.enqueue(session, "withdraw", {})

    def anchor(self, session: Session, seq: int, head_hash: str) -> Any:
        return self.enqueue(session, "anchor", {"seq": int(seq), "head_hash": _hex32(head_hash)})

    # --- reads ------------------------------------------------------------------------

    def counts(self, session: Session) -> dict[str, int]:
        """How many entries are in each status."""
        rows = session.execute(
            select(self.model.status, func.count()).group_by(self.model.status)
        ).all()
        found = {status: 0 for status in get_args(Status)}
        found.update({status: int(n) for status, n in rows})
        return found

    def last(self, session: Session, op: Op) -> Any:
        """The newest entry of one op (any status), or None."""
        return session.scalars(
            select(self.model).where(self.model.op == op).order_by(self.model.id.desc()).limit(1)
        ).first()
