"""The API only workers call: lease a job, fetch its inputs, report progress, deliver the result."""

from __future__ import annotations

from contextlib import ExitStack
from datetime import UTC, datetime

from flask import Blueprint, Response, request, send_file
from sqlalchemy.orm import Session

from domain import federated, jobs, lease_wait
from domain.auth import WORKER, current_worker
from domain.context import blobs, config
from domain.disclosure import disclosure, is_dp
from domain.job_access import job_out
from domain.models import AccessRequest, Dataset, Job, Worker
from grid_common.api import route
from grid_common.db import db_session
from grid_common.errors import Conflict, NotFound, Unprocessable
from grid_common.federated_schemas import Invitation, ParticipantState, RoundOut, WithheldIn
from grid_common.long_poll import ChangeQuery
from grid_common.plan import TrainingPlan
from grid_common.schemas import (
    AttemptFailure,
    AttemptIn,
    FederatedUpdateQuery,
    HeartbeatOut,
    JobEventBatch,
    JobLimits,
    JobOut,
    LeasedDataset,
    LeasedFederated,
    LeasedJob,
    LeaseQuery,
    ResultForm,
    WorkerHello,
)
from grid_common.uploads import check_safetensors

bp = Blueprint("worker_api", __name__, url_prefix="/api/v1/worker")


class FederatedStateQuery(AttemptIn, ChangeQuery):
    """A worker's state request: its attempt, and the long poll's terms it passes on."""


def _touch(hello: WorkerHello | None = None) -> None:
    worker = db_session().get(Worker, current_worker().id)
    if worker is not None:
        worker.last_heartbeat_at = datetime.now(UTC)
        if hello is not None and hello.host:
            worker.host = hello.host


def _actor() -> str:
    return f"worker:{current_worker().name}"


@route(
    bp,
    "/heartbeat",
    methods=["POST"],
    permission=WORKER,
    summary="An idle worker says it is alive",
    body=WorkerHello,
    status=204,
)
def heartbeat(body: WorkerHello) -> None:
    _touch(body)
    db_session().commit()


@route(
    bp,
    "/lease",
    methods=["POST"],
    permission=WORKER,
    summary="Lease the next job: 200 with the job, or 204 when none is runnable within `wait` s",
    body=WorkerHello,
    query=LeaseQuery,
    response=LeasedJob,
)
def lease(body: WorkerHello, query: LeaseQuery) -> LeasedJob | None:
    session = db_session()
    _touch(body)
    worker = current_worker()
    lease_s, wait_s = config().job_lease_seconds, min(query.wait, config().lease_wait_s)
    job = lease_wait.lease_waiting(
        session,
        worker.id,
        worker.name,
        lease_s,
        wait_s,
        lambda: lease_wait.client_gone(request.environ),
    )
    if job is None:
        session.commit()
        return None
    item = session.get(AccessRequest, job.id)
    assert item is not None  # a job's row is its request's id
    datasets = jobs.request_datasets(session, item)
    if datasets is None:
        jobs.fail(session, job, "failed", "a dataset of this job was deleted", _actor())
        session.commit()
        return None
    leased = LeasedJob(
        federated=_leased_federated(session, job.id),
        job_id=job.id,
        attempt=job.attempt,
        lease_seconds=lease_s,
        plan=None if item.kind == "analytics" else TrainingPlan.model_validate(item.plan),
        limits=JobLimits(
            cpu_seconds=job.cpu_seconds, memory_mb=job.memory_mb, wall_seconds=job.wall_seconds
        ),
        datasets=[
            LeasedDataset(
                name=d.name, format=d.schema["format"], label=d.label, digest=d.data_digest
            )
            for d in datasets
        ],
    )
    session.commit()
    return leased


@route(
    bp,
    "/jobs/<int:job_id>/heartbeat",
    methods=["POST"],
    permission=WORKER,
    summary="Keep a lease alive; the answer says whether the job was cancelled",
    body=AttemptIn,
    response=HeartbeatOut,
)
def job_heartbeat(job_id: int, body: AttemptIn) -> HeartbeatOut:
    session = db_session()
    job = jobs.held_lease(session, job_id, current_worker().id, body.attempt)
    lease_s = config().job_lease_seconds
    jobs.extend_lease(job, lease_s)
    _touch()
    session.commit()
    return HeartbeatOut(cancel=job.cancel_requested, lease_seconds=lease_s)


@route(
    bp,
    "/jobs/<int:job_id>/events",
    methods=["POST"],
    permission=WORKER,
    summary="Report progress points and log lines of the leased attempt",
    body=JobEventBatch,
    status=204,
)
def report_events(job_id: int, body: JobEventBatch) -> None:
    session = db_session()
    job = jobs.held_lease(session, job_id, current_worker().id, body.attempt)
    for event in body.events:
        jobs.add_event(session, job, event.kind, event.data)
    session.commit()


def _leased_request(job_id: int) -> AccessRequest:
    """The request of a job this worker is running now; inputs go to no one else."""
    session = db_session()
    job = session.get(Job, job_id)
    if job is None or job.status != "running" or job.worker_id != current_worker().id:
        raise NotFound(f"This worker holds no lease on job {job_id}.")
    item = session.get(AccessRequest, job_id)
    assert item is not None
    return item


def _send_blob(digest: str | None, name: str) -> Response:
    if digest is None:
        raise NotFound(f"This job has no {name}.")
    return send_file(blobs().path(digest), mimetype="application/octet-stream", download_name=name)


@route(
    bp,
    "/jobs/<int:job_id>/model",
    permission=WORKER,
    summary="The job's model archive (.pt2)",
    response_kind="binary",
)
def job_model(job_id: int) -> Response:
    return _send_blob(_leased_request(job_id).model_digest, "model.pt2")


@route(
    bp,
    "/jobs/<int:job_id>/weights",
    permission=WORKER,
    summary="The job's initial weights (safetensors)",
    response_kind="binary",
)
def job_weights(job_id: int) -> Response:
    return _send_blob(_leased_request(job_id).weights_digest, "weights.safetensors")


@route(
    bp,
    "/jobs/<int:job_id>/datasets/<name>",
    permission=WORKER,
    summary="A private dataset file the leased job trains on",
    response_kind="binary",
)
def job_dataset(job_id: int, name: str) -> Response:
    item = _leased_request(job_id)
    dataset_ids = [n.dataset_id for n in item.datasets if n.dataset_name == name]
    dataset = db_session().get(Dataset, dataset_ids[0]) if dataset_ids else None
    if dataset is None:
        raise NotFound(f"Job {job_id} does not train on a dataset named {name!r}.")
    return _send_blob(dataset.data_digest, f"{name}.{dataset.schema['format']}")


@route(
    bp,
    "/jobs/<int:job_id>/attempts/<int:attempt>/result",
    methods=["PUT"],
    permission=WORKER,
    summary="Deliver the attempt's trained weights and final metrics; repeating it is harmless",
    body=ResultForm,
    body_kind="multipart",
    files=("weights",),
    response=JobOut,
)
def deliver_result(job_id: int, attempt: int, body: ResultForm) -> JobOut:
    session = db_session()
    job = session.get(Job, job_id, with_for_update=True)
    if job is not None and job.result_attempt is not None:
        if job.result_attempt != attempt:
            raise Conflict(
                f"Job {job_id} already has its result, from attempt {job.result_attempt}.",
                code="result_exists",
            )
        return job_out(db_session(), job_id)  # the same delivery again: already stored
    job = jobs.held_lease(session, job_id, current_worker().id, attempt)
    file = request.files.get("weights")
    if file is None:
        raise Unprocessable("Missing the 'weights' file part of the result.")
    with ExitStack() as stack:
        staged = stack.enter_context(blobs().staging())
        file.save(staged)
        check_safetensors(staged, "weights")
        digest, _, _ = blobs().commit(staged)
    jobs.complete(session, job, digest, body.metrics, _actor())
    session.commit()
    federated.report_soon(job_id)  # a federated job attests its final model's hash
    return job_out(db_session(), job_id)


@route(
    bp,
    "/jobs/<int:job_id>/attempts/<int:attempt>/failure",
    methods=["POST"],
    permission=WORKER,
    summary="Report that the attempt failed or stopped on cancellation, with the reason",
    body=AttemptFailure,
    response=JobOut,
)
def report_failure(job_id: int, attempt: int, body: AttemptFailure) -> JobOut:
    session = db_session()
    job = jobs.held_lease(session, job_id, current_worker().id, attempt)
    jobs.fail(session, job, body.status, body.reason, _actor())
    session.commit()
    return job_out(db_session(), job_id)


# --- federated jobs: the worker reaches the network through its domain --------------------------


def _leased_federated(session: Session, job_id: int) -> LeasedFederated | None:
    participation = federated.participation_of(session, job_id)
    if participation is None:
        return None
    invitation = Invitation.model_validate(participation.invitation)
    return LeasedFederated(
        network_job_id=invitation.network_job_id,
        kind=invitation.kind,
        rounds=invitation.rounds,
        **invitation.strategy_terms(),
        secure_aggregation=invitation.secure_aggregation,
        round_timeout=invitation.round_timeout,
        min_domains=invitation.min_domains,
        analysis=invitation.plan if invitation.kind == "analytics" else None,
        min_group_size=participation.min_group_size,
    )


def _network_of_lease(job_id: int, attempt: int) -> federated.FederatedNetwork:
    """The network of a federated job this worker holds; the transaction ends before calls out."""
    session = db_session()
    job = session.get(Job, job_id)
    if (
        job is None
        or job.status != "running"
        or job.worker_id != current_worker().id
        or job.attempt != attempt
    ):
        raise Conflict(
            f"This worker no longer holds job {job_id} attempt {attempt}; stop working on it.",
            code="lease_lost",
        )
    network = federated.network_for_job(session, job_id)
    session.commit()
    return network


@route(
    bp,
    "/jobs/<int:job_id>/federated/state",
    permission=WORKER,
    summary="Where the federated job stands at its network (the dealer deals keys on the way); "
    "with `wait` and `seen`, once it differs from the state the worker has (a long poll)",
    query=FederatedStateQuery,
    response=ParticipantState,
)
def federated_state(job_id: int, query: FederatedStateQuery) -> ParticipantState:
    wait = ChangeQuery(wait=query.wait, seen=query.seen)
    return federated.state_for_worker(_network_of_lease(job_id, query.attempt), wait)


@route(
    bp,
    "/jobs/<int:job_id>/federated/context",
    permission=WORKER,
    summary="The job's secret CKKS context, unsealed by this domain for its worker",
    query=AttemptIn,
    response_kind="binary",
)
def federated_context(job_id: int, query: AttemptIn) -> Response:
    context = federated.secret_context(_network_of_lease(job_id, query.attempt))
    return Response(context, mimetype="application/octet-stream")


@route(
    bp,
    "/jobs/<int:job_id>/federated/rounds/<int:number>/aggregate",
    permission=WORKER,
    summary="A closed round's aggregate, still encrypted; X-Grid-Samples says its weight",
    query=AttemptIn,
    response_kind="binary",
)
def federated_aggregate(job_id: int, number: int, query: AttemptIn) -> Response:
    aggregate, samples = federated.fetch_aggregate(_network_of_lease(job_id, query.attempt), number)
    response = Response(aggregate, mimetype="application/octet-stream")
    response.headers["X-Grid-Samples"] = str(samples)
    return response


def _withheld_from_network(job_id: int) -> set[str]:
    """What of a round's update query stays on the domain: always the attempt; the local loss
    and accuracy too under DP or when the owner withholds live metrics, since the network
    shows them to the data scientist as the rounds go."""
    session = db_session()
    job, item = session.get(Job, job_id), session.get(AccessRequest, job_id)
    assert job is not None and item is not None  # the caller checked the lease
    if disclosure(
        reviewer=False, dp=is_dp(item.plan), live_metrics=job.live_metrics, released=False
    ).metrics:
        return {"attempt"}
    return {"attempt", "loss", "accuracy", "val_loss", "val_accuracy"}


@route(
    bp,
    "/jobs/<int:job_id>/federated/rounds/<int:number>/update",
    methods=["PUT"],
    permission=WORKER,
    summary="The worker's encrypted update for a round; the domain signs and forwards it",
    query=FederatedUpdateQuery,
    body_kind="binary",
    response=RoundOut,
)
def federated_update(job_id: int, number: int, query: FederatedUpdateQuery) -> RoundOut:
    network = _network_of_lease(job_id, query.attempt)
    params = query.model_dump(exclude=_withheld_from_network(job_id), exclude_none=True)
    with blobs().staging() as staged:
        with staged.open("wb") as out:
            while chunk := request.stream.read(1 << 20):
                out.write(chunk)
        answer = federated.send_update(network, number, staged, params)
    return RoundOut.model_validate(answer)


@route(
    bp,
    "/jobs/<int:job_id>/federated/withheld",
    methods=["POST"],
    permission=WORKER,
    summary="The final sums may not be released (an analysis's small groups); tell the network",
    query=AttemptIn,
    body=WithheldIn,
    response=ParticipantState,
)
def federated_withheld(job_id: int, query: AttemptIn, body: WithheldIn) -> ParticipantState:
    return federated.report_withheld(_network_of_lease(job_id, query.attempt), body.reason)
