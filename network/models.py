"""The network's database tables as typed SQLAlchemy 2 models.

Full-text search lives beside them, made by the migration for each backend: an FTS5 table
kept in step by triggers on SQLite, a generated `search_vector` column on PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from grid_common.accounts import LoginFailureMixin, RefreshTokenMixin
from grid_common.db import UtcDateTime, utcnow
from registry.outbox import OutboxEntryMixin, SenderLeaseMixin


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UtcDateTime, dict[str, Any]: JSON, list[str]: JSON}


class Operator(Base):
    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[str] = mapped_column(String(32), default="operator")
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RefreshToken(RefreshTokenMixin, Base):
    accounts_table = "operators"


class LoginFailure(LoginFailureMixin, Base):
    pass


class Association(Base):
    """A domain that asked to join, and where it stands: one row per domain, kept on leaving."""

    __tablename__ = "associations"
    __table_args__ = (Index("ix_associations_health", "status", "next_check_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    signing_key: Mapped[str] = mapped_column(String(64))
    encryption_key: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    requested_from: Mapped[str] = mapped_column(String(64), default="")
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(320))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    online: Mapped[bool] = mapped_column(default=False)
    last_seen: Mapped[datetime | None]
    last_checked: Mapped[datetime | None]
    check_error: Mapped[str | None] = mapped_column(Text)
    next_check_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The Ethereum address the domain registered on chain with, as it said when joining.
    eth_address: Mapped[str | None] = mapped_column(String(42))


class JoinAttempt(Base):
    """Join requests as they arrive, for rate limiting by address and by domain."""

    __tablename__ = "join_attempts"
    __table_args__ = (
        Index("ix_join_attempts_address_at", "address", "at"),
        Index("ix_join_attempts_domain_at", "domain_id", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[str] = mapped_column(String(32))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class IndexedDataset(Base):
    """The public description of one dataset, as its domain last pushed it."""

    __tablename__ = "indexed_datasets"
    __table_args__ = (UniqueConstraint("association_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    association_id: Mapped[int] = mapped_column(
        ForeignKey("associations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[str]] = mapped_column(default=list)
    # Tags as words for the full-text index (the JSON list above is what clients get).
    tags_text: Mapped[str] = mapped_column(Text, default="")
    schema: Mapped[dict[str, Any]]
    label: Mapped[str | None] = mapped_column(String(200))
    row_count: Mapped[int]
    has_mock: Mapped[bool]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class IndexedTag(Base):
    """One tag of an indexed dataset, lowercased, for exact tag filters."""

    __tablename__ = "indexed_tags"

    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("indexed_datasets.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(50), primary_key=True, index=True)


class IndexedColumn(Base):
    """One schema column of an indexed dataset, lowercased, for column filters."""

    __tablename__ = "indexed_columns"

    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("indexed_datasets.id", ondelete="CASCADE"), primary_key=True
    )
    column: Mapped[str] = mapped_column(String(200), primary_key=True, index=True)


class SeenNonce(Base):
    """Nonces of signed calls already received, until their signatures expire."""

    __tablename__ = "seen_nonces"

    node_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class FederatedJob(Base):
    """A model trained across domains in rounds, or an analysis computed from one round of sums;
    the network only ever adds what the domains send."""

    __tablename__ = "federated_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    submitter_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="training", server_default="training")
    status: Mapped[str] = mapped_column(String(20), default="pending_approval", index=True)
    spec: Mapped[dict[str, Any]]
    # An analytics job's plan, resolved against the datasets' schemas when it was submitted.
    analysis: Mapped[dict[str, Any] | None]
    spec_hash: Mapped[str] = mapped_column(String(64))
    # The model program and initial weights of a training job; none for an analysis.
    model_digest: Mapped[str | None] = mapped_column(String(64))
    weights_digest: Mapped[str | None] = mapped_column(String(64))
    # Values in every update: the model's flat weights, or the analysis's sums.
    parameters: Mapped[int]
    slots: Mapped[int]
    # Published rows of all participants: updates are weights * rows / row_scale.
    row_scale: Mapped[int] = mapped_column(default=1)
    current_round: Mapped[int] = mapped_column(default=0)
    # A FederatedParticipant's id, without a foreign key: the two tables refer to each other.
    dealer_id: Mapped[int | None]
    keys_requested_at: Mapped[datetime | None]
    public_context_digest: Mapped[str | None] = mapped_column(String(64))
    # The dealer's Ed25519 signature of that digest (for this network and job): participants
    # check it, so a network that swapped the public context is caught.
    public_context_signature: Mapped[str | None] = mapped_column(String(100))
    result_digest: Mapped[str | None] = mapped_column(String(64))
    final_hash: Mapped[str | None] = mapped_column(String(64))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class FederatedParticipant(Base):
    """One domain's dataset in a federated job, its owner's decision and its attestation."""

    __tablename__ = "federated_participants"
    __table_args__ = (UniqueConstraint("job_id", "association_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("federated_jobs.id", ondelete="CASCADE"))
    association_id: Mapped[int] = mapped_column(ForeignKey("associations.id"), index=True)
    dataset: Mapped[str] = mapped_column(String(100))
    position: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default="invited")
    decision_reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime | None]
    sealed_context_digest: Mapped[str | None] = mapped_column(String(64))
    # The smallest group its owner lets an analysis release, as reported with the approval.
    min_group_size: Mapped[int | None]
    # The fewest domains its owner lets an aggregate without DP hold, reported with approval.
    min_peers: Mapped[int | None]
    # The stake this domain's owner requires of every participant on chain (wei, as text).
    stake_wei: Mapped[str] = mapped_column(String(40), default="0", server_default="0")
    samples: Mapped[int | None]
    rounds_reported: Mapped[int] = mapped_column(default=0)
    attested_hash: Mapped[str | None] = mapped_column(String(64))
    attested_at: Mapped[datetime | None]
    # When its owner released the joint result (its signed release or upload); the data
    # scientist gets the result only once every domain that contributed has released it.
    released_at: Mapped[datetime | None]


class FederatedRound(Base):
    """One round: open until all report, or the deadline passes with a quorum."""

    __tablename__ = "federated_rounds"
    __table_args__ = (UniqueConstraint("job_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("federated_jobs.id", ondelete="CASCADE"))
    number: Mapped[int]
    status: Mapped[str] = mapped_column(String(8), default="open", index=True)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    deadline: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    aggregate_digest: Mapped[str | None] = mapped_column(String(64))
    samples: Mapped[int] = mapped_column(default=0)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)


class FederatedUpdate(Base):
    """An update the network added to a round's aggregate: who, how many rows, their metrics."""

    __tablename__ = "federated_updates"
    __table_args__ = (UniqueConstraint("round_id", "participant_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("federated_rounds.id", ondelete="CASCADE"))
    participant_id: Mapped[int] = mapped_column(
        ForeignKey("federated_participants.id", ondelete="CASCADE")
    )
    samples: Mapped[int]
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class RegistryOutboxEntry(OutboxEntryMixin, Base):
    """A registry write, committed with the change it records and sent later in order."""

    __tablename__ = "registry_outbox"


class RegistrySenderLease(SenderLeaseMixin, Base):
    """Which of the network's processes sends the outbox right now."""

    __tablename__ = "registry_sender_lease"
