"""Federated jobs, the data scientist's side: submit a job or an analysis, follow it, get results.

Training jobs arrive as multipart (spec, model, weights); analyses as a JSON spec alone. The
domains' signed side of the same jobs is `network.api.federated_domains`.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, request, send_file
from sqlalchemy import select
from sqlalchemy.orm import Session

from grid_common import he
from grid_common.api import route
from grid_common.db import db_session
from grid_common.errors import Forbidden, NotFound, Unprocessable
from grid_common.federated_schemas import (
    AnalyticsSpec,
    FederatedJobForm,
    FederatedJobList,
    FederatedJobOut,
    FederatedSpec,
    ParticipantOut,
    RoundList,
    RoundOut,
)
from grid_common.hashes import sha256_file
from grid_common.uploads import check_model_archive, check_safetensors
from network import federated
from network.auth import Permission, current_operator, has_permission
from network.context import blobs
from network.models import Association, FederatedJob, FederatedRound, Operator

bp = Blueprint("federated", __name__, url_prefix="/api/v1/fl")

# --- what the API shows ----------------------------------------------------------------------


def round_out(session: Session, item: FederatedRound) -> RoundOut:
    """A round as both sides see it: its status, reporters, metrics and, once closed, its hash."""
    metrics = item.metrics if item.status == "closed" else federated.round_metrics(session, item)
    return RoundOut(
        number=item.number,
        status=item.status,  # type: ignore[arg-type]
        opened_at=item.opened_at,
        deadline=item.deadline,
        closed_at=item.closed_at,
        reporters=list(metrics.get("domains", {})),
        samples=item.samples,
        metrics=metrics,
        aggregate_hash=item.aggregate_digest if item.status == "closed" else None,
    )


def job_out(session: Session, job: FederatedJob) -> FederatedJobOut:
    """A job as its data scientist and the operators see it."""
    spec = federated.spec_of(job)
    submitter = session.get(Operator, job.submitter_id)
    participants = []
    rows = federated.participants_of(session, job)
    for p in rows:
        association = session.get(Association, p.association_id)
        assert association is not None
        participants.append(
            ParticipantOut(
                domain_id=association.domain_id,
                domain=association.name,
                dataset=p.dataset,
                status=p.status,  # type: ignore[arg-type]
                decision_reason=p.decision_reason,
                decided_at=p.decided_at,
                samples=p.samples,
                rounds_reported=p.rounds_reported,
                attested=p.attested_hash is not None,
                released=p.released_at is not None,
            )
        )
    last = session.scalar(
        select(FederatedRound)
        .where(FederatedRound.job_id == job.id)
        .order_by(FederatedRound.number.desc())
        .limit(1)
    )
    return FederatedJobOut(
        id=job.id,
        **job_terms(job, spec),
        status=job.status,  # type: ignore[arg-type]
        submitter=submitter.email if submitter else "",
        current_round=job.current_round,
        min_group_size=federated.min_group_size(rows),
        participants=participants,
        parameters=job.parameters,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        failure_reason=job.failure_reason,
        spec_hash=job.spec_hash,
        result=federated.result_availability(job),  # type: ignore[arg-type]
        result_hash=job.final_hash,
        last_round=round_out(session, last) if last is not None else None,
    )


def job_terms(job: FederatedJob, spec: FederatedSpec | AnalyticsSpec) -> dict[str, Any]:
    """What the job runs, as its data scientist and its invitations show it. An analysis's
    plan is the one resolved against the datasets; it has no strategy of its own."""
    if isinstance(spec, FederatedSpec):
        plan, strategy, mu = spec.plan.model_dump(mode="json"), spec.strategy, spec.mu
    else:
        plan, strategy, mu = federated.analysis_of(job).model_dump(mode="json"), "fedavg", 0.0
    return {
        "kind": job.kind,
        "plan": plan,
        "rounds": spec.rounds,
        "strategy": strategy,
        "mu": mu,
        "min_domains": spec.quorum,
        "round_timeout": spec.round_timeout,
        "secure_aggregation": spec.secure_aggregation,
        "reason": spec.reason,
    }


# --- the data scientist's side ----------------------------------------------------------------


def _visible_job(job_id: int) -> FederatedJob:
    """A job its submitter or an operator may see; to anyone else it does not exist."""
    job = db_session().get(FederatedJob, job_id)
    caller = current_operator()
    if job is None or (
        job.submitter_id != caller.id
        and not has_permission(caller.role, Permission.MANAGE_FEDERATED)
    ):
        raise NotFound(f"No federated job with id {job_id}.")
    return job


@route(
    bp,
    "/jobs",
    methods=["POST"],
    permission=Permission.SUBMIT_FEDERATED,
    summary="Submit a federated job: the spec, the model (.pt2) and its initial weights",
    body=FederatedJobForm,
    body_kind="multipart",
    files=("model", "weights"),
    response=FederatedJobOut,
    status=201,
)
def submit(body: FederatedJobForm) -> FederatedJobOut:
    session = db_session()
    parts = {name: request.files.get(name) for name in ("model", "weights")}
    missing = [name for name, file in parts.items() if file is None]
    if missing:
        raise Unprocessable(f"Missing the {' and '.join(map(repr, missing))} file part(s).")
    with ExitStack() as stack:
        staged: dict[str, Path] = {}
        for name, file in parts.items():
            assert file is not None
            staged[name] = stack.enter_context(blobs().staging())
            file.save(staged[name])
        check_model_archive(staged["model"], dp=body.spec.plan.dp is not None)
        check_safetensors(staged["weights"], "weights")
        try:
            parameters = len(he.flatten(he.read_weights(staged["weights"])))
        except (TypeError, ValueError) as exc:  # dtypes numpy lacks, such as bfloat16
            raise Unprocessable(
                f"The 'weights' part cannot be read as numbers: {exc}", code="invalid_weights"
            ) from None
        if parameters == 0:
            raise Unprocessable("The 'weights' file holds no values.", code="invalid_weights")
        # The spec's domains and datasets are checked before the files are kept, so a refused
        # job leaves no blob behind.
        job = federated.create_job(
            session,
            current_operator().id,
            body.spec,
            sha256_file(staged["model"]),
            sha256_file(staged["weights"]),
            parameters,
        )
        for path in staged.values():
            blobs().commit(path)
    session.commit()
    return job_out(session, job)


@route(
    bp,
    "/analytics",
    methods=["POST"],
    permission=Permission.SUBMIT_FEDERATED,
    summary="Submit an analysis: statistics or an exact model over datasets on several domains",
    body=AnalyticsSpec,
    response=FederatedJobOut,
    status=201,
)
def submit_analysis(body: AnalyticsSpec) -> FederatedJobOut:
    session = db_session()
    job = federated.create_analytics_job(session, current_operator().id, body)
    session.commit()
    return job_out(session, job)


@route(
    bp,
    "/jobs",
    permission=Permission.SUBMIT_FEDERATED,
    summary="Federated jobs: your own, or every job for operators",
    response=FederatedJobList,
)
def list_jobs() -> FederatedJobList:
    session = db_session()
    caller = current_operator()
    query = select(FederatedJob).order_by(FederatedJob.id.desc())
    if not has_permission(caller.role, Permission.MANAGE_FEDERATED):
        query = query.where(FederatedJob.submitter_id == caller.id)
    return FederatedJobList(items=[job_out(session, j) for j in session.scalars(query)])


@route(
    bp,
    "/jobs/<int:job_id>",
    permission=Permission.SUBMIT_FEDERATED,
    summary="One federated job: status, participants, the current round",
    response=FederatedJobOut,
)
def get_job(job_id: int) -> FederatedJobOut:
    return job_out(db_session(), _visible_job(job_id))


@route(
    bp,
    "/jobs/<int:job_id>/rounds",
    permission=Permission.SUBMIT_FEDERATED,
    summary="Every round of a federated job with its weighted metrics",
    response=RoundList,
)
def list_rounds(job_id: int) -> RoundList:
    session = db_session()
    job = _visible_job(job_id)
    rounds = session.scalars(
        select(FederatedRound)
        .where(FederatedRound.job_id == job.id)
        .order_by(FederatedRound.number)
    )
    return RoundList(items=[round_out(session, r) for r in rounds])


@route(
    bp,
    "/jobs/<int:job_id>/cancel",
    methods=["POST"],
    permission=Permission.SUBMIT_FEDERATED,
    summary="Cancel a federated job; its domains stop at their next step",
    response=FederatedJobOut,
)
def cancel_job(job_id: int) -> FederatedJobOut:
    session = db_session()
    job = _visible_job(job_id)
    federated.cancel(job)
    session.commit()
    return job_out(session, job)


@route(
    bp,
    "/jobs/<int:job_id>/model",
    permission=Permission.SUBMIT_FEDERATED,
    summary="The job's model program (.pt2) as submitted",
    response_kind="binary",
)
def job_model(job_id: int) -> Response:
    job = _visible_job(job_id)
    return send_blob(job_file_digest(job, "model"), "model.pt2")


@route(
    bp,
    "/jobs/<int:job_id>/result",
    permission=Permission.SUBMIT_FEDERATED,
    summary="The result, once every participating domain attested the same hash and every "
    "owner whose data is in it released it",
    response_kind="binary",
)
def job_result(job_id: int) -> Response:
    job = _visible_job(job_id)
    availability = federated.result_availability(job)
    if availability != "available" or job.result_digest is None:
        raise Forbidden(
            f"The result of job {job.id} is not available ({availability.replace('_', ' ')}).",
            code="result_unavailable",
        )
    name = "analysis.safetensors" if job.kind == "analytics" else "weights.safetensors"
    return send_blob(job.result_digest, name)


def job_file_digest(job: FederatedJob, part: str) -> str:
    """The blob digest of a training job's `model` or `weights` file; an analysis has neither."""
    digest = job.model_digest if part == "model" else job.weights_digest
    if digest is None:
        raise NotFound(f"Federated job {job.id} is an analysis: it has no {part} file.")
    return digest


def send_blob(digest: str, name: str) -> Response:
    """A stored blob as a binary download named `name`."""
    return send_file(blobs().path(digest), mimetype="application/octet-stream", download_name=name)
