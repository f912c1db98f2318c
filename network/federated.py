"""Federated jobs on the network: invitations, key setup, rounds summed blind, attested results.

A job trains a model in rounds, or computes an analysis (statistics or an exact model) from
one round of sufficient statistics; both run the same protocol. The network never holds a
secret key. Under CKKS it keeps the public context (no Galois or relinearization keys), one
sealed secret context per participant that only that domain can open, and each round's
running sum of ciphertexts. Updates are added as they arrive, frame by frame, so memory holds
one frame of the aggregate and one of the update at a time.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, object_session

from grid_common import he
from grid_common.analytics.plan import AnalysisPlan, AnalyticsError
from grid_common.analytics_compatibility import PublishedTarget, resolve_plan
from grid_common.blobstore import BlobStore
from grid_common.contributors import MIN_CONTRIBUTORS
from grid_common.db import db_session
from grid_common.errors import Conflict, Forbidden, NotFound, Unprocessable
from grid_common.federated_schemas import (
    FINISHED_STATUSES,
    AnalyticsSpec,
    DealerKey,
    FederatedSpec,
    ParticipantState,
    RoundSettings,
    UpdateQuery,
    key_statement_verifies,
)
from grid_common.job_specs import analytics_spec_hash, federated_spec_hash
from grid_common.schemas import DatasetSchema
from grid_common.strategy import draw_sample
from network import registry_writes
from network.context import blobs
from network.models import (
    Association,
    FederatedJob,
    FederatedParticipant,
    FederatedRound,
    FederatedUpdate,
    IndexedDataset,
)

log = logging.getLogger(__name__)
METRIC_NAMES = ("loss", "accuracy", "val_loss", "val_accuracy")
# Shown per domain only, never averaged: under DP, the epsilon its accountant has spent so far.
OWN_METRIC_NAMES = ("epsilon",)
# How many round timeouts a round may stay open short of its quorum before the job fails.
GRACE_ROUNDS = 3


def spec_of(job: FederatedJob) -> FederatedSpec | AnalyticsSpec:
    if job.kind == "analytics":
        return AnalyticsSpec.model_validate(job.spec)
    return FederatedSpec.model_validate(job.spec)


def analysis_of(job: FederatedJob) -> AnalysisPlan:
    """An analytics job's resolved plan."""
    assert job.analysis is not None
    return AnalysisPlan.model_validate(job.analysis)


def layout_of(job: FederatedJob) -> he.UpdateLayout:
    return he.UpdateLayout(spec_of(job).secure_aggregation, job.parameters, job.slots)


def headroom_of(job: FederatedJob) -> int:
    """Modulus bits above the scale its updates travel with: sums of statistics need more."""
    return he.STATISTICS_HEADROOM_BITS if job.kind == "analytics" else he.SEND_HEADROOM_BITS


def participants_of(session: Session, job: FederatedJob) -> list[FederatedParticipant]:
    return list(
        session.scalars(
            select(FederatedParticipant)
            .where(FederatedParticipant.job_id == job.id)
            .order_by(FederatedParticipant.position)
        )
    )


def current_round(session: Session, job: FederatedJob) -> FederatedRound | None:
    return session.scalar(
        select(FederatedRound).where(
            FederatedRound.job_id == job.id, FederatedRound.number == job.current_round
        )
    )


def _resolve_targets(
    session: Session, spec: RoundSettings
) -> list[tuple[Association, IndexedDataset]]:
    """Each (domain, dataset) of the spec as an approved association whose index has it."""
    resolved = []
    for target in spec.datasets:
        association = session.scalar(
            select(Association).where(
                Association.status == "approved",
                (Association.domain_id == target.domain) | (Association.name == target.domain),
            )
        )
        if association is None:
            raise Unprocessable(
                f"No domain {target.domain!r} is associated with this network; "
                "see GET /api/v1/domains.",
                code="unknown_domain",
            )
        indexed = session.scalar(
            select(IndexedDataset).where(
                IndexedDataset.association_id == association.id,
                IndexedDataset.name == target.dataset,
            )
        )
        if indexed is None:
            raise Unprocessable(
                f"Domain {association.name!r} has published no dataset named "
                f"{target.dataset!r}; search the index for what it offers.",
                code="unknown_dataset",
            )
        resolved.append((association, indexed))
    if len({a.id for a, _ in resolved}) != len(resolved):
        raise Unprocessable("Name one dataset per domain.", code="duplicate_domain")
    return resolved


def _invite(
    session: Session, job: FederatedJob, targets: list[tuple[Association, IndexedDataset]]
) -> FederatedJob:
    session.add(job)
    session.flush()
    for position, (association, indexed) in enumerate(targets):
        session.add(
            FederatedParticipant(
                job_id=job.id,
                association_id=association.id,
                dataset=indexed.name,
                position=position,
            )
        )
    session.flush()
    return job


def _require_peers(spec: RoundSettings) -> None:
    """Refuse a job whose rounds could close with so few domains that one reads another."""
    problem = spec.peer_problem()
    if problem is not None:
        raise Unprocessable(problem, code="too_few_domains")


def create_job(
    session: Session,
    submitter_id: int,
    spec: FederatedSpec,
    model_digest: str,
    weights_digest: str,
    parameters: int,
) -> FederatedJob:
    """Record a federated training job and invite each of its domains; the caller commits.

    A job that samples its domains gets its seed here, from the network's OS entropy: a data
    scientist who chose it could try seeds until one draws the domains they want together.
    """
    targets = _resolve_targets(session, spec)
    _require_peers(spec)
    if spec.sample_seed is not None:
        raise Unprocessable(
            "Leave sample_seed out: the network draws the sampling seed when it files the job "
            "(it is in the spec every domain sees, so any of them can check each round's draw).",
            code="seed_not_allowed",
        )
    if spec.sampling:
        spec = spec.model_copy(update={"sample_seed": secrets.token_hex(16)})
    job = FederatedJob(
        kind="training",
        submitter_id=submitter_id,
        spec=spec.model_dump(mode="json"),
        spec_hash=federated_spec_hash(
            spec,
            model_digest=model_digest,
            weights_digest=weights_digest,
            targets=[(a.domain_id, d.name) for a, d in targets],
        ),
        model_digest=model_digest,
        weights_digest=weights_digest,
        parameters=parameters,
        slots=spec.ckks.poly_modulus_degree // 2,
        row_scale=max(1, sum(d.row_count for _, d in targets)),
    )
    return _invite(session, job, targets)


def create_analytics_job(session: Session, submitter_id: int, spec: AnalyticsSpec) -> FederatedJob:
    """Check an analysis against the published schemas, record it and invite its domains.

    Nothing is recorded when the datasets do not fit it: the error lists every difference.
    """
    targets = _resolve_targets(session, spec)
    published = [
        PublishedTarget(
            association.name,
            indexed.name,
            DatasetSchema.model_validate(indexed.schema),
            indexed.label,
        )
        for association, indexed in targets
    ]
    try:
        plan = resolve_plan(spec, published)
    except AnalyticsError as exc:
        raise Unprocessable(str(exc), code="incompatible_datasets") from None
    _require_peers(spec)
    job = FederatedJob(
        kind="analytics",
        submitter_id=submitter_id,
        spec=spec.model_dump(mode="json"),
        analysis=plan.model_dump(mode="json"),
        spec_hash=analytics_spec_hash(
            spec, plan, targets=[(a.domain_id, d.name) for a, d in targets]
        ),
        parameters=plan.layout.size,
        slots=spec.ckks.poly_modulus_degree // 2,
    )
    return _invite(session, job, targets)


# --- decisions and key setup ---------------------------------------------------------------


def record_decision(
    session: Session,
    job: FederatedJob,
    participant: FederatedParticipant,
    approved: bool,
    reason: str,
    min_group_size: int | None = None,
    min_peers: int | None = None,
    stake_wei: int = 0,
) -> None:
    """A domain's owner decided; the same decision again is harmless, a changed one is not."""
    status = "approved" if approved else "denied"
    if participant.status == status:
        return
    if participant.status != "invited":
        raise Conflict(
            f"This domain already {participant.status} job {job.id}.", code="already_decided"
        )
    if job.status in FINISHED_STATUSES or job.status == "finishing":
        raise Conflict(
            f"Federated job {job.id} is {job.status}: its rounds are over.", code="job_finished"
        )
    participant.status, participant.decision_reason = status, reason or None
    participant.decided_at, participant.min_group_size = datetime.now(UTC), min_group_size
    participant.min_peers, participant.stake_wei = min_peers, str(stake_wei)
    session.flush()
    _advance(session, job)


def _advance(session: Session, job: FederatedJob) -> None:
    """Move a job on once enough domains approved: to key setup (CKKS) or straight to round 1."""
    if job.status != "pending_approval":
        return
    spec = spec_of(job)
    participants = participants_of(session, job)
    approved = [p for p in participants if p.status == "approved"]
    undecided = [p for p in participants if p.status == "invited"]
    if len(approved) + len(undecided) < spec.quorum:
        _fail(
            job,
            f"only {len(approved)} of {len(participants)} domains approved and "
            f"{len(undecided)} may still; the job needs {spec.quorum} (min_domains)",
        )
        return
    needed = required_contributors(session, job)
    if len(approved) + len(undecided) < needed:
        _fail(job, _too_few_reason(len(approved) + len(undecided), needed, "domains may take part"))
        return
    if len(approved) < spec.quorum:
        return
    if spec.secure_aggregation == "ckks":
        job.status, job.keys_requested_at = "key_setup", datetime.now(UTC)
        job.dealer_id = min(approved, key=lambda p: (p.decided_at or job.created_at, p.position)).id
        return
    _start(session, job)


def _start(session: Session, job: FederatedJob) -> None:
    job.status, job.started_at = "running", datetime.now(UTC)
    registry_writes.enqueue_job_started(session, job)
    _open_round(session, job, 1)


def _open_round(session: Session, job: FederatedJob, number: int) -> None:
    now = datetime.now(UTC)
    job.current_round = number
    session.add(
        FederatedRound(
            job_id=job.id,
            number=number,
            opened_at=now,
            deadline=now + timedelta(seconds=spec_of(job).round_timeout),
        )
    )


def _fail(job: FederatedJob, reason: str) -> None:
    job.status, job.failure_reason, job.finished_at = "failed", reason, datetime.now(UTC)
    log.info("federated job %s failed: %s", job.id, reason)
    _call_off_on_chain(job)


def _call_off_on_chain(job: FederatedJob) -> None:
    """A job that ends without a result before any domain attested is called off on chain:
    stakes go back, the bounty waits for its funders to reclaim it."""
    session = object_session(job)
    if session is not None:
        registry_writes.enqueue_job_called_off(session, job)


def key_holders(session: Session, job: FederatedJob) -> list[FederatedParticipant]:
    """Who gets a sealed secret context: every participant that has not denied the job."""
    return [p for p in participants_of(session, job) if p.status != "denied"]


def dealer_keys(session: Session, job: FederatedJob) -> list[DealerKey]:
    keys = []
    for participant in key_holders(session, job):
        association = session.get(Association, participant.association_id)
        assert association is not None
        keys.append(
            DealerKey(domain_id=association.domain_id, encryption_key=association.encryption_key)
        )
    return keys


def _require_dealer(job: FederatedJob, participant: FederatedParticipant) -> None:
    if job.status != "key_setup":
        raise Conflict(f"Federated job {job.id} is not setting up keys.", code="not_key_setup")
    if job.dealer_id != participant.id:
        raise Forbidden("Only the job's key dealer hands out its keys.")


def store_sealed_context(
    session: Session, job: FederatedJob, dealer: FederatedParticipant, domain_id: str, digest: str
) -> None:
    """Keep the dealer's sealed secret context for one participant (sealed to its X25519 key)."""
    _require_dealer(job, dealer)
    for participant in key_holders(session, job):
        association = session.get(Association, participant.association_id)
        if association is not None and association.domain_id == domain_id:
            participant.sealed_context_digest = digest
            return
    raise NotFound(f"Domain {domain_id} holds no key of federated job {job.id}.")


def store_public_context(
    session: Session,
    job: FederatedJob,
    dealer: FederatedParticipant,
    context_path: Path,
    digest: str,
    network_id: str,
    signature: str,
) -> None:
    """Check and keep the public context and the dealer's signature of its digest; with every
    sealed key in, round 1 opens. Participants check that signature themselves: an honest
    network refuses a bad one early, a dishonest one cannot forge it."""
    _require_dealer(job, dealer)
    try:
        context = he.load_context(context_path.read_bytes())
        private = context.is_private()  # type: ignore[attr-defined]
        params = he.context_params(context)
    except he.UpdateError as exc:
        raise Unprocessable(f"The public context is not a TenSEAL context: {exc}") from None
    if private or context.has_galois_keys() or context.has_relin_keys():  # type: ignore[attr-defined]
        raise Unprocessable(
            "The network takes only a public context: no secret, Galois or relinearization keys.",
            code="context_not_public",
        )
    expected = spec_of(job).ckks.to_params()
    if params != expected:
        raise Unprocessable(
            f"The context was made with {params}, the job asks for {expected}.",
            code="context_mismatch",
        )
    association = session.get(Association, dealer.association_id)
    assert association is not None
    if not key_statement_verifies(
        association.signing_key,
        signature,
        network_id=network_id,
        network_job_id=job.id,
        dealer_id=association.domain_id,
        public_context_digest=digest,
    ):
        raise Unprocessable(
            "The signature does not cover this public context of this job.",
            code="bad_key_signature",
        )
    missing = [p for p in key_holders(session, job) if p.sealed_context_digest is None]
    if missing:
        raise Conflict(
            f"Upload the sealed secret context of all {len(missing)} remaining participants "
            "before the public context.",
            code="keys_incomplete",
        )
    job.public_context_digest, job.public_context_signature = digest, signature
    _start(session, job)


def record_keys_refused(
    session: Session, job: FederatedJob, participant: FederatedParticipant, reason: str
) -> None:
    """A participant found the job's keys fail its checks and encrypts nothing: the job fails."""
    if job.status in FINISHED_STATUSES:
        return
    association = session.get(Association, participant.association_id)
    name = association.name if association else "a domain"
    _fail(job, f"{name} refused the job's CKKS keys: {reason}")


# --- rounds --------------------------------------------------------------------------------


def _active(session: Session, job: FederatedJob) -> list[FederatedParticipant]:
    return [p for p in participants_of(session, job) if p.status == "approved"]


def round_sample(
    session: Session, job: FederatedJob, round_: FederatedRound
) -> list[FederatedParticipant]:
    """The domains that train in `round_`: every approved domain, or with sampling those that
    `draw_sample` draws from the job's seed among the domains approved when the round opened
    (a later approval changes no open round's sample)."""
    active = _active(session, job)
    spec = spec_of(job)
    if not isinstance(spec, FederatedSpec) or not spec.sampling:
        return active
    assert spec.sample_seed is not None  # drawn when the job was filed
    eligible: dict[str, FederatedParticipant] = {}
    for participant in active:
        if participant.decided_at is not None and participant.decided_at <= round_.opened_at:
            association = session.get(Association, participant.association_id)
            assert association is not None
            eligible[association.domain_id] = participant
    drawn = draw_sample(spec.sample_seed, round_.number, eligible, spec.fraction, spec.min_sample)
    return [eligible[domain_id] for domain_id in drawn]


def sampled_domain_ids(session: Session, round_: FederatedRound) -> list[str]:
    """The node ids of `round_`'s sample, sorted: what `draw_sample` recomputes."""
    job = session.get(FederatedJob, round_.job_id)
    assert job is not None
    ids = []
    for participant in round_sample(session, job, round_):
        association = session.get(Association, participant.association_id)
        assert association is not None
        ids.append(association.domain_id)
    return sorted(ids)


def round_quorum(spec: RoundSettings, sample: list[FederatedParticipant]) -> int:
    """Updates a round needs at its deadline: `min_domains`, of its sample when it samples."""
    return min(spec.quorum, len(sample))


def accept_update(
    session: Session,
    blobs: BlobStore,
    job: FederatedJob,
    participant: FederatedParticipant,
    number: int,
    query: UpdateQuery,
    staged: Path,
) -> FederatedRound:
    """Add one domain's update to the open round's aggregate; the caller commits.

    The round row is locked first (PostgreSQL `FOR UPDATE`; SQLite's transactions are
    immediate), so concurrent updates are summed one after the other and none is lost.
    """
    if participant.status != "approved":
        raise Forbidden(f"This domain has not approved federated job {job.id}.")
    if job.status != "running":
        raise Conflict(
            f"Federated job {job.id} is {job.status}; it takes no updates.", code="not_running"
        )
    round_ = session.scalar(
        select(FederatedRound)
        .where(FederatedRound.job_id == job.id, FederatedRound.number == number)
        .with_for_update()
    )
    if round_ is None or number > job.current_round:
        raise Conflict(f"Round {number} of job {job.id} is not open.", code="round_not_open")
    if round_.status != "open":
        raise Conflict(
            f"Round {number} of job {job.id} closed before this update arrived; "
            f"round {job.current_round} is the current one.",
            code="round_closed",
        )
    already = session.scalar(
        select(FederatedUpdate.id).where(
            FederatedUpdate.round_id == round_.id, FederatedUpdate.participant_id == participant.id
        )
    )
    if already is not None:
        raise Conflict(
            f"This domain already sent its update for round {number}.", code="already_sent"
        )
    sample = round_sample(session, job, round_)
    if participant not in sample:
        raise Conflict(
            f"This domain is not in round {number}'s sample: it trains in a later round.",
            code="not_sampled",
        )
    layout, codec = layout_of(job), _codec(blobs, job)
    previous = round_.aggregate_digest
    with blobs.staging() as out:
        try:
            he.add_updates(blobs.path(previous) if previous else None, staged, codec, layout, out)
        except he.UpdateError as exc:
            raise Unprocessable(
                f"The update does not fit this job: {exc}", code="bad_update"
            ) from None
        digest, _, _ = blobs.commit(out)
    round_.aggregate_digest = digest
    round_.samples += query.samples
    metrics = {
        k: v
        for k, v in query.model_dump().items()
        if k in METRIC_NAMES + OWN_METRIC_NAMES and v is not None
    }
    session.add(
        FederatedUpdate(
            round_id=round_.id,
            participant_id=participant.id,
            samples=query.samples,
            metrics=metrics,
        )
    )
    participant.samples = query.samples
    participant.rounds_reported += 1
    session.flush()
    if previous is not None:
        # The partial sum is replaced; drop it once the new one is committed.
        session.info.setdefault("blobs_to_delete", []).append(previous)
    reporters = _reporter_count(session, round_)
    late = datetime.now(UTC) >= round_.deadline
    needed = required_contributors(session, job)
    if reporters >= len(sample) and reporters < needed:
        # Nobody else can send: an aggregate this small would expose its reporters.
        _withhold_round(session, round_)
        _fail(job, _too_few_reason(reporters, needed, f"domains sent round {number}"))
    elif reporters >= len(sample) or (
        late and reporters >= max(round_quorum(spec_of(job), sample), needed)
    ):
        close_round(session, job, round_)
    return round_


def required_contributors(session: Session, job: FederatedJob) -> int:
    """The domains an aggregate of this job must hold before the domains may read it.

    3, or more if an approving owner's `min_peers` says so (the strictest applies); 1 for a
    job with one domain or with differential privacy on each domain's contribution.
    """
    owners = (p.min_peers or 0 for p in participants_of(session, job) if p.status == "approved")
    return spec_of(job).required_contributors(max(owners, default=MIN_CONTRIBUTORS))


def _too_few_reason(count: int, needed: int, what: str) -> str:
    return (
        f"only {count} {what}; without differential privacy an aggregate is released only "
        f"when at least {needed} domains contributed, so that no domain can read another's "
        "contribution by subtracting its own"
    )


def _withhold_round(session: Session, round_: FederatedRound) -> None:
    """Close a round without publishing its sum: no domain may fetch it, and its blob goes."""
    round_.status, round_.closed_at = "closed", datetime.now(UTC)
    if round_.aggregate_digest is not None:
        session.info.setdefault("blobs_to_delete", []).append(round_.aggregate_digest)
        round_.aggregate_digest = None


@functools.lru_cache(maxsize=4)
def _cached_ckks_codec(context_path: Path, headroom_bits: int) -> he.FrameCodec:
    # Loading a public context (its public key) takes tens of milliseconds; a job's rounds
    # reuse one. The path names a content-addressed blob, so it never changes underneath.
    # A loaded context holds about 10 MiB until it drops out, long after its job finished:
    # a few cover the jobs a network runs at once, and more running jobs only reload.
    return he.codec_for("ckks", context_path.read_bytes(), headroom_bits)


def _codec(blobs: BlobStore, job: FederatedJob) -> he.FrameCodec:
    if layout_of(job).mode == "none":
        return he.PlainCodec()
    assert job.public_context_digest is not None  # a running CKKS job has its public context
    return _cached_ckks_codec(blobs.path(job.public_context_digest), headroom_of(job))


def _reporter_count(session: Session, round_: FederatedRound) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(FederatedUpdate)
            .where(FederatedUpdate.round_id == round_.id)
        )
        or 0
    )


def round_metrics(session: Session, round_: FederatedRound) -> dict[str, Any]:
    """Sample-weighted means of the domains' metrics, and each domain's own."""
    rows = session.execute(
        select(FederatedUpdate, Association.name)
        .join(FederatedParticipant, FederatedParticipant.id == FederatedUpdate.participant_id)
        .join(Association, Association.id == FederatedParticipant.association_id)
        .where(FederatedUpdate.round_id == round_.id)
        .order_by(FederatedParticipant.position)
    ).all()
    weighted: dict[str, Any] = {}
    for name in METRIC_NAMES:
        reported = [(u.samples, u.metrics[name]) for u, _ in rows if name in u.metrics]
        total = sum(n for n, _ in reported)
        if reported and total:
            weighted[name] = sum(n * value for n, value in reported) / total
    weighted["domains"] = {
        domain: {"samples": update.samples, **update.metrics} for update, domain in rows
    }
    return weighted


def close_round(session: Session, job: FederatedJob, round_: FederatedRound) -> None:
    """Publish a round's aggregate and open the next round, or wait for attestations."""
    round_.status, round_.closed_at = "closed", datetime.now(UTC)
    round_.metrics = round_metrics(session, round_)
    registry_writes.enqueue_round_logged(session, job, round_)
    spec = spec_of(job)
    if round_.number >= spec.rounds:
        job.status = "finishing"
    else:
        _open_round(session, job, round_.number + 1)


def fail_stalled_key_setups(session: Session) -> int:
    """Fail jobs whose dealer has not handed out the keys within `GRACE_ROUNDS` round timeouts."""
    now, failed = datetime.now(UTC), 0
    stalled = session.scalars(
        select(FederatedJob)
        .where(FederatedJob.status == "key_setup", FederatedJob.keys_requested_at.is_not(None))
        .with_for_update(skip_locked=True)
    ).all()
    for job in stalled:
        limit = GRACE_ROUNDS * spec_of(job).round_timeout
        assert job.keys_requested_at is not None
        if now >= job.keys_requested_at + timedelta(seconds=limit):
            _fail(job, f"the key dealer did not hand out the job's keys within {limit:g} s")
            failed += 1
    return failed


def close_due_rounds(session: Session) -> int:
    """Close rounds whose deadline passed with a quorum of updates; returns how many changed.

    A round short of its quorum at the deadline stays open and closes as soon as the quorum
    is in; after `GRACE_ROUNDS` times the round timeout without it, the job fails.
    """
    now, changed = datetime.now(UTC), 0
    due = session.scalars(
        select(FederatedRound)
        .join(FederatedJob, FederatedJob.id == FederatedRound.job_id)
        .where(
            FederatedRound.status == "open",
            FederatedRound.deadline <= now,
            FederatedJob.status == "running",
        )
        .with_for_update(skip_locked=True)
    ).all()
    for round_ in due:
        job = session.get(FederatedJob, round_.job_id)
        assert job is not None
        reporters = _reporter_count(session, round_)
        spec = spec_of(job)
        quorum = round_quorum(spec, round_sample(session, job, round_))
        needed = max(quorum, required_contributors(session, job))
        if reporters >= needed:
            close_round(session, job, round_)
            changed += 1
        elif now >= round_.opened_at + timedelta(seconds=GRACE_ROUNDS * spec.round_timeout):
            # The job fails and the partial sum is never published: with fewer updates than
            # the job needs, it could be one domain's update, or two that expose each other.
            _withhold_round(session, round_)
            if reporters < quorum:
                why = f"the job needs {quorum} (min_domains, of the round's sample)"
            else:
                why = (
                    "without differential privacy an aggregate is released only when at least "
                    f"{needed} domains contributed"
                )
            _fail(
                job,
                f"round {round_.number} had {reporters} update(s) after {GRACE_ROUNDS} times its "
                f"{spec.round_timeout:g} s timeout; {why}",
            )
            changed += 1
    return changed


# --- the end: attestations and the released model ------------------------------------------


def record_attestation(
    session: Session, job: FederatedJob, participant: FederatedParticipant, model_hash: str
) -> None:
    """A domain decrypted the final aggregate and says which weights file it got."""
    if participant.status != "approved":
        raise Forbidden(f"This domain has not approved federated job {job.id}.")
    if job.status not in ("finishing", "completed"):
        raise Conflict(f"Federated job {job.id} has no final model yet.", code="not_finished")
    if participant.attested_hash is not None:
        if participant.attested_hash != model_hash:
            raise Conflict("This domain already attested another hash.", code="already_attested")
        return
    participant.attested_hash, participant.attested_at = model_hash, datetime.now(UTC)
    session.flush()
    _settle(session, job)


def _settle(session: Session, job: FederatedJob) -> None:
    """With every attestation in: one hash → final; any disagreement → the job fails.

    Every approved domain that sent at least one update must attest; one that never did
    (down for the whole job) holds nothing the release depends on.
    """
    attesters = _contributors(session, job)
    hashes = {p.attested_hash for p in attesters}
    if None in hashes:
        return
    registry_writes.enqueue_job_settled(session, job)
    if len(hashes) != 1:
        _fail(job, "the domains decrypted different final models (their attested hashes differ)")
        return
    job.final_hash = hashes.pop()
    _complete_if_ready(session, job)


def _contributors(session: Session, job: FederatedJob) -> list[FederatedParticipant]:
    """The domains whose data is in the result: approved, with at least one update sent."""
    return [p for p in _active(session, job) if p.rounds_reported > 0]


def record_release(
    session: Session, job: FederatedJob, participant: FederatedParticipant, digest: str
) -> None:
    """A domain's owner released the result this domain attested (by hand or by their own
    release-on-completion); the call is signed by the domain, so no one else can release it."""
    if job.status not in ("finishing", "completed"):
        raise Conflict(
            f"Federated job {job.id} is {job.status}; it has no result to release.",
            code="not_finished",
        )
    if participant.attested_hash is None:
        raise Conflict("Attest the final model's hash before releasing it.", code="not_attested")
    if digest != participant.attested_hash:
        raise Unprocessable(
            "The released weights do not hash to what this domain attested.", code="hash_mismatch"
        )
    if participant.released_at is None:
        participant.released_at = datetime.now(UTC)
    session.flush()
    _complete_if_ready(session, job)


def store_result(
    session: Session, job: FederatedJob, participant: FederatedParticipant, digest: str
) -> None:
    """Keep the plaintext model a domain uploaded after its owner released it: its release."""
    record_release(session, job, participant, digest)
    if job.result_digest is None:
        job.result_digest = digest
    _complete_if_ready(session, job)


def record_withheld(
    session: Session, job: FederatedJob, participant: FederatedParticipant, reason: str
) -> None:
    """A domain decrypted the final sums and may not release what they give: the job fails.

    An analysis whose rows or classes are smaller than an owner's minimum group size ends
    here; every domain reaches the same verdict from the same sums, so one report suffices.
    """
    if participant.status != "approved":
        raise Forbidden(f"This domain has not approved federated job {job.id}.")
    if job.status != "finishing":
        raise Conflict(f"Federated job {job.id} is {job.status}.", code="not_finishing")
    association = session.get(Association, participant.association_id)
    name = association.name if association else "a domain"
    _fail(job, f"{name} withheld the result: {reason}")


def _complete_if_ready(session: Session, job: FederatedJob) -> None:
    """Complete the job once its result is agreed, uploaded and released by every owner whose
    data is in it: no single owner's release hands a joint result to the data scientist."""
    if job.status != "finishing" or not job.final_hash or job.result_digest != job.final_hash:
        return
    if all(p.released_at is not None for p in _contributors(session, job)):
        job.status, job.finished_at = "completed", datetime.now(UTC)


def result_availability(job: FederatedJob) -> str:
    if job.status == "completed":
        return "available"
    if job.status == "finishing":
        return "awaiting_attestations" if job.final_hash is None else "awaiting_release"
    return "none"


def cancel(job: FederatedJob) -> None:
    if job.status in FINISHED_STATUSES:
        raise Conflict(f"Federated job {job.id} is already {job.status}.", code="job_finished")
    job.status, job.finished_at = "cancelled", datetime.now(UTC)
    job.failure_reason = "cancelled by its data scientist or an operator"
    _call_off_on_chain(job)


def participant_state(
    session: Session, job: FederatedJob, participant: FederatedParticipant
) -> ParticipantState:
    """What this domain's worker should do next."""
    round_ = current_round(session, job)
    submitted, sampled = False, True
    if round_ is not None:
        sampled = participant in round_sample(session, job, round_)
        submitted = (
            session.scalar(
                select(FederatedUpdate.id).where(
                    FederatedUpdate.round_id == round_.id,
                    FederatedUpdate.participant_id == participant.id,
                )
            )
            is not None
        )
    published = session.scalar(
        select(FederatedRound)
        .where(FederatedRound.job_id == job.id, FederatedRound.status == "closed")
        .where(FederatedRound.aggregate_digest.is_not(None))
        .order_by(FederatedRound.number.desc())
        .limit(1)
    )
    spec = spec_of(job)
    deal = job.status == "key_setup" and job.dealer_id == participant.id
    on_chain = registry_writes.registry_job(session, job)
    return ParticipantState(
        network_job_id=job.id,
        kind=job.kind,  # type: ignore[arg-type]
        min_group_size=min_group_size(participants_of(session, job)),
        status=job.status,  # type: ignore[arg-type]
        participant_status=participant.status,  # type: ignore[arg-type]
        rounds=spec.rounds,
        round=job.current_round,
        round_open=round_ is not None and round_.status == "open",
        deadline=round_.deadline if round_ is not None else None,
        submitted=submitted,
        sampled=sampled,
        aggregate_round=published.number if published is not None else 0,
        aggregate_samples=published.samples if published is not None else 0,
        deal_keys=deal,
        keys_ready=spec.secure_aggregation == "none" or job.public_context_digest is not None,
        parameters=job.parameters,
        slots=job.slots,
        row_scale=job.row_scale,
        secure_aggregation=spec.secure_aggregation,
        attested=participant.attested_hash is not None,
        released=participant.released_at is not None,
        unreleased=sum(p.released_at is None for p in _contributors(session, job)),
        result_uploaded=job.result_digest is not None,
        failure_reason=job.failure_reason,
        dealer_keys=dealer_keys(session, job) if deal else [],
        dealer=_dealer_domain_id(session, job),
        public_context_signature=job.public_context_signature,
        registry_job_id=on_chain[0] if on_chain else None,
        registry_rounds=on_chain[1] if on_chain else 0,
        registry_stake_wei=registry_writes.job_stake(session, job) if on_chain else 0,
    )


def _dealer_domain_id(session: Session, job: FederatedJob) -> str | None:
    dealer = session.get(FederatedParticipant, job.dealer_id) if job.dealer_id else None
    association = session.get(Association, dealer.association_id) if dealer else None
    return association.domain_id if association else None


def min_group_size(participants: list[FederatedParticipant]) -> int:
    """The strictest minimum group size of the domains that approved: what every one applies."""
    approved = (p.min_group_size or 0 for p in participants if p.status == "approved")
    return max(approved, default=0)


def delete_replaced_blobs(session: Session, store: BlobStore) -> None:
    """After a commit: remove partial sums a newer one replaced."""
    for digest in session.info.pop("blobs_to_delete", []):
        with contextlib.suppress(OSError):
            store.delete(digest)


def close_due_rounds_task() -> None:
    """The background task: close rounds past their deadline, fail stalled key setups."""
    session = db_session()
    if close_due_rounds(session) + fail_stalled_key_setups(session):
        session.commit()
        delete_replaced_blobs(session, blobs())
    else:
        session.rollback()
