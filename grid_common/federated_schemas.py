"""Wire schemas of federated jobs (training and analytics), for data scientists, networks and
domains."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, Json, model_validator

from grid_common.analytics.plan import AnalyticsDp, ExactModel, parse_statistic
from grid_common.hashes import canonical_json
from grid_common.he import CkksParams, SecureAggregation
from grid_common.plan import TrainingPlan
from grid_common.schemas import DATASET_NAME, Strict

Strategy = Literal["fedavg", "fedprox"]
# A federated job trains a model in rounds, or computes an analysis from one round of sums.
FederatedKind = Literal["training", "analytics"]
FederatedStatus = Literal[
    "pending_approval", "key_setup", "running", "finishing", "completed", "failed", "cancelled"
]
ParticipantStatus = Literal["invited", "approved", "denied"]
RoundStatus = Literal["open", "closed"]
ResultAvailability = Literal["none", "awaiting_attestations", "awaiting_upload", "available"]
FINISHED_STATUSES = frozenset({"completed", "failed", "cancelled"})
ALLOWED_DEGREES = (4096, 8192, 16384, 32768)


class CkksParamsIn(Strict):
    """The CKKS context a job's dealer makes; DESIGN.md's defaults."""

    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: list[int] = Field(
        default_factory=lambda: [60, 40, 40, 60], min_length=2, max_length=16
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


class FederatedSpec(RoundSettings):
    """What a data scientist asks the network to train: everything but the model files."""

    plan: TrainingPlan = Field(description="Local training each round; epochs are local epochs.")
    rounds: int = Field(default=10, ge=1, le=1000)
    strategy: Strategy = "fedavg"
    mu: float = Field(default=0.0, ge=0, le=100, description="FedProx's proximal weight.")

    @model_validator(mode="after")
    def _consistent(self) -> FederatedSpec:
        if self.strategy == "fedprox" and self.mu <= 0:
            raise ValueError("fedprox needs mu > 0 (the proximal term's weight)")
        if self.strategy == "fedavg" and self.mu != 0:
            raise ValueError("mu is FedProx's parameter: set strategy='fedprox' to use it")
        if self.plan.dp is not None and self.strategy == "fedprox":
            raise ValueError("FedProx and differential privacy cannot be combined yet")
        return self

    def round_settings(self) -> dict[str, Any]:
        """What the spec hash covers besides model, weights, plan and datasets."""
        return self.model_dump(mode="json", exclude={"plan", "datasets", "reason"})


class AnalyticsSpec(RoundSettings):
    """What a data scientist asks the network to compute across datasets, in one round.

    Either `statistics` (names, or `hist:COLUMN:LOW:HIGH:BINS`) or one exact `model`.
    `columns` are the features (every numeric column but the label by default).
    """

    statistics: list[str] = Field(default_factory=list, max_length=200)
    model: ExactModel | None = None
    alpha: float = Field(default=1.0, ge=0, description="Ridge's regularization strength.")
    var_smoothing: float = Field(default=1e-9, ge=0, description="Gaussian NB's smoothing.")
    columns: list[str] | None = Field(default=None, min_length=1, max_length=2000)
    label: str | None = Field(default=None, max_length=200)
    dp: AnalyticsDp | None = None

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


class RoundOut(BaseModel):
    number: int
    status: RoundStatus
    opened_at: datetime
    deadline: datetime
    closed_at: datetime | None
    reporters: list[str] = Field(description="Domains whose update the aggregate holds.")
    samples: int = Field(description="Training rows behind the aggregate (its weight).")
    metrics: dict[str, Any] = Field(
        description="Sample-weighted means of the domains' local metrics, and each domain's own."
    )
    aggregate_hash: str | None


class RoundList(BaseModel):
    items: list[RoundOut]


class FederatedJobOut(BaseModel):
    """A federated job as its data scientist and the network's operators see it."""

    id: int
    kind: FederatedKind
    status: FederatedStatus
    submitter: str
    plan: dict[str, Any] = Field(
        description="A training job's training plan; an analysis's plan, resolved against its "
        "datasets (features, label, classes, statistics or model)."
    )
    rounds: int
    strategy: Strategy
    mu: float
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


class FederatedJobList(BaseModel):
    items: list[FederatedJobOut]


# --- between the network and its domains (signed calls) ------------------------------------


class Invitation(BaseModel):
    """A federated job a network asks a domain to take part in, signed by the network."""

    network_job_id: int
    network_id: str
    kind: FederatedKind = "training"
    dataset: str
    requester: str
    reason: str
    plan: dict[str, Any] = Field(description="A TrainingPlan, or an analysis's AnalysisPlan.")
    rounds: int
    strategy: Strategy
    mu: float
    min_domains: int
    round_timeout: float
    secure_aggregation: SecureAggregation
    ckks: CkksParamsIn
    participants: list[str] = Field(description="Names of every domain invited.")
    model_digest: str | None = Field(description="None for an analysis: it has no model.")
    weights_digest: str | None
    spec_hash: str
    signature: str = Field(description="The network's Ed25519 signature of everything above.")


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
    result_uploaded: bool
    failure_reason: str | None
    min_group_size: int = Field(
        default=0, description="The largest minimum group size of the domains that approved."
    )
    dealer_keys: list[DealerKey] = Field(
        default_factory=list, description="Whom to seal the secret context for (dealer only)."
    )


class DealerKey(BaseModel):
    domain_id: str
    encryption_key: str


ParticipantState.model_rebuild()
