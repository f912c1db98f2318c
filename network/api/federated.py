"""Federated jobs: data scientists submit and follow them; domains (signed) take part in them.

Training jobs arrive as multipart (spec, model, weights); analyses as a JSON spec alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, request, send_file
from sqlalchemy import select
from sqlalchemy.orm import Session

from grid_common import he
from grid_common.api import SIGNED, route
from grid_common.db import db_session
from grid_common.errors import Forbidden, NotFound, Unprocessable
from grid_common.federated_schemas import (
    AnalyticsSpec,
    AttestationIn,
    DecisionReport,
    FederatedJobForm,
    FederatedJobList,
    FederatedJobOut,
    FederatedSpec,
    Invitation,
    InvitationList,
    KeysRefusedIn,
    ParticipantOut,
    ParticipantState,
    PeerKey,
    PublicContextQuery,
    RoundList,
    RoundOut,
    UpdateQuery,
    WithheldIn,
    invitation_message,
)
from grid_common.identity import b64encode
from grid_common.signing import check_streamed_body
from grid_common.uploads import check_model_archive, check_safetensors
from network import federated
from network.auth import Permission, current_node, current_operator, has_permission
from network.context import blobs, node_identity
from network.models import (
    Association,
    FederatedJob,
    FederatedParticipant,
    FederatedRound,
    Operator,
)

bp = Blueprint("federated", __name__, url_prefix="/api/v1/fl")
_CHUNK = 1 << 20


# --- what the API shows ----------------------------------------------------------------------


def round_out(session: Session, item: FederatedRound) -> RoundOut:
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
        **_terms(job, spec),
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


def _terms(job: FederatedJob, spec: FederatedSpec | AnalyticsSpec) -> dict[str, Any]:
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
            _digest(staged["model"]),
            _digest(staged["weights"]),
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
    return _send(_model_file(job, "model"), "model.pt2")


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
    return _send(job.result_digest, name)


def _model_file(job: FederatedJob, part: str) -> str:
    digest = job.model_digest if part == "model" else job.weights_digest
    if digest is None:
        raise NotFound(f"Federated job {job.id} is an analysis: it has no {part} file.")
    return digest


def _send(digest: str, name: str) -> Response:
    return send_file(blobs().path(digest), mimetype="application/octet-stream", download_name=name)


# --- the domains' side (signed calls) ---------------------------------------------------------


def _caller_association(session: Session) -> Association:
    association = session.scalar(
        select(Association).where(
            Association.domain_id == current_node().node_id, Association.status == "approved"
        )
    )
    if association is None:
        raise Forbidden("Only domains associated with this network take part in federated jobs.")
    return association


def _participation(job_id: int, *, lock: bool = False) -> tuple[FederatedJob, FederatedParticipant]:
    """The job and the calling domain's place in it; any other domain is refused."""
    session = db_session()
    association = _caller_association(session)
    job = session.get(FederatedJob, job_id, with_for_update=lock)
    if job is None:
        raise NotFound(f"No federated job with id {job_id}.")
    participant = session.scalar(
        select(FederatedParticipant).where(
            FederatedParticipant.job_id == job.id,
            FederatedParticipant.association_id == association.id,
        )
    )
    if participant is None:
        raise Forbidden(f"This domain takes no part in federated job {job_id}.")
    return job, participant


@contextmanager
def _signed_body() -> Iterator[Path]:
    """The request's binary body, staged to a file and checked against its signed digest.

    Views read it before they touch the database: on SQLite every transaction holds the
    write lock, which a slow upload must not keep from every other request.
    """
    with blobs().staging() as staged:
        hasher = hashlib.sha256()
        with staged.open("wb") as out:
            while chunk := request.stream.read(_CHUNK):
                out.write(chunk)
                hasher.update(chunk)
        check_streamed_body(current_node(), hasher.hexdigest())
        yield staged


def _invitation(
    session: Session, job: FederatedJob, participant: FederatedParticipant
) -> Invitation:
    spec = federated.spec_of(job)
    submitter = session.get(Operator, job.submitter_id)
    names, keys = [], []
    for p in federated.participants_of(session, job):
        association = session.get(Association, p.association_id)
        names.append(association.name if association else "?")
        if association is not None:
            keys.append(
                PeerKey(
                    domain_id=association.domain_id,
                    name=association.name,
                    signing_key=association.signing_key,
                    encryption_key=association.encryption_key,
                ).model_dump(mode="json")
            )
    fields = {
        "network_job_id": job.id,
        "network_id": node_identity().node_id,
        **_terms(job, spec),
        "dataset": participant.dataset,
        "requester": submitter.email if submitter else "",
        "ckks": spec.ckks.model_dump(mode="json"),
        "participants": names,
        "participant_keys": keys,
        "model_digest": job.model_digest,
        "weights_digest": job.weights_digest,
        "spec_hash": job.spec_hash,
    }
    signature = node_identity().signing_key.sign(invitation_message(fields)).signature
    return Invitation.model_validate({**fields, "signature": b64encode(signature)})


@route(
    bp,
    "/invitations",
    permission=SIGNED,
    summary="Federated jobs this domain is invited to and has not decided on (signed by us)",
    response=InvitationList,
)
def invitations() -> InvitationList:
    session = db_session()
    association = _caller_association(session)
    rows = session.execute(
        select(FederatedJob, FederatedParticipant)
        .join(FederatedParticipant, FederatedParticipant.job_id == FederatedJob.id)
        .where(
            FederatedParticipant.association_id == association.id,
            FederatedParticipant.status == "invited",
            FederatedJob.status.in_(("pending_approval", "key_setup", "running")),
        )
        .order_by(FederatedJob.id)
    ).all()
    return InvitationList(items=[_invitation(session, job, p) for job, p in rows])


@route(
    bp,
    "/jobs/<int:job_id>/files/<any(model, weights):part>",
    permission=SIGNED,
    summary="The job's model program or initial weights, for a participating domain",
    response_kind="binary",
)
def participant_file(job_id: int, part: str) -> Response:
    job, _ = _participation(job_id)
    name = "model.pt2" if part == "model" else "weights.safetensors"
    return _send(_model_file(job, part), name)


@route(
    bp,
    "/jobs/<int:job_id>/decision",
    methods=["POST"],
    permission=SIGNED,
    summary="The domain owner's decision on taking part",
    body=DecisionReport,
    response=ParticipantState,
)
def decision(job_id: int, body: DecisionReport) -> ParticipantState:
    session = db_session()
    job, participant = _participation(job_id, lock=True)
    federated.record_decision(
        session,
        job,
        participant,
        body.approved,
        body.reason,
        body.min_group_size,
        body.min_peers,
    )
    session.commit()
    return federated.participant_state(session, job, participant)


@route(
    bp,
    "/jobs/<int:job_id>/state",
    permission=SIGNED,
    summary="Where the job stands for this domain: round, deadline, keys, what to do next",
    response=ParticipantState,
)
def state(job_id: int) -> ParticipantState:
    job, participant = _participation(job_id)
    return federated.participant_state(db_session(), job, participant)


@route(
    bp,
    "/jobs/<int:job_id>/keys/sealed/<domain_id>",
    methods=["PUT"],
    permission=SIGNED,
    summary="The dealer hands over one participant's secret context, sealed to its X25519 key",
    body_kind="binary",
    status=204,
)
def put_sealed_context(job_id: int, domain_id: str) -> None:
    session = db_session()
    with _signed_body() as staged:
        job, dealer = _participation(job_id, lock=True)
        federated.store_sealed_context(session, job, dealer, domain_id, _digest(staged))
        blobs().commit(staged)
        session.commit()


@route(
    bp,
    "/jobs/<int:job_id>/keys/public",
    methods=["PUT"],
    permission=SIGNED,
    summary="The dealer hands over the public context (no secret, Galois or relin keys)",
    body_kind="binary",
    query=PublicContextQuery,
    response=ParticipantState,
)
def put_public_context(job_id: int, query: PublicContextQuery) -> ParticipantState:
    session = db_session()
    with _signed_body() as staged:
        job, dealer = _participation(job_id, lock=True)
        federated.store_public_context(
            session, job, dealer, staged, _digest(staged), node_identity().node_id, query.signature
        )
        blobs().commit(staged)
        session.commit()
    return federated.participant_state(session, job, dealer)


@route(
    bp,
    "/jobs/<int:job_id>/keys/public",
    permission=SIGNED,
    summary="The job's public context, for a participant to check against its dealer's signature",
    response_kind="binary",
)
def get_public_context(job_id: int) -> Response:
    job, _ = _participation(job_id)
    if job.public_context_digest is None:
        raise NotFound("The dealer has not handed over the public context yet.")
    return _send(job.public_context_digest, "context.public")


@route(
    bp,
    "/jobs/<int:job_id>/keys/refused",
    methods=["POST"],
    permission=SIGNED,
    summary="A participant refuses the job's keys (they fail its checks); the job fails",
    body=KeysRefusedIn,
    response=ParticipantState,
)
def refuse_keys(job_id: int, body: KeysRefusedIn) -> ParticipantState:
    session = db_session()
    job, participant = _participation(job_id, lock=True)
    federated.record_keys_refused(session, job, participant, body.reason)
    session.commit()
    return federated.participant_state(session, job, participant)


def _digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@route(
    bp,
    "/jobs/<int:job_id>/keys/sealed",
    permission=SIGNED,
    summary="This domain's sealed secret context (only it can open the box)",
    response_kind="binary",
)
def get_sealed_context(job_id: int) -> Response:
    _, participant = _participation(job_id)
    if participant.sealed_context_digest is None:
        raise NotFound("The dealer has not sealed a context for this domain yet.")
    return _send(participant.sealed_context_digest, "context.sealed")


@route(
    bp,
    "/jobs/<int:job_id>/rounds/<int:number>/update",
    methods=["PUT"],
    permission=SIGNED,
    summary="A domain's encrypted update for the open round; the network adds it to the sum",
    body_kind="binary",
    query=UpdateQuery,
    response=RoundOut,
)
def put_update(job_id: int, number: int, query: UpdateQuery) -> RoundOut:
    session = db_session()
    with _signed_body() as staged:
        # The job row is locked too: closing a round changes the job (next round, finishing),
        # which must not overwrite a cancel that landed meanwhile.
        job, participant = _participation(job_id, lock=True)
        round_ = federated.accept_update(session, blobs(), job, participant, number, query, staged)
        session.commit()
    federated.delete_replaced_blobs(session, blobs())
    return round_out(session, round_)


@route(
    bp,
    "/jobs/<int:job_id>/rounds/<int:number>/aggregate",
    permission=SIGNED,
    summary="A closed round's aggregate: the sum of its updates, still encrypted",
    response_kind="binary",
)
def get_aggregate(job_id: int, number: int) -> Response:
    session = db_session()
    job, participant = _participation(job_id)
    if participant.status != "approved":
        raise Forbidden(f"This domain has not approved federated job {job.id}.")
    round_ = session.scalar(
        select(FederatedRound).where(
            FederatedRound.job_id == job.id, FederatedRound.number == number
        )
    )
    if round_ is None or round_.status != "closed" or round_.aggregate_digest is None:
        raise NotFound(f"Round {number} of job {job.id} has no published aggregate.")
    response = _send(round_.aggregate_digest, f"round-{number}.agg")
    response.headers["X-Grid-Samples"] = str(round_.samples)
    return response


@route(
    bp,
    "/jobs/<int:job_id>/attestation",
    methods=["POST"],
    permission=SIGNED,
    summary="A domain attests the sha256 of the final weights it decrypted",
    body=AttestationIn,
    response=ParticipantState,
)
def attest(job_id: int, body: AttestationIn) -> ParticipantState:
    session = db_session()
    job, participant = _participation(job_id, lock=True)
    federated.record_attestation(session, job, participant, body.model_hash)
    session.commit()
    return federated.participant_state(session, job, participant)


@route(
    bp,
    "/jobs/<int:job_id>/result",
    methods=["PUT"],
    permission=SIGNED,
    summary="A domain uploads the final weights its owner released, matching its attestation",
    body_kind="binary",
    response=ParticipantState,
)
def put_result(job_id: int) -> ParticipantState:
    session = db_session()
    with _signed_body() as staged:
        job, participant = _participation(job_id, lock=True)
        federated.store_result(session, job, participant, _digest(staged))
        blobs().commit(staged)
        session.commit()
    return federated.participant_state(session, job, participant)


@route(
    bp,
    "/jobs/<int:job_id>/release",
    methods=["POST"],
    permission=SIGNED,
    summary="A domain's owner released the result it attested (another domain uploaded it)",
    body=AttestationIn,
    response=ParticipantState,
)
def release(job_id: int, body: AttestationIn) -> ParticipantState:
    session = db_session()
    job, participant = _participation(job_id, lock=True)
    federated.record_release(session, job, participant, body.model_hash)
    session.commit()
    return federated.participant_state(session, job, participant)


@route(
    bp,
    "/jobs/<int:job_id>/withheld",
    methods=["POST"],
    permission=SIGNED,
    summary="A domain may not release what the final sums give; the job fails with the reason",
    body=WithheldIn,
    response=ParticipantState,
)
def withheld(job_id: int, body: WithheldIn) -> ParticipantState:
    session = db_session()
    job, participant = _participation(job_id, lock=True)
    federated.record_withheld(session, job, participant, body.reason)
    session.commit()
    return federated.participant_state(session, job, participant)
