"""Wire models of a node's registry status and anchoring endpoints."""

from __future__ import annotations

from pydantic import BaseModel


class OutboxCounts(BaseModel):
    pending: int
    signed: int
    confirmed: int
    failed: int


class AnchorOut(BaseModel):
    seq: int
    head_hash: str
    status: str
    tx_hash: str | None
    block_number: int | None


class OutboxFailure(BaseModel):
    id: int
    op: str
    error: str | None


class RegistryStatus(BaseModel):
    """Whether the node records on chain, as which address, and how its outbox stands."""

    enabled: bool
    message: str
    node_address: str | None = None
    registry_address: str | None = None
    outbox: OutboxCounts | None = None
    last_anchor: AnchorOut | None = None
    last_failure: OutboxFailure | None = None


class AnchorQueued(BaseModel):
    seq: int
    head_hash: str
    message: str
