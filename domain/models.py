"""The domain's database tables as typed SQLAlchemy 2 models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint, true
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from grid_common.accounts import LoginFailureMixin, RefreshTokenMixin
from grid_common.db import UtcDateTime, utcnow
from registry.outbox import OutboxEntryMixin, SenderLeaseMixin


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UtcDateTime, dict[str, Any]: JSON, list[str]: JSON}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RefreshToken(RefreshTokenMixin, Base):
    accounts_table = "users"


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()


class Invite(Base):
    __tablename__ = "invites"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(32))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]


class LoginFailure(LoginFailureMixin, Base):
    pass


class Setting(Base):
    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]]


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[str]] = mapped_column(default=list)
    citation: Mapped[str] = mapped_column(Text, default="")
    license: Mapped[str] = mapped_column(String(200), default="")
    label: Mapped[str | None] = mapped_column(String(200))
    schema: Mapped[dict[str, Any]]
    data_digest: Mapped[str] = mapped_column(String(64))
    data_size: Mapped[int]
    mock_digest: Mapped[str | None] = mapped_column(String(64))
    mock_format: Mapped[str | None] = mapped_column(String(16))
    mock_synthetic: Mapped[bool] = mapped_column(default=False)
    mock_method: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AccessRequest(Base):
    """A data scientist's request: plain access to datasets, or a job to run on them."""

    __tablename__ = "requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    # A local data scientist; none for a federated job a network filed on its submitter's behalf.
    requester_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    requester_label: Mapped[str | None] = mapped_column(String(400))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    decision_reason: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None]
    auto_approved: Mapped[bool] = mapped_column(default=False)
    plan: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    model_digest: Mapped[str | None] = mapped_column(String(64))
    weights_digest: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    datasets: Mapped[list[RequestDataset]] = relationship(
        cascade="all, delete-orphan", order_by="RequestDataset.dataset_name"
    )


class RequestDataset(Base):
    """A dataset a request names; the name stays on record after the dataset is deleted."""

    __tablename__ = "request_datasets"
    __table_args__ = (UniqueConstraint("request_id", "dataset_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id", ondelete="CASCADE"))
    dataset_name: Mapped[str] = mapped_column(String(100))
    dataset_id: Mapped[int | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), index=True
    )


class AuditEntry(Base):
    """One link of the append-only audit chain; `hash` covers every field and `prev_hash`."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(320), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(200), default="")
    address: Mapped[str] = mapped_column(String(64), default="")
    details: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The chain's tip, one row, locked while an entry is appended so the chain never forks."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int]
    hash: Mapped[str] = mapped_column(String(64))


class Worker(Base):
    """A worker process the owner registered; it authenticates with a token shown once."""

    __tablename__ = "workers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    token_prefix: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    last_heartbeat_at: Mapped[datetime | None]
    host: Mapped[str] = mapped_column(String(200), default="")


class Job(Base):
    """An approved job request on its way through the queue; its id is the request's id."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_queue", "status", "lease_expires_at"),)

    id: Mapped[int] = mapped_column(
        ForeignKey("requests.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempt: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=3)
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("workers.id", ondelete="SET NULL"))
    lease_expires_at: Mapped[datetime | None]
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    cpu_seconds: Mapped[int]
    memory_mb: Mapped[int]
    wall_seconds: Mapped[int]
    release_on_completion: Mapped[bool] = mapped_column(default=False)
    # The owner's live-metrics setting when the job was approved: changing it later never
    # exposes a running or finished job's metrics retroactively.
    live_metrics: Mapped[bool] = mapped_column(default=True, server_default=true())
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    failure_reason: Mapped[str | None] = mapped_column(Text)
    result_attempt: Mapped[int | None]
    result_digest: Mapped[str | None] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # DP jobs: the epsilon the accountant actually spent (every round and epoch of the job).
    epsilon_spent: Mapped[float | None]
    result_status: Mapped[str] = mapped_column(String(16), default="none")
    released_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    released_at: Mapped[datetime | None]
    spec_hash: Mapped[str] = mapped_column(String(64))
    registry_job_id: Mapped[str | None] = mapped_column(String(66))


class JobEvent(Base):
    """A progress point or log line a worker reported for one attempt of a job."""

    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job", "job_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    attempt: Mapped[int]
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    data: Mapped[dict[str, Any]]


class PrivacyBudget(Base):
    """The epsilon a dataset may spend in all, or one data scientist may spend on it: a local
    account (user), or a network's data scientist (network id and the email it vouches for)."""

    __tablename__ = "privacy_budgets"
    __table_args__ = (UniqueConstraint("dataset_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    network_id: Mapped[str | None] = mapped_column(String(32))
    scientist: Mapped[str | None] = mapped_column(String(320))
    epsilon: Mapped[float]


class PrivacySpend(Base):
    """Epsilon an approved DP job spends on a dataset, charged to its data scientist (a local
    account, or a network's data scientist as in PrivacyBudget)."""

    __tablename__ = "privacy_spends"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    network_id: Mapped[str | None] = mapped_column(String(32))
    scientist: Mapped[str | None] = mapped_column(String(320))
    epsilon: Mapped[float]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RegistryOutboxEntry(OutboxEntryMixin, Base):
    """A registry write, committed with the change it records and sent later in order."""

    __tablename__ = "registry_outbox"


class RegistrySenderLease(SenderLeaseMixin, Base):
    """Which of the domain's processes sends the outbox right now."""

    __tablename__ = "registry_sender_lease"


class NetworkMembership(Base):
    """A network this domain asked to join: the network's id and public keys, and sync state."""

    __tablename__ = "network_memberships"

    id: Mapped[int] = mapped_column(primary_key=True)
    network_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    url: Mapped[str] = mapped_column(String(2000))
    signing_key: Mapped[str] = mapped_column(String(64))
    encryption_key: Mapped[str] = mapped_column(String(64))
    # The address the network signs its registry writes with, as its node info gave it at
    # join (None: it wrote nothing on chain then): the only coordinator whose chain jobs this
    # domain stakes or attests on for it.
    eth_address: Mapped[str | None] = mapped_column(String(42))
    domain_url: Mapped[str] = mapped_column(String(2000))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    association_id: Mapped[int | None]
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_sync_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    last_push_at: Mapped[datetime | None]
    last_push_digest: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)


class PinnedPeer(Base):
    """A peer domain's keys as a network first introduced it (trust on first use).

    A network names its domains; whenever it introduces one again (an invitation's
    participants), the node id and X25519 key must be the ones pinned here, so a network
    cannot later swap a peer's keys for its own. The Ed25519 key hashes to the node id.
    """

    __tablename__ = "pinned_peers"
    __table_args__ = (UniqueConstraint("network_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    network_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    domain_id: Mapped[str] = mapped_column(String(32), index=True)
    encryption_key: Mapped[str] = mapped_column(String(64))
    pinned_at: Mapped[datetime] = mapped_column(default=utcnow)


class FederatedParticipation(Base):
    """This domain's part in a network's federated job: the signed invitation and what was sent."""

    __tablename__ = "federated_participations"
    __table_args__ = (UniqueConstraint("network_id", "network_job_id"),)

    request_id: Mapped[int] = mapped_column(
        ForeignKey("requests.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    network_id: Mapped[str] = mapped_column(String(32))
    network_job_id: Mapped[int]
    invitation: Mapped[dict[str, Any]]
    # The owner's minimum group size when the invitation was filed: what an analysis's
    # approval agreed to, reported with the decision and applied to the released figures.
    min_group_size: Mapped[int] = mapped_column(default=10, server_default="10")
    # The owner's minimum of domains in an aggregate without DP when the invitation was filed.
    min_peers: Mapped[int] = mapped_column(default=3, server_default="3")
    decision_reported: Mapped[bool] = mapped_column(default=False)
    attested_hash: Mapped[str | None] = mapped_column(String(64))
    attestation_reported: Mapped[bool] = mapped_column(default=False)
    # This domain's release reached the network (and, if it was the last, the result with it).
    result_uploaded: Mapped[bool] = mapped_column(default=False)
