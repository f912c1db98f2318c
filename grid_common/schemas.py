"""Wire schemas of the domain API, shared by the server (validation, OpenAPI) and the client."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    Json,
    field_validator,
    model_validator,
)

from grid_common.plan import TrainingPlan
from grid_common.strategy import StrategyTerms

RoleName = Literal["owner", "admin", "compliance_officer", "data_scientist"]
RequestStatus = Literal["pending", "approved", "denied"]
# "access": only requests filed before plain access requests were removed (they granted nothing).
RequestKind = Literal["access", "job", "federated", "analytics"]
JobKind = Literal["job", "federated", "analytics"]
JOB_KINDS: tuple[JobKind, ...] = ("job", "federated", "analytics")
DatasetFormat = Literal["csv", "parquet", "npz", "safetensors"]

DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
Password = Annotated[str, Field(min_length=8, max_length=1024)]


class Strict(BaseModel):
    """Request bodies refuse unknown fields, so a typo is an error instead of being ignored."""

    model_config = ConfigDict(extra="forbid")


# --- health and setup -------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    node: str
    kind: Literal["domain", "network"] = "domain"
    setup_required: bool


class SetupIn(Strict):
    email: EmailStr
    password: Password


# --- auth -------------------------------------------------------------------


class LoginIn(Strict):
    email: EmailStr
    password: str = Field(min_length=1, max_length=1024)


class RefreshIn(Strict):
    refresh_token: str = Field(min_length=1, max_length=200)


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class UserOut(BaseModel):
    id: int
    email: str
    role: RoleName | Literal["operator"] = Field(description="On a network: operator.")
    is_active: bool
    created_at: datetime
    permissions: list[str]


class UserList(BaseModel):
    items: list[UserOut]


class UserCreate(Strict):
    email: EmailStr
    password: Password
    role: RoleName = "data_scientist"


class UserUpdate(Strict):
    role: RoleName | None = None
    is_active: bool | None = None


class InviteCreate(Strict):
    email: EmailStr
    role: RoleName = "data_scientist"


class InviteOut(BaseModel):
    id: int
    email: str
    role: RoleName
    expires_at: datetime
    token: str = Field(description="Shown once; the invitee signs up with it.")


class SignupIn(Strict):
    email: EmailStr
    password: Password
    invite_token: str | None = Field(
        default=None, description="Required unless the owner turned on open sign-up."
    )


class ApiKeyCreate(Strict):
    name: str = Field(min_length=1, max_length=100)


class ApiKeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool
    key: str | None = Field(default=None, description="Only in the response that creates it.")


class ApiKeyList(BaseModel):
    items: list[ApiKeyOut]


# --- settings ---------------------------------------------------------------


RULE_CONDITIONS = (
    "data_scientist",
    "dataset_tag",
    "kind",
    "max_epochs",
    "secure_aggregation",
    "max_epsilon",
    "max_rounds",
    "min_peers",
)


class AutoApprovalRule(Strict):
    """A request is approved on filing when every condition a rule sets holds.

    A rule must set at least one condition: one without would approve every request.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": [name], "properties": {name: {"not": {"type": "null"}}}}
                for name in RULE_CONDITIONS
            ]
        }
    )

    data_scientist: EmailStr | None = Field(default=None, description="Requester's email.")
    dataset_tag: str | None = Field(default=None, description="Every dataset carries this tag.")
    kind: JobKind | None = None
    max_epochs: int | None = Field(default=None, ge=1, description="Jobs only: plan limit.")
    secure_aggregation: Literal["ckks"] | None = Field(
        default=None,
        description="Federated jobs and analyses only: their updates must be encrypted (CKKS).",
    )
    max_epsilon: float | None = Field(
        default=None,
        gt=0,
        description="The request must use differential privacy with at most this epsilon.",
    )
    max_rounds: int | None = Field(
        default=None,
        ge=1,
        description="Federated jobs and analyses only: at most this many rounds.",
    )
    min_peers: int | None = Field(
        default=None,
        ge=1,
        description="Federated jobs and analyses only: every round needs at least this many "
        "domains (the job's quorum, min_domains), this one included.",
    )
    release_on_completion: bool = Field(
        default=False, description="Jobs only: release the result as soon as it is stored."
    )

    @model_validator(mode="after")
    def _has_a_condition(self) -> AutoApprovalRule:
        if all(getattr(self, name) is None for name in RULE_CONDITIONS):
            raise ValueError(
                "an auto-approval rule needs at least one condition (data_scientist, "
                "dataset_tag, kind, max_epochs, secure_aggregation, max_epsilon, max_rounds or "
                "min_peers); without one it would approve every request"
            )
        return self


class JobLimits(Strict):
    """What one attempt of a job may use on a worker."""

    cpu_seconds: int = Field(default=3600, ge=1, le=30 * 24 * 3600)
    memory_mb: int = Field(default=4096, ge=64, le=1 << 20)
    wall_seconds: int = Field(default=3600, ge=1, le=30 * 24 * 3600)


class Settings(Strict):
    allow_signup: bool = False
    auto_approval: list[AutoApprovalRule] = Field(default_factory=list)
    job_limits: JobLimits = Field(
        default_factory=JobLimits, description="Limits of auto-approved jobs; approval default."
    )
    min_group_size: int = Field(
        default=10,
        ge=1,
        le=1_000_000,
        description="Federated analyses withhold any count, mean or histogram cell of fewer "
        "rows, and any classifier with a class that small.",
    )
    min_peers: int = Field(
        default=3,
        ge=3,
        le=1000,
        description="A federated job without differential privacy releases an aggregate to "
        "this domain's peers only when at least this many domains contributed to it.",
    )
    live_metrics: bool = Field(
        default=True,
        description="Jobs without differential privacy show their data scientist loss, accuracy "
        "and row counts as they run; off, these wait for the result's release. Fixed for a job "
        "when it is approved. DP jobs always withhold them until release.",
    )
    stake_wei: int = Field(
        default=0,
        ge=0,
        le=10**30,
        description="The stake (wei) this domain requires of every participant of a federated "
        "job on chain, and deposits itself before attesting; it never deposits more. "
        "A participant that attests another model than the others forfeits it to them.",
    )


# --- datasets ---------------------------------------------------------------


class ColumnSchema(BaseModel):
    name: str
    dtype: str
    shape: list[int] = Field(default_factory=list, description="Per-row shape; [] for scalars.")
    magnitude: int | None = Field(
        default=None,
        ge=-250,
        le=250,
        description="Numeric columns: the power of two nearest the values' root mean square. "
        "Federated analytics scales its encrypted sums by it, so columns of very different "
        "sizes keep their precision side by side.",
    )


class DatasetSchema(BaseModel):
    format: DatasetFormat
    columns: list[ColumnSchema]
    row_count: int
    label_classes: list[int | float | str] | None = Field(
        default=None,
        description="The label's distinct values, when it has a label with at most 50 of them.",
    )
    input_shape: list[int] | None = Field(
        default=None,
        description="Per-row shape of the features a model trains on with the dataset's label, "
        "e.g. [1, 28, 28] for grayscale images (the model gets [batch, *input_shape]).",
    )
    image_mode: Literal["L", "RGB", "RGBA"] | None = Field(
        default=None,
        description="Set for a dataset uploaded as a zip of images: their mode (L: grayscale).",
    )


def _split_tags(value: Any) -> Any:
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    return value


class DatasetUpload(Strict):
    """The form fields that travel with an uploaded dataset file (`file`, optional `mock`)."""

    name: str = Field(pattern=DATASET_NAME.pattern, description="Unique on this domain.")
    description: str = Field(default="", max_length=10_000)
    tags: list[Annotated[str, Field(min_length=1, max_length=50)]] = Field(default_factory=list)
    label: str | None = Field(default=None, max_length=200, description="Label column or array.")
    citation: str = Field(default="", max_length=2_000)
    license: str = Field(default="", max_length=200)

    _tags = field_validator("tags", mode="before")(_split_tags)


class MockInfo(BaseModel):
    available: bool
    synthetic: bool = Field(description="True when the domain generated it from the schema.")
    method: str | None = None


class DatasetOut(BaseModel):
    id: int
    name: str
    description: str
    tags: list[str]
    citation: str
    license: str
    label: str | None
    format: DatasetFormat
    dataset_schema: DatasetSchema = Field(alias="schema")
    size_bytes: int
    mock: MockInfo
    created_at: datetime

    # "schema" would shadow a BaseModel attribute, so the field travels under an alias.
    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )


class DatasetList(BaseModel):
    items: list[DatasetOut]


class MockSample(BaseModel):
    """A mock sample as JSON: tables column-wise, arrays as nested lists with dtype and shape."""

    kind: Literal["table", "arrays"]
    synthetic: bool
    columns: dict[str, list[Any]] = Field(default_factory=dict)
    arrays: dict[str, Any] = Field(default_factory=dict)
    dtypes: dict[str, str] = Field(default_factory=dict)


# --- requests ---------------------------------------------------------------


class DecisionIn(Strict):
    reason: str = Field(default="", max_length=10_000)


class ApprovalIn(DecisionIn):
    """An approval; a job's may set its limits and release its result as soon as it is stored."""

    limits: JobLimits | None = Field(default=None, description="Jobs only; else the settings'.")
    release_on_completion: bool = Field(default=False, description="Jobs only.")


class RequestQuery(Strict):
    status: RequestStatus | None = None


class RequestOut(BaseModel):
    id: int
    kind: RequestKind
    status: RequestStatus
    requester: str
    datasets: list[str]
    reason: str
    decision_reason: str | None
    decided_by: str | None
    decided_at: datetime | None
    auto_approved: bool
    plan: dict[str, Any] | None
    created_at: datetime
    peers: str | None = Field(
        default=None,
        description="Federated requests: what a peer domain can learn of this domain's part, "
        "and what stops it (at least 3 domains in every aggregate, or differential privacy).",
    )
    live_metrics: str | None = Field(
        default=None,
        description="Job requests: what the data scientist reads of loss, accuracy and row "
        "counts before the result's release, and why.",
    )


class RequestList(BaseModel):
    items: list[RequestOut]


# --- audit ------------------------------------------------------------------


class AuditQuery(Strict):
    actor: str | None = None
    action: str | None = None
    after: int = Field(default=0, ge=0, description="Entries with a greater sequence number.")
    limit: int = Field(default=100, ge=1, le=1000)


class AuditEntryOut(BaseModel):
    seq: int
    at: str
    actor: str
    action: str
    target: str
    address: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditList(BaseModel):
    items: list[AuditEntryOut]


class AuditVerification(BaseModel):
    ok: bool
    entries: int
    head_hash: str
    first_broken_seq: int | None
    problem: str | None


class JobRequestForm(Strict):
    """Form fields of a job request; the files `model` (.pt2) and `weights` travel beside them."""

    datasets: list[str] = Field(min_length=1, max_length=50)
    reason: str = Field(min_length=1, max_length=10_000)
    plan: Json[TrainingPlan]


# --- jobs -------------------------------------------------------------------

JobStatus = Literal[
    "pending_approval", "denied", "queued", "running", "completed", "failed", "cancelled"
]
ResultStatus = Literal["none", "held", "released"]
JobEventKind = Literal["progress", "log"]


class JobOut(BaseModel):
    """A job as its data scientist and the domain's reviewers see it."""

    id: int
    kind: JobKind = Field(
        default="job",
        description="federated: this domain's part in a network's federated training; "
        "analytics: its part in a network's federated analysis.",
    )
    status: JobStatus
    requester: str
    datasets: list[str]
    plan: dict[str, Any]
    reason: str
    attempt: int
    max_attempts: int
    worker: str | None
    limits: JobLimits | None
    release_on_completion: bool
    cancel_requested: bool
    failure_reason: str | None
    metrics: dict[str, Any] | None
    epsilon_spent: float | None = Field(
        default=None,
        description="DP jobs: the epsilon the privacy accountant actually spent (all rounds and "
        "epochs of a federated job), at the plan's delta; at most the approved epsilon.",
    )
    metrics_withheld: bool = Field(
        default=False,
        description="True while loss, accuracy and row counts wait for the result's release "
        "(differential privacy, or the owner's live-metrics setting when the job was approved). "
        "Under DP exact row counts stay withheld after the release too.",
    )
    live_metrics: bool | None = Field(
        default=None,
        description="The owner's live-metrics setting, recorded with the job at approval.",
    )
    result_status: ResultStatus
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    released_at: datetime | None
    spec_hash: str | None = Field(description="sha256 of model, weights, plan and datasets.")
    result_hash: str | None = Field(description="sha256 of the trained weights, once released.")
    registry_job_id: str | None = Field(description="The job's id on the registry, if on.")
    registry_address: str | None = Field(description="The registry contract, if on.")


class JobList(BaseModel):
    items: list[JobOut]


class JobQuery(Strict):
    status: JobStatus | None = None


class JobEventIn(Strict):
    kind: JobEventKind
    data: dict[str, Any]


class JobEventOut(BaseModel):
    id: int
    attempt: int
    kind: JobEventKind
    at: datetime
    data: dict[str, Any]


class JobEventList(BaseModel):
    items: list[JobEventOut]


class JobEventQuery(Strict):
    after: int = Field(default=0, ge=0, description="Events with a greater id.")
    kind: JobEventKind | None = None
    limit: int = Field(default=1000, ge=1, le=10_000)


# --- workers ----------------------------------------------------------------

WorkerStatus = Literal["online", "busy", "offline", "revoked"]


class WorkerCreate(Strict):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class WorkerOut(BaseModel):
    id: int
    name: str
    prefix: str
    status: WorkerStatus
    host: str
    current_job: int | None
    last_heartbeat_at: datetime | None
    created_at: datetime
    token: str | None = Field(default=None, description="Only in the response that creates it.")


class WorkerList(BaseModel):
    items: list[WorkerOut]


class WorkerHello(Strict):
    host: str = Field(default="", max_length=200)


class LeaseQuery(Strict):
    wait: float = Field(
        default=0,
        ge=0,
        le=600,
        description="Seconds to wait for a runnable job before answering 204 (a long poll); the "
        "domain waits at most its GRID_LEASE_WAIT_S.",
    )


class LeasedDataset(BaseModel):
    name: str
    format: DatasetFormat
    label: str | None
    digest: str


class LeasedJob(BaseModel):
    """What a worker needs to run one attempt of a job."""

    job_id: int
    attempt: int
    lease_seconds: int
    plan: TrainingPlan | None = Field(description="None for an analysis (see `federated`).")
    limits: JobLimits
    datasets: list[LeasedDataset]
    federated: LeasedFederated | None = Field(
        default=None, description="Set when the job is this domain's part in a federated job."
    )


class LeasedFederated(StrategyTerms):
    """The rounds of a federated job, as this domain's worker runs them, with the strategy and
    sampling terms of its signed invitation."""

    network_job_id: int
    kind: Literal["training", "analytics"] = "training"
    rounds: int
    secure_aggregation: Literal["ckks", "none"]
    round_timeout: float
    min_domains: int = Field(default=1, description="The quorum: updates a round needs.")
    analysis: dict[str, Any] | None = Field(
        default=None, description="An analysis's plan, as the network signed it."
    )
    min_group_size: int = Field(
        default=0, description="This domain's minimum group size when the request was filed."
    )


class AttemptIn(Strict):
    attempt: int = Field(ge=1)


class FederatedUpdateQuery(AttemptIn):
    """A worker's round update: its attempt, and what the network's UpdateQuery carries."""

    samples: int = Field(ge=1)
    loss: float | None = None
    accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    epsilon: float | None = Field(
        default=None, ge=0, description="DP: what this domain's accountant has spent so far."
    )


class HeartbeatOut(BaseModel):
    cancel: bool
    lease_seconds: int


class JobEventBatch(AttemptIn):
    events: list[JobEventIn] = Field(max_length=1000)


class AttemptFailure(Strict):
    status: Literal["failed", "cancelled"] = "failed"
    reason: str = Field(min_length=1, max_length=10_000)


class ResultForm(Strict):
    """Form field of a result upload; the file `weights` (safetensors) travels beside it."""

    metrics: Json[dict[str, Any]]


# --- privacy budgets --------------------------------------------------------


class PrivacyBudgetIn(Strict):
    epsilon: float | None = Field(ge=0, description="None removes the budget.")
    data_scientist: EmailStr | None = Field(
        default=None, description="Whose budget; none sets the dataset's budget for everyone."
    )
    network: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="With data_scientist: a network's data scientist (the network's name or "
        "id as this domain joined it), bound on federated jobs and analyses from that network.",
    )


class PrivacyBudgetLine(BaseModel):
    data_scientist: str | None
    network: str | None = Field(default=None, description="The data scientist's network.")
    epsilon: float
    spent: float
    left: float


class PrivacyBudgetOut(BaseModel):
    dataset: str
    spent: float
    budgets: list[PrivacyBudgetLine]


LeasedJob.model_rebuild()
