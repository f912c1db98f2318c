"""Jobs as people see them: status and progress, logs, cancel, release, the result download."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, send_file
from sqlalchemy import ColumnElement, select

from domain import federated, jobs, registry_writes
from domain.audit import record
from domain.auth import Principal, current_user
from domain.context import blobs
from domain.disclosure import FULL, Disclosure, disclosure, is_dp, shown_event, shown_metrics
from domain.models import AccessRequest, Job, JobEvent, RequestDataset, User, Worker
from domain.permissions import Permission, has_permission
from grid_common.api import AUTHENTICATED, route
from grid_common.db import db_session
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

bp = Blueprint("jobs", __name__, url_prefix="/api/v1/jobs")

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


def load_jobs(*where: ColumnElement[bool], viewer: Principal | None = None) -> list[JobOut]:
    """Jobs as the API shows them (a job request not yet approved shows as pending_approval).

    Metrics and row counts are filtered for `viewer` (see domain.disclosure); None shows all.
    """
    shown: dict[int, JobOut] = {}
    registry = registry_writes.current_registry()
    registry_address = registry.registry_address if registry else None
    for row in db_session().connection().execute(_JOBS_SHOWN.where(*where)):
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


def _may_review(user: Principal) -> bool:
    return has_permission(user.role, Permission.TRIAGE_REQUESTS)


def _visible(job_id: int) -> JobOut:
    """A job the caller may see: reviewers see every job, a data scientist their own."""
    user = current_user()
    found = load_jobs(_REQUESTS.c.id == job_id, viewer=user)
    if not found or (found[0].requester != user.email and not _may_review(user)):
        raise NotFound(f"No job with id {job_id}.")
    return found[0]


def job_out(job_id: int) -> JobOut:
    return load_jobs(_REQUESTS.c.id == job_id)[0]


@route(
    bp,
    "",
    permission=AUTHENTICATED,
    summary="Jobs: all of them for reviewers, your own otherwise",
    query=JobQuery,
    response=JobList,
)
def list_jobs(query: JobQuery) -> JobList:
    where = []
    user = current_user()
    if not _may_review(user):
        where.append(_REQUESTS.c.requester_id == user.id)
    items = load_jobs(*where, viewer=user)
    if query.status:
        items = [j for j in items if j.status == query.status]
    return JobList(items=items)


@route(bp, "/<int:job_id>", permission=AUTHENTICATED, summary="One job", response=JobOut)
def get_job(job_id: int) -> JobOut:
    return _visible(job_id)


@route(
    bp,
    "/<int:job_id>/events",
    permission=AUTHENTICATED,
    summary="Progress points and log lines, oldest first",
    query=JobEventQuery,
    response=JobEventList,
)
def job_events(job_id: int, query: JobEventQuery) -> JobEventList:
    job = _visible(job_id)
    shown = _disclosure(job, current_user())
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
        batch = list(db_session().scalars(select_events.where(JobEvent.id > after)))
        for event in batch:
            if (data := shown_event(event.kind, event.data, shown)) is not None:
                items.append(_event_out(event, data))
                if len(items) == query.limit:
                    return JobEventList(items=items)
        if len(batch) < query.limit:
            return JobEventList(items=items)
        after = batch[-1].id


def _event_out(event: JobEvent, data: dict[str, Any]) -> JobEventOut:
    return JobEventOut(id=event.id, attempt=event.attempt, kind=event.kind, at=event.at, data=data)  # type: ignore[arg-type]


def _job_row(job_id: int) -> Job:
    job = db_session().get(Job, job_id, with_for_update=True)
    if job is None:
        raise Conflict(f"Job {job_id} has not been approved yet.", code="not_approved")
    return job


@route(
    bp,
    "/<int:job_id>/cancel",
    methods=["POST"],
    permission=AUTHENTICATED,
    summary="Cancel a job (its data scientist or a reviewer); a running one stops mid-epoch",
    response=JobOut,
)
def cancel_job(job_id: int) -> JobOut:
    _visible(job_id)
    session = db_session()
    jobs.cancel(session, _job_row(job_id), current_user().email)
    record(session, "jobs.cancel_requested", f"job:{job_id}")
    session.commit()
    return job_out(job_id)


@route(
    bp,
    "/<int:job_id>/release",
    methods=["POST"],
    permission=Permission.RELEASE_RESULTS,
    summary="Release a held result to the job's data scientist",
    response=JobOut,
)
def release_result(job_id: int) -> JobOut:
    _visible(job_id)
    session = db_session()
    job = _job_row(job_id)
    if job.result_status == "none":
        raise Conflict(f"Job {job_id} has no result to release ({job.status}).", code="no_result")
    if job.result_status == "held":
        job.result_status, job.released_at = "released", datetime.now(UTC)
        job.released_by = current_user().id
        record(session, "results.released", f"job:{job_id}", digest=job.result_digest)
        session.commit()
        federated.report_soon(job_id)  # a federated result goes on to the network
    return job_out(job_id)


@route(
    bp,
    "/<int:job_id>/result",
    permission=AUTHENTICATED,
    summary="Download the trained weights (safetensors) once released; owner and admin any time",
    response_kind="binary",
)
def download_result(job_id: int) -> Response:
    shown = _visible(job_id)
    user = current_user()
    may_release = has_permission(user.role, Permission.RELEASE_RESULTS)
    if shown.requester != user.email and not may_release:
        raise Forbidden("Results go to the job's data scientist, and to the owner and admins.")
    session = db_session()
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
    return send_file(
        blobs().path(job.result_digest),
        mimetype="application/octet-stream",
        as_attachment=True,
        download_name=f"job-{job_id}-weights.safetensors",
    )
