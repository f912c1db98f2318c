"""Federated jobs as their data scientist and the operators reach them: submitting a training
job (with its model and weights) or an analysis, what they see of a job and its rounds, who sees
which job (its submitter, or anyone who manages federated jobs; to anyone else it does not
exist), cancelling, and the files a job keeps.

The jobs' rules (invitations, rounds, aggregation, results) live in `network.federated`.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.datastructures import FileStorage

from grid_common import he
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
from grid_common.strategy import StrategyTerms
from grid_common.uploads import check_model_archive, check_safetensors
from network import federated, nudges
from network.auth import Permission, Principal, has_permission
from network.context import blobs
from network.models import Association, FederatedJob, FederatedRound, Operator
from network.registry_writes import registry_job_id


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
        sampled=federated.sampled_domain_ids(session, item),
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
        registry_job_id=registry_job_id(session, job),
    )


def job_terms(job: FederatedJob, spec: FederatedSpec | AnalyticsSpec) -> dict[str, Any]:
    """What the job runs, as its data scientist and its invitations show it. An analysis's
    plan is the one resolved against the datasets; it has no strategy of its own."""
    if isinstance(spec, FederatedSpec):
        plan, terms = spec.plan.model_dump(mode="json"), spec.strategy_terms()
    else:
        plan = federated.analysis_of(job).model_dump(mode="json")
        terms = StrategyTerms().strategy_terms()
    return {
        "kind": job.kind,
        "plan": plan,
        "rounds": spec.rounds,
        **terms,
        "min_domains": spec.quorum,
        "round_timeout": spec.round_timeout,
        "secure_aggregation": spec.secure_aggregation,
        "reason": spec.reason,
    }


def job_file_digest(job: FederatedJob, part: str) -> str:
    """The blob digest of a training job's `model` or `weights` file; an analysis has neither."""
    digest = job.model_digest if part == "model" else job.weights_digest
    if digest is None:
        raise NotFound(f"Federated job {job.id} is an analysis: it has no {part} file.")
    return digest


def visible_job(session: Session, caller: Principal, job_id: int) -> FederatedJob:
    """A job `caller` may see: their own, or any for who manages federated jobs; to anyone
    else it does not exist."""
    job = session.get(FederatedJob, job_id)
    if job is None or (
        job.submitter_id != caller.id
        and not has_permission(caller.role, Permission.MANAGE_FEDERATED)
    ):
        raise NotFound(f"No federated job with id {job_id}.")
    return job


def submit(
    session: Session, caller: Principal, body: FederatedJobForm, files: Mapping[str, FileStorage]
) -> FederatedJobOut:
    """Create `caller`'s training job from its spec and the `model` (.pt2) and `weights` file
    parts, inviting the domains that hold its datasets; commits."""
    parts = {name: files.get(name) for name in ("model", "weights")}
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
            caller.id,
            body.spec,
            sha256_file(staged["model"]),
            sha256_file(staged["weights"]),
            parameters,
        )
        for path in staged.values():
            blobs().commit(path)
    session.commit()
    nudges.nudge_participants(session, job.id)  # its domains fetch the invitation now
    return job_out(session, job)


def submit_analysis(session: Session, caller: Principal, body: AnalyticsSpec) -> FederatedJobOut:
    """Create `caller`'s analysis over datasets on several domains; commits."""
    job = federated.create_analytics_job(session, caller.id, body)
    session.commit()
    nudges.nudge_participants(session, job.id)
    return job_out(session, job)


def list_jobs(session: Session, caller: Principal) -> FederatedJobList:
    """The jobs `caller` may see, newest first: their own, or every job for who manages them."""
    query = select(FederatedJob).order_by(FederatedJob.id.desc())
    if not has_permission(caller.role, Permission.MANAGE_FEDERATED):
        query = query.where(FederatedJob.submitter_id == caller.id)
    return FederatedJobList(items=[job_out(session, j) for j in session.scalars(query)])


def get_job(session: Session, caller: Principal, job_id: int) -> FederatedJobOut:
    """One job `caller` may see: status, participants, the current round."""
    return job_out(session, visible_job(session, caller, job_id))


def list_rounds(session: Session, caller: Principal, job_id: int) -> RoundList:
    """Every round of a job `caller` may see, with its weighted metrics."""
    job = visible_job(session, caller, job_id)
    rounds = session.scalars(
        select(FederatedRound)
        .where(FederatedRound.job_id == job.id)
        .order_by(FederatedRound.number)
    )
    return RoundList(items=[round_out(session, r) for r in rounds])


def cancel_job(session: Session, caller: Principal, job_id: int) -> FederatedJobOut:
    """Cancel a job `caller` may see; its domains stop at their next step. Commits."""
    job = visible_job(session, caller, job_id)
    federated.cancel(job)
    session.commit()
    return job_out(session, job)


def model_digest(session: Session, caller: Principal, job_id: int) -> str:
    """The blob digest of the model program (.pt2) of a training job `caller` may see."""
    return job_file_digest(visible_job(session, caller, job_id), "model")


def result_file(session: Session, caller: Principal, job_id: int) -> tuple[str, str]:
    """The result's blob digest and download name, for a job `caller` may see, once every
    participating domain attested the same hash and every owner whose data is in it released
    it."""
    job = visible_job(session, caller, job_id)
    availability = federated.result_availability(job)
    if availability != "available" or job.result_digest is None:
        raise Forbidden(
            f"The result of job {job.id} is not available ({availability.replace('_', ' ')}).",
            code="result_unavailable",
        )
    name = "analysis.safetensors" if job.kind == "analytics" else "weights.safetensors"
    return job.result_digest, name
