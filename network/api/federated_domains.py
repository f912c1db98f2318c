"""Federated jobs, the domains' side: signed calls of the domains that take part in a job.

A domain reads its invitations, decides, deals or fetches the keys, uploads each round's
encrypted update, fetches the aggregates, attests and releases the result. The data scientist's
side of the same jobs is `network.api.federated`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Blueprint, Response, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from grid_common.api import SIGNED, route
from grid_common.db import db_session
from grid_common.errors import Forbidden, NotFound
from grid_common.federated_schemas import (
    AttestationIn,
    DecisionReport,
    Invitation,
    InvitationList,
    KeysRefusedIn,
    ParticipantState,
    PeerKey,
    PublicContextQuery,
    RoundOut,
    UpdateQuery,
    WithheldIn,
    invitation_message,
)
from grid_common.hashes import sha256_file
from grid_common.identity import b64encode
from grid_common.long_poll import ChangeQuery
from grid_common.signing import check_streamed_body
from network import federated, state_wait
from network.api.federated import send_blob
from network.auth import current_node
from network.context import blobs, node_identity
from network.federated_access import job_file_digest, job_terms, round_out
from network.models import Association, FederatedJob, FederatedParticipant, FederatedRound, Operator

bp = Blueprint("federated_domains", __name__, url_prefix="/api/v1/fl")
_CHUNK = 1 << 20


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
        **job_terms(job, spec),
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
    return send_blob(job_file_digest(job, part), name)


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
        body.stake_wei,
    )
    session.commit()
    return federated.participant_state(session, job, participant)


@route(
    bp,
    "/jobs/<int:job_id>/state",
    permission=SIGNED,
    summary="Where the job stands for this domain: round, deadline, keys, what to do next; with "
    "`wait` and `seen`, once it differs from the state the domain has (a long poll)",
    query=ChangeQuery,
    response=ParticipantState,
)
def state(job_id: int, query: ChangeQuery) -> ParticipantState:
    job, participant = _participation(job_id)
    return state_wait.state_waiting(db_session(), job, participant, query)


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
        federated.store_sealed_context(session, job, dealer, domain_id, sha256_file(staged))
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
            session,
            job,
            dealer,
            staged,
            sha256_file(staged),
            node_identity().node_id,
            query.signature,
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
    return send_blob(job.public_context_digest, "context.public")


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
    return send_blob(participant.sealed_context_digest, "context.sealed")


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
    response = send_blob(round_.aggregate_digest, f"round-{number}.agg")
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
        federated.store_result(session, job, participant, sha256_file(staged))
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
