"""The append-only, hash-chained audit log: appending entries and verifying the chain."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.models import AuditEntry, AuditHead

GENESIS_HASH = "0" * 64


def entry_hash(
    *,
    seq: int,
    at: str,
    actor: str,
    action: str,
    target: str,
    address: str,
    details: str,
    prev_hash: str,
) -> str:
    canonical = json.dumps(
        [seq, at, actor, action, target, address, details, prev_hash],
        separators=(",", ":"),
        ensure_ascii=False,
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
    seq = head.seq + 1
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    details_json = json.dumps(details or {}, sort_keys=True, separators=(",", ":"))
    digest = entry_hash(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        target=target,
        address=address,
        details=details_json,
        prev_hash=head.hash,
    )
    entry = AuditEntry(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        target=target,
        address=address,
        details=details_json,
        prev_hash=head.hash,
        hash=digest,
    )
    session.add(entry)
    head.seq, head.hash = seq, digest
    return entry


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries: int
    head_hash: str
    first_broken_seq: int | None = None
    problem: str | None = None


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
            elif entry.hash != entry_hash(
                seq=entry.seq,
                at=entry.at,
                actor=entry.actor,
                action=entry.action,
                target=entry.target,
                address=entry.address,
                details=entry.details,
                prev_hash=entry.prev_hash,
            ):
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
