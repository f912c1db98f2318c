"""The job queue: approved job requests become jobs that workers lease, keep alive and finish."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from domain import audit, registry_writes
from domain.models import AccessRequest, Dataset, FederatedParticipation, Job, JobEvent
from domain.settings import load_settings
from grid_common.errors import Conflict
from grid_common.hashes import spec_hash
from grid_common.schemas import JobLimits

FINISHED = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True)
class Approval:
    """What the approver allowed: the attempt limits and whether the result is released at once."""

    limits: JobLimits
    release_on_completion: bool = False


def request_datasets(session: Session, request: AccessRequest) -> list[Dataset] | None:
    """The datasets a request names, or None once any of them has been deleted."""
    found = [session.get(Dataset, n.dataset_id) for n in request.datasets if n.dataset_id]
    datasets = [d for d in found if d is not None]
    return datasets if len(datasets) == len(request.datasets) else None


def create_job(session: Session, request: AccessRequest, approval: Approval) -> Job:
    """Queue an approved job request (the job shares its id) and record it on the registry.

    The owner's live-metrics setting is recorded with the job now, at approval.
    """
    assert request.plan is not None
    datasets = [d.dataset_name for d in request.datasets]
    if request.kind == "analytics":
        spec = spec_hash(kind="analytics", plan=request.plan, datasets=datasets)
    else:
        assert request.model_digest and request.weights_digest
        spec = spec_hash(
            model_digest=request.model_digest,
            weights_digest=request.weights_digest,
            plan=request.plan,
            datasets=datasets,
        )
    job = Job(
        id=request.id,
        status="queued",
        cpu_seconds=approval.limits.cpu_seconds,
        memory_mb=approval.limits.memory_mb,
        wall_seconds=approval.limits.wall_seconds,
        release_on_completion=approval.release_on_completion,
        live_metrics=load_settings(session).live_metrics,
        queued_at=datetime.now(UTC),
        spec_hash=spec,
    )
    session.add(job)
    session.flush()
    if session.get(FederatedParticipation, request.id) is None:
        # A part of a network's federated job is not a job of its own on chain: the domain
        # attests its result on the network's job (domain.federated).
        job.registry_job_id = registry_writes.enqueue_job_created(session, _registry_key(job), spec)
    return job


def _registry_key(job: Job) -> str:
    return registry_writes.job_key_for(job.id, job.spec_hash)


def add_event(session: Session, job: Job, kind: str, data: dict[str, Any]) -> None:
    session.add(JobEvent(job_id=job.id, attempt=job.attempt, kind=kind, data=data))
    if kind == "progress":
        record_spend(job, data.get("epsilon"))


def record_spend(job: Job, epsilon: object) -> None:
    """Keep the most epsilon the job's DP accountant reported: after each epoch, each round of
    a federated job, and at the end; a job that fails half-way has spent what it reported."""
    if isinstance(epsilon, int | float) and not isinstance(epsilon, bool):
        job.epsilon_spent = max(job.epsilon_spent or 0.0, float(epsilon))


def _finish(session: Session, job: Job, status: str, reason: str | None, actor: str) -> None:
    job.status, job.failure_reason = status, reason
    job.finished_at, job.lease_expires_at = datetime.now(UTC), None
    if status != "completed" and job.registry_job_id is not None:
        registry_writes.enqueue_job_cancelled(session, _registry_key(job))
    add_event(session, job, "log", {"level": "info", "message": f"job {status}: {reason or ''}"})
    details = {"attempt": job.attempt, "reason": reason}
    audit.append(
        session, actor=actor, action=f"jobs.{status}", target=f"job:{job.id}", details=details
    )


def lease_next_job(session: Session, worker_id: int, worker_name: str, lease_s: int) -> Job | None:
    """Give the oldest runnable job to a worker: a queued one, or one whose lease ran out.

    PostgreSQL skips rows another worker holds (`FOR UPDATE SKIP LOCKED`); SQLite's
    immediate transactions already let one leaser at a time in. The caller commits.
    """
    now = datetime.now(UTC)
    runnable = (
        select(Job)
        .where(
            or_(
                Job.status == "queued",
                and_(Job.status == "running", Job.lease_expires_at < now),
            )
        )
        .order_by(Job.queued_at, Job.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    while (job := session.scalar(runnable)) is not None:
        if job.cancel_requested:
            _finish(session, job, "cancelled", "cancelled before it could finish", "system")
            continue
        if job.status == "running" and job.attempt >= job.max_attempts:
            reason = f"its worker stopped answering in each of {job.attempt} attempts"
            _finish(session, job, "failed", reason, "system")
            continue
        if job.status == "running":
            add_event(session, job, "log", {"level": "warning", "message": "lease ran out"})
        job.status, job.attempt, job.worker_id = "running", job.attempt + 1, worker_id
        job.lease_expires_at = now + timedelta(seconds=lease_s)
        job.started_at = job.started_at or now
        add_event(
            session,
            job,
            "log",
            {"level": "info", "message": f"attempt {job.attempt} started on {worker_name}"},
        )
        return job
    return None


def held_lease(session: Session, job_id: int, worker_id: int, attempt: int) -> Job:
    """The job, if this worker still holds the lease of this attempt; else a 409 to stop it."""
    job = session.get(Job, job_id, with_for_update=True)
    if (
        job is None
        or job.status != "running"
        or job.worker_id != worker_id
        or job.attempt != attempt
    ):
        raise Conflict(
            f"This worker no longer holds job {job_id} attempt {attempt}; stop working on it.",
            code="lease_lost",
        )
    return job


def extend_lease(job: Job, lease_s: int) -> None:
    job.lease_expires_at = datetime.now(UTC) + timedelta(seconds=lease_s)


def complete(session: Session, job: Job, digest: str, metrics: dict[str, Any], actor: str) -> None:
    job.result_attempt, job.result_digest, job.metrics = job.attempt, digest, metrics
    record_spend(job, metrics.get("epsilon"))
    job.result_status = "released" if job.release_on_completion else "held"
    if job.release_on_completion:
        job.released_at = datetime.now(UTC)
    _finish(session, job, "completed", None, actor)
    if job.registry_job_id is not None:
        # The attested model hash is the sha256 of the weights file: the blob's own digest.
        samples = int(metrics.get("samples", 0))
        registry_writes.enqueue_data_centric_result(session, _registry_key(job), digest, samples)


def fail(session: Session, job: Job, status: str, reason: str, actor: str) -> None:
    _finish(session, job, status, reason, actor)


def cancel(session: Session, job: Job, actor: str) -> None:
    """Cancel at once if no worker holds it; else ask its worker to stop at the next heartbeat."""
    if job.status in FINISHED:
        raise Conflict(f"Job {job.id} is already {job.status}.", code="job_finished")
    job.cancel_requested = True
    if job.status == "queued":
        _finish(session, job, "cancelled", f"cancelled by {actor}", actor)
    else:
        add_event(session, job, "log", {"level": "info", "message": f"cancel asked by {actor}"})
