"""The domain's part in federated jobs: invitations become requests, and the domain speaks for
its worker to the network (state, keys, updates, aggregates, attestation, the released model).

Invitations are fetched, decisions reported, attestations and released models sent by the
network sync loop; a decision, a completed job or a release also tries at once.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from domain import audit, jobs, registry_writes
from domain.context import blobs, node_identity
from domain.models import (
    AccessRequest,
    Dataset,
    FederatedParticipation,
    Job,
    NetworkMembership,
    PinnedPeer,
    RequestDataset,
)
from domain.network_calls import NetworkUnavailable, call_network, raise_for
from domain.requests import matching_rule, start_job
from domain.settings import load_settings
from grid_common import he
from grid_common.analytics.plan import AnalysisPlan
from grid_common.db import db_session
from grid_common.errors import ApiError, Conflict, NotFound
from grid_common.federated_schemas import (
    Invitation,
    InvitationList,
    ParticipantState,
    PeerKey,
    invitation_message,
    key_statement_verifies,
    peer_protection,
    sign_key_statement,
)
from grid_common.identity import b64decode, node_id_for, verify_key_from_text
from grid_common.long_poll import ChangeQuery
from grid_common.plan import TrainingPlan
from grid_common.schemas import AutoApprovalRule, JobLimits
from grid_common.uploads import check_model_archive, check_safetensors

log = logging.getLogger(__name__)
API = "/api/v1/fl"
_CHUNK = 1 << 20


def _membership(session: Session, network_id: str) -> NetworkMembership:
    membership = session.scalar(
        select(NetworkMembership).where(NetworkMembership.network_id == network_id)
    )
    if membership is None or membership.status != "approved":
        raise NotFound("This domain is no longer a member of the job's network.")
    return membership


def participation_of(session: Session, request_id: int) -> FederatedParticipation | None:
    return session.get(FederatedParticipation, request_id)


# --- talking to the network ----------------------------------------------------------------------


class FederatedNetwork:
    """Signed calls about one federated job to the network that runs it.

    It keeps plain values only, so callers can end their database transaction (which holds
    SQLite's write lock) before calling out.
    """

    def __init__(self, session: Session, participation: FederatedParticipation) -> None:
        membership = _membership(session, participation.network_id)
        self.url, self.network_id = membership.url, membership.network_id
        self.eth_address = membership.eth_address
        self.invitation = Invitation.model_validate(participation.invitation)
        self.base = f"{API}/jobs/{participation.network_job_id}"

    def call(self, method: str, path: str, **options: Any) -> requests.Response:
        response = call_network(method, self.url, self.network_id, self.base + path, **options)
        raise_for(response)
        return response

    def state(self, wait: ChangeQuery | None = None) -> ParticipantState:
        """The job's state; with `wait`, once it differs from the state the worker has."""
        params = wait.model_dump() if wait is not None and wait.wait > 0 else None
        return ParticipantState.model_validate(self.call("GET", "/state", params=params).json())

    def upload(self, method: str, path: str, source: Path, **options: Any) -> requests.Response:
        with source.open("rb") as body:
            return self.call(method, path, data=body, **options)


def verified(invitation: Invitation, membership: NetworkMembership) -> bool:
    """Whether the invitation carries a valid signature of the network of this membership."""
    try:
        key = verify_key_from_text(membership.signing_key)
        message = invitation_message(invitation.model_dump(mode="json"))
        key.verify(message, b64decode(invitation.signature, length=64))
    except Exception:  # nacl raises BadSignatureError, b64decode ValueError
        return False
    return invitation.network_id == membership.network_id


def file_invitations(session: Session, membership: NetworkMembership) -> int:
    """File each new, validly signed invitation of this network as a federated job request."""
    response = call_network("GET", membership.url, membership.network_id, f"{API}/invitations")
    raise_for(response)
    filed = 0
    for invitation in InvitationList.model_validate(response.json()).items:
        known = session.scalar(
            select(FederatedParticipation.request_id).where(
                FederatedParticipation.network_id == membership.network_id,
                FederatedParticipation.network_job_id == invitation.network_job_id,
            )
        )
        if known is not None:
            continue
        if not verified(invitation, membership):
            log.warning("network %s sent an invitation with a bad signature", membership.name)
            continue
        _file(session, membership, invitation)
        filed += 1
    return filed


def _fetch_file(
    session: Session, membership: NetworkMembership, invitation: Invitation, part: str
) -> str:
    expected = invitation.model_digest if part == "model" else invitation.weights_digest
    path = f"{API}/jobs/{invitation.network_job_id}/files/{part}"
    with blobs().staging() as staged:
        response = call_network("GET", membership.url, membership.network_id, path, stream=True)
        raise_for(response)
        with response, staged.open("wb") as out:
            for chunk in response.iter_content(_CHUNK):
                out.write(chunk)
        if part == "model":
            check_model_archive(staged, dp=invitation.plan.get("dp") is not None)
        else:
            check_safetensors(staged, "weights")
        digest, _, _ = blobs().commit(staged)
    if digest != expected:
        raise NotFound(f"The network's {part} file does not match its signed invitation.")
    return digest


def pin_peer_keys(
    session: Session, membership: NetworkMembership, invitation: Invitation
) -> str | None:
    """Check the participants' keys the invitation introduces; why they cannot be trusted, or
    None after pinning the peers seen for the first time.

    Each node id must be the hash of its Ed25519 key and this domain's own entry its own keys.
    A peer this network introduced before must come with the node id and X25519 key pinned
    then (trust on first use): a network cannot swap a known peer's keys for its own.
    """
    me = node_identity()
    peers = invitation.participant_keys
    if invitation.secure_aggregation == "ckks" and not peers:
        return (
            "The network's invitation names no participant keys, so the job's keys cannot "
            "be checked."
        )
    fresh = []
    for peer in peers:
        try:
            genuine = node_id_for(b64decode(peer.signing_key, length=32)) == peer.domain_id
        except ValueError:
            genuine = False
        if not genuine:
            return (
                f"The network introduces peer {peer.name!r} with a signing key that is not "
                "its node id's."
            )
        if peer.domain_id == me.node_id:
            if (peer.signing_key, peer.encryption_key) != (
                me.signing_public_key,
                me.encryption_public_key,
            ):
                return (
                    "The network introduces this domain with keys that are not its own: it "
                    "may be swapping keys."
                )
            continue
        pinned = session.scalars(
            select(PinnedPeer).where(
                ((PinnedPeer.network_id == membership.network_id) & (PinnedPeer.name == peer.name))
                | (PinnedPeer.domain_id == peer.domain_id)
            )
        ).all()
        if any(
            (p.domain_id, p.encryption_key) != (peer.domain_id, peer.encryption_key) for p in pinned
        ):
            return (
                f"The network introduces peer {peer.name!r} with other keys than those pinned "
                "when this domain first saw it: the network may be swapping keys. Confirm with "
                f"{peer.name}'s owner before trusting new keys."
            )
        if not any(p.network_id == membership.network_id for p in pinned):
            fresh.append(peer)
    if peers and me.node_id not in {peer.domain_id for peer in peers}:
        return (
            "The network introduces this domain with keys that are not its own: it may be "
            "swapping keys."
        )
    for peer in fresh:
        session.add(
            PinnedPeer(
                network_id=membership.network_id,
                name=peer.name,
                domain_id=peer.domain_id,
                encryption_key=peer.encryption_key,
            )
        )
    return None


def _request_kind(invitation: Invitation) -> str:
    return "analytics" if invitation.kind == "analytics" else "federated"


def _file(session: Session, membership: NetworkMembership, invitation: Invitation) -> None:
    dataset = session.scalar(select(Dataset).where(Dataset.name == invitation.dataset))
    actor = f"network:{membership.name}"
    kind = _request_kind(invitation)
    settings = load_settings(session)
    item = AccessRequest(
        kind=kind,
        requester_id=None,
        requester_label=f"{invitation.requester} via network {membership.name}",
        reason=invitation.reason or f"federated job {invitation.network_job_id}",
        plan=invitation.plan,
        datasets=[
            RequestDataset(
                dataset_name=invitation.dataset, dataset_id=dataset.id if dataset else None
            )
        ],
    )
    peers_ok, peers = peer_protection(invitation, settings.min_peers)
    keys_problem = pin_peer_keys(session, membership, invitation)
    if keys_problem is not None:
        item.status, item.decided_at = "denied", datetime.now(UTC)
        item.decision_reason = keys_problem
    elif dataset is None:
        item.status, item.decided_at = "denied", datetime.now(UTC)
        item.decision_reason = f"This domain has no dataset named {invitation.dataset!r}."
    elif not peers_ok:
        item.status, item.decided_at, item.decision_reason = "denied", datetime.now(UTC), peers
    elif kind == "analytics":
        problem = _analysis_problem(invitation, dataset)
        if problem is not None:
            item.status, item.decided_at = "denied", datetime.now(UTC)
            item.decision_reason = problem
    else:
        TrainingPlan.model_validate(invitation.plan)  # a plan outside the allow-list fails here
        item.model_digest = _fetch_file(session, membership, invitation, "model")
        item.weights_digest = _fetch_file(session, membership, invitation, "weights")
    session.add(item)
    session.flush()
    session.add(
        FederatedParticipation(
            request_id=item.id,
            network_id=membership.network_id,
            network_job_id=invitation.network_job_id,
            invitation=invitation.model_dump(mode="json"),
            min_group_size=settings.min_group_size,
            min_peers=settings.min_peers,
        )
    )
    audit.append(
        session,
        actor=actor,
        action="requests.filed",
        target=f"request:{item.id}",
        details={"kind": kind, "network_job": invitation.network_job_id},
    )
    if item.status == "pending" and dataset is not None:
        matched = matching_rule(
            settings.auto_approval, None, kind, [dataset], invitation.plan, invitation
        )
        if matched is not None:
            _auto_approve(session, item, matched, settings.job_limits)
    session.commit()


def _auto_approve(
    session: Session, item: AccessRequest, rule: AutoApprovalRule, limits: JobLimits
) -> None:
    """Approve and queue a request a rule covers, unless a privacy budget cannot pay for it:
    then it waits for the owner, like any request no rule covers."""
    try:
        start_job(session, item, jobs.Approval(limits, rule.release_on_completion))
    except Conflict as exc:
        log.info("request %s left for the owner: %s", item.id, exc.message)
        return
    item.status, item.auto_approved = "approved", True
    item.decided_at = datetime.now(UTC)
    item.decision_reason = "Approved automatically by the domain's auto-approval rule."
    audit.append(
        session,
        actor="system",
        action="requests.auto_approved",
        target=f"request:{item.id}",
        details={"rule": rule.model_dump(mode="json")},
    )


def _analysis_problem(invitation: Invitation, dataset: Dataset) -> str | None:
    """Why this domain cannot run the analysis as signed, checked against its own dataset."""
    try:
        plan = AnalysisPlan.model_validate(invitation.plan)
    except ValidationError as exc:
        return f"The network sent an analysis this domain cannot read: {exc.errors()[0]['msg']}"
    columns = {c["name"]: c for c in dataset.schema["columns"]}
    missing = [c for c in plan.read_columns if c not in columns]
    if missing:
        return f"Dataset {dataset.name!r} has no column(s) {', '.join(map(repr, missing))}."
    return None


# --- reports: decision, attestation, released model ---------------------------------------------


def _report(session: Session, item: AccessRequest, participation: FederatedParticipation) -> None:
    network = FederatedNetwork(session, participation)
    if not participation.decision_reported and item.status in ("approved", "denied"):
        body = {
            "approved": item.status == "approved",
            "reason": item.decision_reason or "",
            "min_group_size": participation.min_group_size,
            "min_peers": participation.min_peers,
            "stake_wei": load_settings(session).stake_wei,
        }
        try:
            network.call("POST", "/decision", json_body=body)
        except NetworkUnavailable:
            raise  # not delivered: the sync loop tries again
        except ApiError as exc:  # refused (the job ended meanwhile): nothing more to tell
            log.info("network refused the decision on request %s: %s", item.id, exc.message)
        participation.decision_reported = True
        session.commit()
    job = session.get(Job, item.id)
    if job is None or job.status != "completed" or job.result_digest is None:
        return
    if not participation.attestation_reported:
        answer = network.call("POST", "/attestation", json_body={"model_hash": job.result_digest})
        attested = ParticipantState.model_validate(answer.json())
        if attested.registry_job_id is not None:
            # The same hash on the network's chain job, from this domain's own key: the
            # weights file the data scientist downloads, once every owner released it. The
            # job id is the network's word: the chain's job must be this network's, with the
            # spec hash it signed in the invitation, before anything is staked or attested.
            registry_writes.enqueue_federated_attestation(
                session,
                attested.registry_job_id,
                job.result_digest,
                attested.registry_rounds,
                coordinator=network.eth_address,
                spec_hash=network.invitation.spec_hash,
                stake_wei=attested.registry_stake_wei,
                willing_wei=load_settings(session).stake_wei,
            )
        participation.attested_hash = job.result_digest
        participation.attestation_reported = True
        session.commit()
    if job.result_status == "released" and not participation.result_uploaded:
        # Every owner's release is its own signed call: the network hands a joint result to
        # the data scientist only once each domain whose data is in it has released it. The
        # last to release uploads it, so the network never holds a plaintext result that an
        # owner still withholds.
        released = network.call("POST", "/release", json_body={"model_hash": job.result_digest})
        state = ParticipantState.model_validate(released.json())
        if state.unreleased == 0 and not state.result_uploaded:
            network.upload("PUT", "/result", blobs().path(job.result_digest))
        participation.result_uploaded = True  # this domain's part of the release is done
        session.commit()


def report_due(session: Session, membership: NetworkMembership) -> None:
    """Everything this domain owes the network: decisions, attestations, released models."""
    pending = session.execute(
        select(AccessRequest, FederatedParticipation)
        .join(FederatedParticipation, FederatedParticipation.request_id == AccessRequest.id)
        .where(
            FederatedParticipation.network_id == membership.network_id,
            ~(
                FederatedParticipation.decision_reported
                & FederatedParticipation.attestation_reported
                & FederatedParticipation.result_uploaded
            ),
            AccessRequest.status != "pending",
        )
    ).all()
    for item, participation in pending:
        try:
            _report(session, item, participation)
        except ApiError as exc:
            session.rollback()
            log.info("federated report for request %s: %s", item.id, exc.message)


def sync(session: Session, membership: NetworkMembership) -> None:
    """The sync loop's federated part for one approved membership."""
    file_invitations(session, membership)
    report_due(session, membership)


def report_soon(request_id: int) -> None:
    """Try to tell the network about a decision, result or release now; the sync loop retries."""
    session = db_session()
    item = session.get(AccessRequest, request_id)
    participation = participation_of(session, request_id)
    if item is None or participation is None:
        return
    try:
        _report(session, item, participation)
    except (ApiError, OSError) as exc:
        session.rollback()
        log.info("federated report for request %s deferred: %s", request_id, exc)


# --- the worker's side, through the domain ----------------------------------------------------


def network_for_job(session: Session, job_id: int) -> FederatedNetwork:
    """The network of this domain's part `job_id`; the caller may then end its transaction."""
    participation = participation_of(session, job_id)
    if participation is None:
        raise NotFound(f"Job {job_id} is not part of a federated job.")
    return FederatedNetwork(session, participation)


def state_for_worker(
    network: FederatedNetwork, wait: ChangeQuery | None = None
) -> ParticipantState:
    """The job's state at the network (with `wait`: once changed); the dealer makes and hands
    out the keys on the way."""
    state = network.state(wait)
    if state.deal_keys:
        _deal_keys(network, state)
        state = network.state()
    return state


class KeysRefused(Conflict):
    """The job's keys fail this domain's checks: it encrypts nothing (409 `keys_refused`)."""

    code = "keys_refused"


def _peers(network: FederatedNetwork) -> dict[str, PeerKey]:
    """The participants' keys as the invitation introduced them (checked and pinned on filing)."""
    return {peer.domain_id: peer for peer in network.invitation.participant_keys}


def _deal_keys(network: FederatedNetwork, state: ParticipantState) -> None:
    """Make the job's CKKS keys, box the secret context from this domain to each participant,
    and hand over the public context with this domain's signature of its digest.

    Each participant's X25519 key is the invitation's, never one the network names now.
    """
    me, peers = node_identity(), _peers(network)
    for holder in state.dealer_keys:
        peer = peers.get(holder.domain_id)
        if peer is None or peer.encryption_key != holder.encryption_key:
            raise _refuse(
                network,
                f"the network asked this domain, the key dealer, to seal the job's key for "
                f"{peer.name if peer else 'a domain the invitation does not name'} under a "
                "key the invitation does not give: the network may be swapping keys",
            )
    keys = he.make_job_keys(network.invitation.ckks.to_params())
    with blobs().staging() as staged:
        for holder in state.dealer_keys:
            boxed = he.box_for(
                me.encryption_key, peers[holder.domain_id].encryption_key, keys.secret_context
            )
            staged.write_bytes(boxed)
            network.upload("PUT", f"/keys/sealed/{holder.domain_id}", staged)
        signature = sign_key_statement(
            me,
            network_id=network.network_id,
            network_job_id=state.network_job_id,
            public_context=keys.public_context,
        )
        staged.write_bytes(keys.public_context)
        network.upload("PUT", "/keys/public", staged, params={"signature": signature})
    log.info("dealt the CKKS keys of federated job %s", state.network_job_id)


def _refuse(network: FederatedNetwork, reason: str) -> KeysRefused:
    """Tell the network this domain refuses the job's keys (the job fails there); the error
    to raise. A network that ignores it gains nothing: this domain encrypts nothing."""
    log.warning("federated job %s: %s", network.base, reason)
    try:
        network.call("POST", "/keys/refused", json_body={"reason": reason})
    except (ApiError, OSError) as exc:
        log.info("could not report the refused keys to the network: %s", exc)
    return KeysRefused(f"This domain refuses the job's keys: {reason}.")


def secret_context(network: FederatedNetwork) -> bytes:
    """This domain's secret context of the job, once it proved to come from the key dealer.

    Before any worker encrypts with it: the dealer's Ed25519 signature must cover the public
    context the network holds, the box must open as one from the dealer's X25519 key to this
    domain's, and the secret context inside must belong to that public context.
    """
    state = network.state()
    dealer = _peers(network).get(state.dealer or "")
    if dealer is None:
        raise _refuse(network, "the network names a key dealer the job's invitation does not")
    public = network.call("GET", "/keys/public").content
    if not state.public_context_signature or not key_statement_verifies(
        dealer.signing_key,
        state.public_context_signature,
        network_id=network.network_id,
        network_job_id=state.network_job_id,
        dealer_id=dealer.domain_id,
        public_context_digest=hashlib.sha256(public).hexdigest(),
    ):
        raise _refuse(
            network,
            f"the key dealer {dealer.name}'s signature on the CKKS public context does not "
            "verify: the network may have swapped keys",
        )
    sealed = network.call("GET", "/keys/sealed").content
    try:
        secret = he.unbox(node_identity().encryption_key, dealer.encryption_key, sealed)
    except he.UpdateError:
        raise _refuse(
            network,
            f"the secret context sealed for this domain was not boxed by the key dealer "
            f"{dealer.name}: the network may have swapped keys",
        ) from None
    try:
        matches = he.public_form(secret) == public
    except he.UpdateError:
        matches = False
    if not matches:
        raise _refuse(
            network,
            f"the secret context from the key dealer {dealer.name} does not belong to the "
            "public context it signed: the network may have swapped keys",
        )
    return secret


def fetch_aggregate(network: FederatedNetwork, number: int) -> tuple[bytes, int]:
    """A closed round's aggregate (a few MB at most), and the rows behind it."""
    response = network.call("GET", f"/rounds/{number}/aggregate")
    return response.content, int(response.headers.get("X-Grid-Samples", "0"))


def send_update(network: FederatedNetwork, number: int, update: Path, query: dict[str, Any]) -> Any:
    """Forward the worker's update to the network, signed by this domain; returns its answer."""
    return network.upload("PUT", f"/rounds/{number}/update", update, params=query).json()


def report_withheld(network: FederatedNetwork, reason: str) -> ParticipantState:
    """Tell the network the final sums may not be released (the worker found why)."""
    answer = network.call("POST", "/withheld", json_body={"reason": reason})
    return ParticipantState.model_validate(answer.json())
