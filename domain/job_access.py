"""Jobs as people reach them: who sees which job and how much of it (metrics, events), asking
a job to stop, releasing a result, handing the result out.

A reviewer (a role that triages requests) sees every job; anyone else only their own, and
another account's job is not found. The API and the console both come through here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from domain import federated, jobs, registry_writes
from domain.audit import record
from domain.auth import Principal
from domain.context import blobs
from domain.disclosure import FULL, Disclosure, disclosure, is_dp, shown_event, shown_metrics
from domain.models import AccessRequest, Job, JobEvent, RequestDataset, User, Worker
from domain.permissions import Permission, has_permission
from grid_common.errors import Conflict, Forbidden, NotFound
from grid_common.schemas import (
    JOB_KINDS,
    JobEventList,
    JobEventOut,
    JobEventQuery,
    JobLimits,
    JobList,
    JobOut,
    JobQuery,
    JobStatus,
)

_REQUESTS = AccessRequest.__table__
_JOBS = Job.__table__
_NAMES = RequestDataset.__table__
_REQUESTER = User.__table__.alias("requester")
_WORKERS = Worker.__table__
# A job request with its job (none until approved), requester, worker and dataset names.
_JOBS_SHOWN = (
    select(
        _REQUESTS.c.id,
        _REQUESTS.c.status.label("request_status"),
        _REQUESTS.c.plan,
        _REQUESTS.c.reason,
        _REQUESTS.c.created_at,
        _REQUESTS.c.kind,
        _REQUESTS.c.requester_label,
        _REQUESTER.c.email.label("requester_email"),
        _JOBS,
        _WORKERS.c.name.label("worker_name"),
        _NAMES.c.dataset_name,
    )
    .outerjoin_from(_REQUESTS, _REQUESTER, _REQUESTER.c.id == _REQUESTS.c.requester_id)
    .outerjoin(_JOBS, _JOBS.c.id == _REQUESTS.c.id)
    .outerjoin(_WORKERS, _WORKERS.c.id == _JOBS.c.worker_id)
    .outerjoin(_NAMES, _NAMES.c.request_id == _REQUESTS.c.id)
    .where(_REQUESTS.c.kind.in_(JOB_KINDS))
    .order_by(_REQUESTS.c.id, _NAMES.c.dataset_name)
)


def _status(row: Any) -> JobStatus:
    if row.request_status == "pending":
        return "pending_approval"
    if row.request_status == "denied":
        return "denied"
    status: JobStatus = row.status
    return status


def _may_review(user: Principal) -> bool:
    return has_permission(user.role, Permission.TRIAGE_REQUESTS)


def _disclosure(job: Any, viewer: Principal | None) -> Disclosure:
    """What `viewer` (None: a worker or the domain itself) may read of `job` (a row or JobOut)."""
    if viewer is None:
        return FULL
    return disclosure(
        reviewer=_may_review(viewer),
        dp=is_dp(job.plan),
        live_metrics=job.live_metrics is not False,
        released=job.result_status == "released",
    )


def load_jobs(
    session: Session, *where: ColumnElement[bool], viewer: Principal | None = None
) -> list[JobOut]:
    """Jobs as the API shows them (a job request not yet approved shows as pending_approval).

    Metrics and row counts are filtered for `viewer` (see domain.disclosure); None shows all.
    """
    shown: dict[int, JobOut] = {}
    registry = registry_writes.current_registry()
    registry_address = registry.registry_address if registry else None
    for row in session.connection().execute(_JOBS_SHOWN.where(*where)):
        if row.id not in shown:
            has_job = row.status is not None
            disclosed = _disclosure(row, viewer)
            shown[row.id] = JobOut(
                id=row.id,
                kind=row.kind,
                status=_status(row),
                requester=row.requester_email or row.requester_label,
                datasets=[],
                plan=row.plan,
                reason=row.reason,
                attempt=row.attempt or 0,
                max_attempts=row.max_attempts or 0,
                worker=row.worker_name,
                limits=JobLimits(
                    cpu_seconds=row.cpu_seconds,
                    memory_mb=row.memory_mb,
                    wall_seconds=row.wall_seconds,
                )
                if has_job
                else None,
                release_on_completion=bool(row.release_on_completion),
                cancel_requested=bool(row.cancel_requested),
                failure_reason=row.failure_reason,
                metrics=shown_metrics(row.metrics, disclosed),
                metrics_withheld=not disclosed.metrics,
                live_metrics=row.live_metrics,
                epsilon_spent=row.epsilon_spent,
                result_status=row.result_status or "none",
                created_at=row.created_at,
                started_at=row.started_at,
                finished_at=row.finished_at,
                released_at=row.released_at,
                spec_hash=row.spec_hash,
                result_hash=row.result_digest if row.result_status == "released" else None,
                registry_job_id=row.registry_job_id,
                registry_address=registry_address if row.registry_job_id else None,
            )
        if row.dataset_name is not None:
            shown[row.id].datasets.append(row.dataset_name)
    return list(shown.values())


def job_out(session: Session, job_id: int) -> JobOut:
    """A job in full, as a worker or the domain itself sees it (no one's view filters it)."""
    return load_jobs(session, _REQUESTS.c.id == job_id)[0]


def visible_job(session: Session, viewer: Principal, job_id: int) -> JobOut:
    """A job `viewer` may see, as they may see it: reviewers any job, a data scientist their
    own; any other is not found."""
    found = load_jobs(session, _REQUESTS.c.id == job_id, viewer=viewer)
    if not found or (found[0].requester != viewer.email and not _may_review(viewer)):
        raise NotFound(f"No job with id {job_id}.")
    return found[0]


def list_jobs(session: Session, viewer: Principal, query: JobQuery) -> JobList:
    """Jobs `viewer` may see (all for a reviewer, else their own), filtered by status."""
    where = []
    if not _may_review(viewer):
        where.append(_REQUESTS.c.requester_id == viewer.id)
    items = load_jobs(session, *where, viewer=viewer)
    if query.status:
        items = [j for j in items if j.status == query.status]
    return JobList(items=items)


def _event_out(event: JobEvent, data: dict[str, Any]) -> JobEventOut:
    return JobEventOut(id=event.id, attempt=event.attempt, kind=event.kind, at=event.at, data=data)  # type: ignore[arg-type]


def job_events(
    session: Session, viewer: Principal, job_id: int, query: JobEventQuery
) -> JobEventList:
    """A visible job's progress points and log lines, oldest first, as `viewer` may read them."""
    job = visible_job(session, viewer, job_id)
    shown = _disclosure(job, viewer)
    select_events = (
        select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id).limit(query.limit)
    )
    if query.kind:
        select_events = select_events.where(JobEvent.kind == query.kind)
    items: list[JobEventOut] = []
    after = query.after
    # Withheld events leave gaps: read on until the page is full, so that a short page still
    # means no more events follow.
    while True:
        batch = list(session.scalars(select_events.where(JobEvent.id > after)))
        for event in batch:
            if (data := shown_event(event.kind, event.data, shown)) is not None:
                items.append(_event_out(event, data))
                if len(items) == query.limit:
                    return JobEventList(items=items)
        if len(batch) < query.limit:
            return JobEventList(items=items)
        after = batch[-1].id


def _job_row(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id, with_for_update=True)
    if job is None:
        raise Conflict(f"Job {job_id} has not been approved yet.", code="not_approved")
    return job


def cancel_job(session: Session, viewer: Principal, job_id: int) -> JobOut:
    """Ask a job `viewer` may see to stop (a running one stops mid-epoch); commits."""
    visible_job(session, viewer, job_id)
    jobs.cancel(session, _job_row(session, job_id), viewer.email)
    record(session, "jobs.cancel_requested", f"job:{job_id}")
    session.commit()
    return job_out(session, job_id)


def release_result(session: Session, viewer: Principal, job_id: int) -> JobOut:
    """Release a held result to the job's data scientist, by `viewer` (who may release
    results); a federated result goes on to the network. Commits."""
    visible_job(session, viewer, job_id)
    job = _job_row(session, job_id)
    if job.result_status == "none":
        raise Conflict(f"Job {job_id} has no result to release ({job.status}).", code="no_result")
    if job.result_status == "held":
        job.result_status, job.released_at = "released", datetime.now(UTC)
        job.released_by = viewer.id
        record(session, "results.released", f"job:{job_id}", digest=job.result_digest)
        session.commit()
        federated.report_soon(job_id)
    return job_out(session, job_id)


def result_file(session: Session, viewer: Principal, job_id: int) -> Path:
    """The trained weights of a job for `viewer`: its data scientist once released, the owner
    and admins any time; the download is audited, and commits."""
    shown = visible_job(session, viewer, job_id)
    may_release = has_permission(viewer.role, Permission.RELEASE_RESULTS)
    if shown.requester != viewer.email and not may_release:
        raise Forbidden("Results go to the job's data scientist, and to the owner and admins.")
    job = session.get(Job, job_id)
    if job is None or job.result_digest is None:
        raise Conflict(f"Job {job_id} has no result ({shown.status}).", code="no_result")
    if job.result_status != "released" and not may_release:
        raise Forbidden(
            f"The result of job {job_id} is held until the domain's owner releases it.",
            code="result_held",
        )
    record(session, "results.downloaded", f"job:{job_id}", held=job.result_status == "held")
    session.commit()
    return blobs().path(job.result_digest)
