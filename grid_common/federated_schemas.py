"""Wire schemas of federated jobs (training and analytics), for data scientists, networks and
domains."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal

from nacl.exceptions import BadSignatureError
from pydantic import BaseModel, ConfigDict, Field, Json, model_validator
from pydantic.json_schema import JsonDict

from grid_common.analytics.plan import STATISTICS, AnalyticsDp, ExactModel, parse_statistic
from grid_common.canonical import canonical_json
from grid_common.contributors import MIN_CONTRIBUTORS
from grid_common.he import CkksParams, SecureAggregation
from grid_common.identity import NodeIdentity, b64decode, b64encode, verify_key_from_text
from grid_common.plan import TrainingPlan
from grid_common.schemas import DATASET_NAME, Strict
from grid_common.strategy import StrategyTerms

# A federated job trains a model in rounds, or computes an analysis from one round of sums.
FederatedKind = Literal["training", "analytics"]
FederatedStatus = Literal[
    "pending_approval", "key_setup", "running", "finishing", "completed", "failed", "cancelled"
]
ParticipantStatus = Literal["invited", "approved", "denied"]
RoundStatus = Literal["open", "closed"]
ResultAvailability = Literal["none", "awaiting_attestations", "awaiting_release", "available"]
FINISHED_STATUSES = frozenset({"completed", "failed", "cancelled"})
ALLOWED_DEGREES = (4096, 8192, 16384, 32768)


class CkksParamsIn(Strict):
    """The CKKS context a job's dealer makes; DESIGN.md's defaults."""

    # The extras document what _valid checks (its messages stay the ones a caller reads).
    poly_modulus_degree: int = Field(default=8192, json_schema_extra={"enum": [*ALLOWED_DEGREES]})
    coeff_mod_bit_sizes: list[int] = Field(
        default_factory=lambda: [60, 40, 40, 60],
        min_length=2,
        max_length=16,
        json_schema_extra={"items": {"type": "integer", "minimum": 20, "maximum": 60}},
    )
    global_scale_bits: int = Field(default=40, ge=20, le=60)

    @model_validator(mode="after")
    def _valid(self) -> CkksParamsIn:
        if self.poly_modulus_degree not in ALLOWED_DEGREES:
            raise ValueError(f"poly_modulus_degree must be one of {list(ALLOWED_DEGREES)}")
        if any(not 20 <= bits <= 60 for bits in self.coeff_mod_bit_sizes):
            raise ValueError("each of coeff_mod_bit_sizes must be between 20 and 60 bits")
        limit = {4096: 109, 8192: 218, 16384: 438, 32768: 881}[self.poly_modulus_degree]
        if sum(self.coeff_mod_bit_sizes) > limit:
            raise ValueError(
                f"coeff_mod_bit_sizes add up to {sum(self.coeff_mod_bit_sizes)} bits; "
                f"degree {self.poly_modulus_degree} allows at most {limit} for 128-bit security"
            )
        return self

    def to_params(self) -> CkksParams:
        return CkksParams(
            self.poly_modulus_degree, list(self.coeff_mod_bit_sizes), self.global_scale_bits
        )


class DatasetTarget(Strict):
    """One dataset on one domain (by the domain's id or name) that the job trains on."""

    domain: str = Field(min_length=1, max_length=100)
    dataset: str = Field(pattern=DATASET_NAME.pattern, max_length=100)


class RoundSettings(Strict):
    """What every federated job names: its datasets, quorum, deadline and aggregation."""

    datasets: list[DatasetTarget] = Field(min_length=1, max_length=64)
    min_domains: int | None = Field(
        default=None, ge=1, description="Quorum per round; every domain by default."
    )
    round_timeout: float = Field(default=300.0, ge=1, le=7 * 24 * 3600, description="Seconds.")
    secure_aggregation: SecureAggregation = "ckks"
    ckks: CkksParamsIn = Field(default_factory=CkksParamsIn)
    reason: str = Field(default="", max_length=10_000)

    @model_validator(mode="after")
    def _targets(self) -> RoundSettings:
        domains = {d.domain for d in self.datasets}
        if len(domains) != len(self.datasets):
            raise ValueError("name one dataset per domain")
        if self.min_domains is not None and self.min_domains > len(self.datasets):
            raise ValueError(
                f"min_domains is {self.min_domains} but only {len(self.datasets)} domains take part"
            )
        return self

    @property
    def quorum(self) -> int:
        return self.min_domains or len(self.datasets)

    @property
    def differentially_private(self) -> bool:
        """Whether each domain's contribution is differentially private on its own."""
        return False

    def required_contributors(self, owners_min: int = MIN_CONTRIBUTORS) -> int:
        """How many domains must be in an aggregate before any domain may read it (1: any).

        A job of one domain has no peer to read; a differentially private one bounds what a
        peer learns; every other needs the larger of 3 and the strictest owner's minimum.
        """
        if len(self.datasets) == 1 or self.differentially_private:
            return 1
        return max(MIN_CONTRIBUTORS, owners_min)

    def peer_problem(self) -> str | None:
        """Why this job would let a domain read another's contribution, or None if it cannot."""
        needed = self.required_contributors()
        if self.quorum >= needed:
            return None
        dp = "train with plan.dp" if isinstance(self, FederatedSpec) else "analyse with dp"
        return (
            f"Rounds of this job could close with {self.quorum} domain(s), and then each one "
            "learns another's contribution by subtracting its own from the sum. Add a domain so "
            f"that at least {needed} take part (and min_domains is at least {needed}), or {dp} "
            "(differential privacy on each domain's contribution)."
        )


class FederatedSpec(RoundSettings, StrategyTerms):
    """What a data scientist asks the network to train: everything but the model files.

    The strategy's terms (`StrategyTerms`) are checked for the strategy; with sampling
    (`fraction` below 1) every round's sample must itself be large enough to release.
    """

    plan: TrainingPlan = Field(description="Local training each round; epochs are local epochs.")
    rounds: int = Field(default=10, ge=1, le=1000)

    @model_validator(mode="after")
    def _consistent(self) -> FederatedSpec:
        if self.plan.dp is not None and self.strategy == "fedprox":
            raise ValueError("FedProx and differential privacy cannot be combined yet")
        if self.sampling:
            if self.min_sample is None:
                # The smallest sample an aggregate may be read from: the privacy floor.
                self.min_sample = min(self.required_contributors(), len(self.datasets))
            if self.min_sample > len(self.datasets):
                raise ValueError(
                    f"min_sample is {self.min_sample} but only {len(self.datasets)} domains "
                    "take part"
                )
        return self

    @property
    def differentially_private(self) -> bool:
        return self.plan.dp is not None

    def peer_problem(self) -> str | None:
        problem = super().peer_problem()
        needed = self.required_contributors()
        if problem is None and self.sampling and (self.min_sample or 1) < needed:
            return (
                f"A round samples as few as {self.min_sample} domain(s) (min_sample), and then "
                "each one learns another's contribution by subtracting its own from the sum. "
                f"Set min_sample to at least {needed}, or train with plan.dp (differential "
                "privacy on each domain's contribution)."
            )
        return problem

    def round_settings(self) -> dict[str, Any]:
        """What the spec hash covers besides model, weights, plan and datasets."""
        return self.model_dump(mode="json", exclude={"plan", "datasets", "reason"})


# hist:COLUMN:LOW:HIGH:BINS, with BINS from 1 to 9999 (MAX_BINS is 10,000).
_HISTOGRAM: JsonDict = {
    "type": "string",
    "pattern": r"^hist:[^:]+:-?[0-9]+(\.[0-9]+)?:-?[0-9]+(\.[0-9]+)?:[1-9][0-9]{0,3}$",
}


class AnalyticsSpec(RoundSettings):
    """What a data scientist asks the network to compute across datasets, in one round.

    Either `statistics` (names, or `hist:COLUMN:LOW:HIGH:BINS`) or one exact `model`.
    `columns` are the features (every numeric column but the label by default).
    """

    statistics: list[str] = Field(
        default_factory=list,
        max_length=200,
        # What parse_statistic reads (a histogram's LOW below HIGH is left to it).
        json_schema_extra={"items": {"anyOf": [{"enum": [*STATISTICS]}, _HISTOGRAM]}},
    )
    model: ExactModel | None = None
    alpha: float = Field(default=1.0, ge=0, description="Ridge's regularization strength.")
    var_smoothing: float = Field(default=1e-9, ge=0, description="Gaussian NB's smoothing.")
    columns: list[str] | None = Field(default=None, min_length=1, max_length=2000)
    label: str | None = Field(default=None, max_length=200)
    dp: AnalyticsDp | None = None

    # Documented for OpenAPI: statistics or one exact model, exactly one of the two.
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["statistics"], "properties": {"statistics": {"minItems": 1}}},
                {"required": ["model"], "properties": {"model": {"not": {"type": "null"}}}},
            ]
        }
    )

    @model_validator(mode="after")
    def _asks_for_something(self) -> AnalyticsSpec:
        if (self.model is None) == (not self.statistics):
            raise ValueError("ask for statistics or for one exact model, not both")
        for name in self.statistics:
            parse_statistic(name)
        return self

    @property
    def rounds(self) -> int:
        return 1

    @property
    def differentially_private(self) -> bool:
        return self.dp is not None

    def round_settings(self) -> dict[str, Any]:
        return self.model_dump(
            mode="json",
            include={"min_domains", "round_timeout", "secure_aggregation", "ckks"},
        )


class FederatedJobForm(Strict):
    """Form field of a federated job; the files `model` (.pt2) and `weights` travel beside it."""

    spec: Json[FederatedSpec]


class ParticipantOut(BaseModel):
    domain_id: str
    domain: str
    dataset: str
    status: ParticipantStatus
    decision_reason: str | None
    decided_at: datetime | None
    samples: int | None = Field(description="Training rows it reported in its last round.")
    rounds_reported: int
    attested: bool
    released: bool = Field(
        default=False, description="Its owner released the result (signed by its domain)."
    )


class RoundOut(BaseModel):
    number: int
    status: RoundStatus
    opened_at: datetime
    deadline: datetime
    closed_at: datetime | None
    reporters: list[str] = Field(description="Domains whose update the aggregate holds.")
    sampled: list[str] = Field(
        default_factory=list,
        description="The node ids of the domains drawn to train in this round (every approved "
        "domain without sampling): `grid_common.strategy.draw_sample` recomputes them.",
    )
    samples: int = Field(description="Training rows behind the aggregate (its weight).")
    metrics: dict[str, Any] = Field(
        description="Sample-weighted means of the domains' local metrics, and each domain's own."
    )
    aggregate_hash: str | None


class RoundList(BaseModel):
    items: list[RoundOut]


class FederatedJobOut(StrategyTerms):
    """A federated job as its data scientist and the network's operators see it (an analysis
    shows FedAvg's terms: it has no strategy of its own)."""

    id: int
    kind: FederatedKind
    status: FederatedStatus
    submitter: str
    plan: dict[str, Any] = Field(
        description="A training job's training plan; an analysis's plan, resolved against its "
        "datasets (features, label, classes, statistics or model)."
    )
    rounds: int
    min_domains: int
    round_timeout: float
    secure_aggregation: SecureAggregation
    reason: str
    current_round: int
    min_group_size: int = Field(
        default=0,
        description="The largest minimum group size of the domains that approved so far: an "
        "analysis withholds smaller groups (0 before any approved).",
    )
    participants: list[ParticipantOut]
    parameters: int = Field(
        description="Values in each update: the model's flat weights, or the analysis's sums."
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    failure_reason: str | None
    spec_hash: str
    result: ResultAvailability
    result_hash: str | None = Field(
        description="sha256 of the final weights (or released analysis) every domain attested."
    )
    last_round: RoundOut | None
    registry_job_id: str | None = Field(
        default=None,
        description="The job's id on the network's registry (None: not recorded on chain); "
        "check it with `fl.verify()` or `grid registry verify`.",
    )


class FederatedJobList(BaseModel):
    items: list[FederatedJobOut]


# --- between the network and its domains (signed calls) ------------------------------------


class Invitation(StrategyTerms):
    """A federated job a network asks a domain to take part in, signed by the network; its
    strategy and sampling terms (`StrategyTerms`) are signed with the rest."""

    network_job_id: int
    network_id: str
    kind: FederatedKind = "training"
    dataset: str
    requester: str
    reason: str
    plan: dict[str, Any] = Field(description="A TrainingPlan, or an analysis's AnalysisPlan.")
    rounds: int
    min_domains: int
    round_timeout: float
    secure_aggregation: SecureAggregation
    ckks: CkksParamsIn
    participants: list[str] = Field(description="Names of every domain invited.")
    participant_keys: list[PeerKey] = Field(
        default_factory=list,
        description="Every invited domain's node id and public keys: the dealer seals to these, "
        "and a participant checks the dealer's signature and box against them.",
    )
    model_digest: str | None = Field(description="None for an analysis: it has no model.")
    weights_digest: str | None
    spec_hash: str
    signature: str = Field(description="The network's Ed25519 signature of everything above.")


class PeerKey(BaseModel):
    """A participating domain as the network introduces it: its node id and public keys."""

    domain_id: str
    name: str
    signing_key: str = Field(description="Ed25519; its hash is the node id.")
    encryption_key: str = Field(description="X25519; secret contexts are boxed to it.")


def key_statement_message(
    *, network_id: str, network_job_id: int, dealer_id: str, public_context_digest: str
) -> bytes:
    """The bytes a key dealer signs: this job's CKKS public context is the one it made.

    It names the network and job, so a statement from another job cannot stand for this one.
    """
    return canonical_json(
        {
            "purpose": "grid-ckks-public-context:v1",
            "network_id": network_id,
            "network_job_id": network_job_id,
            "dealer_id": dealer_id,
            "public_context_sha256": public_context_digest,
        }
    )


def sign_key_statement(
    dealer: NodeIdentity, *, network_id: str, network_job_id: int, public_context: bytes
) -> str:
    """The dealer's signature (base64url) that `public_context` is this job's, as it made it."""
    message = key_statement_message(
        network_id=network_id,
        network_job_id=network_job_id,
        dealer_id=dealer.node_id,
        public_context_digest=hashlib.sha256(public_context).hexdigest(),
    )
    return b64encode(dealer.signing_key.sign(message).signature)


def key_statement_verifies(
    signing_key: str,
    signature: str,
    *,
    network_id: str,
    network_job_id: int,
    dealer_id: str,
    public_context_digest: str,
) -> bool:
    """Whether `signature` is the dealer's (by its Ed25519 key) over this job's public context."""
    message = key_statement_message(
        network_id=network_id,
        network_job_id=network_job_id,
        dealer_id=dealer_id,
        public_context_digest=public_context_digest,
    )
    try:
        verify_key_from_text(signing_key).verify(message, b64decode(signature, length=64))
    except (BadSignatureError, ValueError):
        return False
    return True


class PublicContextQuery(Strict):
    """What travels beside the dealer's public context, in the signed query string."""

    signature: str = Field(
        min_length=86,
        max_length=86,
        description="The dealer's Ed25519 signature of `key_statement_message` (base64url).",
    )


class KeysRefusedIn(Strict):
    """Why a participant refuses the job's keys (they fail its checks): the job fails."""

    reason: str = Field(min_length=1, max_length=2_000)


def peer_protection(invitation: Invitation, min_peers: int) -> tuple[bool, str]:
    """What a peer domain can learn of this domain's part, in words for its owner, and whether
    the job can release anything under the owner's `min_peers` at all."""
    domains, quorum = len(invitation.participants), invitation.min_domains
    dp = invitation.plan.get("dp")
    needed = max(MIN_CONTRIBUTORS, min_peers)
    if domains == 1:
        return True, "This domain is the job's only one: no peer domain sees its contribution."
    if dp is not None:
        return True, (
            f"Differential privacy (epsilon {dp['epsilon']:g}, delta {dp['delta']:g}) protects "
            "this domain's contribution on its own, so a round may close with as few as "
            f"{quorum} domain(s): a peer that subtracts its own part from the sum learns only a "
            "differentially private result."
        )
    if domains < needed:
        return False, (
            f"Without differential privacy an aggregate must hold at least {needed} domains "
            f"(this domain's minimum is {min_peers}), and this job has {domains}: a peer could "
            "read this domain's contribution by subtracting its own. The job needs more "
            "domains or differential privacy."
        )
    if invitation.sampling and (invitation.min_sample or 1) < needed:
        return False, (
            f"Without differential privacy an aggregate must hold at least {needed} domains "
            f"(this domain's minimum is {min_peers}), and this job's rounds sample as few as "
            f"{invitation.min_sample}: a peer could read this domain's contribution by "
            "subtracting its own. The job needs a larger min_sample or differential privacy."
        )
    return True, (
        f"Every aggregate the domains read holds at least {needed} domains' contributions "
        f"(this domain's minimum is {min_peers}; the job has {domains}): a peer learns only "
        "the sum of the others'. A round with fewer fails instead of being released."
    )


def invitation_message(fields: dict[str, Any]) -> bytes:
    """The bytes a network signs for an invitation: its canonical JSON, signature left out."""
    return canonical_json({k: v for k, v in fields.items() if k != "signature"})


class InvitationList(BaseModel):
    items: list[Invitation]


class DecisionReport(Strict):
    approved: bool
    reason: str = Field(default="", max_length=10_000)
    min_group_size: int | None = Field(
        default=None, ge=1, le=1_000_000, description="The owner's disclosure threshold."
    )
    min_peers: int | None = Field(
        default=None,
        ge=MIN_CONTRIBUTORS,
        le=1000,
        description="The domains the owner requires in an aggregate without DP.",
    )
    stake_wei: int = Field(
        default=0,
        ge=0,
        le=10**30,
        description="The stake the owner requires of each participant on chain (wei); the "
        "job asks the largest any approving owner requires.",
    )


class WithheldIn(Strict):
    """Why a domain may not release what the final sums give (an analysis's small groups)."""

    reason: str = Field(min_length=1, max_length=2_000)


class AttestationIn(Strict):
    model_hash: str = Field(pattern=r"^[0-9a-f]{64}$")


class UpdateQuery(Strict):
    """What travels beside an update's bytes, in the signed query string."""

    samples: int = Field(ge=1, le=10**12)
    loss: float | None = None
    accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    epsilon: float | None = Field(
        default=None, ge=0, description="DP: what this domain's accountant has spent so far."
    )


class ParticipantState(BaseModel):
    """Where a federated job stands for one participating domain: what its worker does next."""

    network_job_id: int
    kind: FederatedKind = "training"
    status: FederatedStatus
    participant_status: ParticipantStatus
    rounds: int
    round: int = Field(description="The open round, or the last one once all are done.")
    round_open: bool
    deadline: datetime | None
    submitted: bool = Field(description="This domain's update is in the open round.")
    sampled: bool = Field(
        default=True, description="This domain is in the open round's sample: it trains in it."
    )
    aggregate_round: int = Field(description="Newest round with a published aggregate; 0: none.")
    aggregate_samples: int
    deal_keys: bool = Field(description="This domain must make and hand out the job's keys now.")
    keys_ready: bool
    parameters: int
    slots: int
    row_scale: int = Field(
        description="Each update is the weights times rows / row_scale (keeps CKKS values small)."
    )
    secure_aggregation: SecureAggregation
    attested: bool
    released: bool = Field(
        default=False, description="This domain's release of the result is recorded."
    )
    unreleased: int = Field(
        default=0,
        description="Domains whose data is in the result and whose owner has not released it; "
        "the last to release uploads the result.",
    )
    result_uploaded: bool
    failure_reason: str | None
    min_group_size: int = Field(
        default=0, description="The largest minimum group size of the domains that approved."
    )
    dealer_keys: list[DealerKey] = Field(
        default_factory=list, description="Whom to seal the secret context for (dealer only)."
    )
    dealer: str | None = Field(default=None, description="The key dealer's domain id (CKKS).")
    public_context_signature: str | None = Field(
        default=None, description="The dealer's signature of the public context's digest."
    )
    registry_job_id: str | None = Field(
        default=None,
        description="The job's id on the network's registry, where each participant attests "
        "the final model; None when the job is not recorded on chain.",
    )
    registry_rounds: int = Field(
        default=0, description="Rounds the network logs on chain: attest once they are mined."
    )
    registry_stake_wei: int = Field(
        default=0, description="What each participant deposits on chain before it attests."
    )


class DealerKey(BaseModel):
    domain_id: str
    encryption_key: str


ParticipantState.model_rebuild()
Invitation.model_rebuild()
