"""The append-only, hash-chained audit log: appending, reading and verifying the chain."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.auth import client_address, current_user
from domain.models import AuditEntry, AuditHead
from grid_common.schemas import AuditEntryOut, AuditList, AuditQuery, AuditVerification

GENESIS_HASH = "0" * 64


HASHED_FIELDS = ("seq", "at", "actor", "action", "target", "address", "details", "prev_hash")


def entry_hash(fields: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of every hashed field, in a fixed order."""
    canonical = json.dumps(
        [fields[name] for name in HASHED_FIELDS], separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str = "",
    address: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add an entry in the caller's transaction; it commits or rolls back with the change."""
    head = session.execute(
        select(AuditHead).where(AuditHead.id == 1).with_for_update()
    ).scalar_one()
    fields: dict[str, Any] = {
        "seq": head.seq + 1,
        "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": actor,
        "action": action,
        "target": target,
        "address": address,
        "details": json.dumps(details or {}, sort_keys=True, separators=(",", ":")),
        "prev_hash": head.hash,
    }
    entry = AuditEntry(**fields, hash=entry_hash(fields))
    session.add(entry)
    head.seq, head.hash = entry.seq, entry.hash
    return entry


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries: int
    head_hash: str
    first_broken_seq: int | None = None
    problem: str | None = None


def record(session: Session, action: str, target: str = "", **details: Any) -> None:
    """Audit an action by the signed-in caller, inside the caller's transaction."""
    append(
        session,
        actor=current_user().email,
        action=action,
        target=target,
        address=client_address(),
        details=details,
    )


def verify_chain(session: Session, batch: int = 1000) -> ChainReport:
    """Recompute every link in order; name the first entry that does not match."""
    prev_hash, expected_seq, count = GENESIS_HASH, 1, 0
    last_seq = 0
    while True:
        rows = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.seq > last_seq)
            .order_by(AuditEntry.seq)
            .limit(batch)
        ).all()
        if not rows:
            break
        for entry in rows:
            problem = None
            if entry.seq != expected_seq:
                problem = f"entry {expected_seq} is missing"
            elif entry.prev_hash != prev_hash:
                problem = "prev_hash does not match the previous entry's hash"
            elif entry.hash != entry_hash({f: getattr(entry, f) for f in HASHED_FIELDS}):
                problem = "contents do not match the entry's hash"
            if problem:
                return ChainReport(False, count, prev_hash, expected_seq, problem)
            prev_hash, expected_seq, count = entry.hash, expected_seq + 1, count + 1
            last_seq = entry.seq
    head = session.get(AuditHead, 1)
    if head is not None and (head.seq != count or head.hash != prev_hash):
        return ChainReport(
            False, count, prev_hash, count + 1, "entries after this point were removed"
        )
    return ChainReport(True, count, prev_hash)


def list_entries(session: Session, query: AuditQuery) -> AuditList:
    """Entries after `query.after` in order, filtered by actor and by action prefix."""
    statement = select(AuditEntry).where(AuditEntry.seq > query.after)
    if query.actor:
        statement = statement.where(AuditEntry.actor == query.actor)
    if query.action:
        statement = statement.where(AuditEntry.action.startswith(query.action))
    entries = session.scalars(statement.order_by(AuditEntry.seq).limit(query.limit))
    return AuditList(
        items=[
            AuditEntryOut(
                seq=e.seq,
                at=e.at,
                actor=e.actor,
                action=e.action,
                target=e.target,
                address=e.address,
                details=json.loads(e.details),
                prev_hash=e.prev_hash,
                hash=e.hash,
            )
            for e in entries
        ]
    )


def verification(session: Session) -> AuditVerification:
    """The chain recomputed (see `verify_chain`), as the API and the console show it."""
    report = verify_chain(session)
    return AuditVerification(
        ok=report.ok,
        entries=report.entries,
        head_hash=report.head_hash,
        first_broken_seq=report.first_broken_seq,
        problem=report.problem,
    )
