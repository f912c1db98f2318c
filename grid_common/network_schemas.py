"""Wire schemas of networks and of network membership, shared by nodes and the client."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field

from grid_common.schemas import DATASET_NAME, DatasetSchema, Password, Strict

NodeKind = Literal["domain", "network"]
AssociationStatus = Literal["pending", "approved", "rejected", "left", "removed"]
MembershipStatus = Literal["pending", "approved", "rejected", "removed", "leaving"]

MAX_PUSHED_DATASETS = 1000


def _node_url(value: str) -> str:
    url = value.strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or any(c.isspace() for c in url):
        raise ValueError("must be an http:// or https:// URL without spaces")
    if "?" in url or "#" in url:
        raise ValueError("must be a base URL, without query or fragment")
    return url


_NODE_URL_PATTERN = r"^https?://[\x21\x22\x24-\x2e\x30-\x3e\x40-\x7e][\x21\x22\x24-\x3e\x40-\x7e]*$"
NodeUrl = Annotated[
    str,
    Field(
        min_length=8,
        max_length=2000,
        # What _node_url accepts, documented for OpenAPI (its messages stay what a caller reads):
        # printable ASCII without spaces, query or fragment, the host right after the scheme.
        json_schema_extra={"pattern": _NODE_URL_PATTERN},
    ),
    AfterValidator(_node_url),
]
PublicKey = Annotated[str, Field(min_length=43, max_length=44, pattern=r"^[A-Za-z0-9_-]+$")]
Tag = Annotated[str, Field(min_length=1, max_length=50)]
EthAddress = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{40}$")]


class NodeInfo(BaseModel):
    """Who a node is: anyone may ask (`GET /api/v1/node`)."""

    id: str
    name: str
    kind: NodeKind
    signing_key: str = Field(description="Ed25519 public key, URL-safe base64.")
    encryption_key: str = Field(description="X25519 public key, URL-safe base64.")
    eth_address: EthAddress | None = Field(
        default=None,
        description="The Ethereum address it signs its registry writes with (None when off).",
    )


# --- association --------------------------------------------------------------


class JoinRequest(Strict):
    """A domain's request to join, signed by it; its signing key travels in the signature."""

    name: str = Field(min_length=1, max_length=100)
    url: NodeUrl = Field(description="Where the network and data scientists reach the domain.")
    encryption_key: PublicKey
    eth_address: EthAddress | None = Field(
        default=None,
        description="The address the domain registered on chain with, when it writes there.",
    )


class AssociationOut(BaseModel):
    id: int
    domain_id: str
    name: str
    url: str
    status: AssociationStatus
    signing_key: str
    encryption_key: str
    requested_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    decision_reason: str | None
    online: bool
    last_seen: datetime | None
    dataset_count: int
    eth_address: str | None = None


class AssociationList(BaseModel):
    items: list[AssociationOut]


class AssociationQuery(Strict):
    status: AssociationStatus | None = None


# --- index --------------------------------------------------------------------


class PublishedDataset(Strict):
    """What a domain tells a network about one dataset, and nothing more."""

    name: str = Field(pattern=DATASET_NAME.pattern)
    description: str = Field(default="", max_length=10_000)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    dataset_schema: DatasetSchema = Field(alias="schema")
    label: str | None = Field(default=None, max_length=200, description="The label column.")
    has_mock: bool

    model_config = ConfigDict(
        extra="forbid", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )


class IndexPush(Strict):
    """Every public dataset of the domain; what is not listed leaves the index."""

    datasets: list[PublishedDataset] = Field(max_length=MAX_PUSHED_DATASETS)


class IndexResult(BaseModel):
    indexed: int
    removed: int


class DomainOut(BaseModel):
    id: str
    name: str
    url: str
    online: bool
    last_seen: datetime | None
    dataset_count: int


class DomainList(BaseModel):
    items: list[DomainOut]


class SearchQuery(Strict):
    q: str = Field(
        default="",
        max_length=500,
        json_schema_extra={"pattern": "^[^\\x00-\\x1f\\x7f]*$"},  # parse_query refuses controls
        description='Words (all must match), "quoted phrases", OR between alternatives, '
        "-word to exclude. Empty: every dataset the filters allow.",
    )
    tag: list[Tag] = Field(default_factory=list, max_length=20, description="Has every tag.")
    column: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=20, description="Schema has every column (any case)."
    )
    domain: str | None = Field(default=None, max_length=100, description="Domain id or name.")
    limit: int = Field(default=20, ge=1, le=100)
    offset: int = Field(default=0, ge=0, le=10_000)


class IndexedDatasetOut(BaseModel):
    name: str
    description: str
    tags: list[str]
    dataset_schema: DatasetSchema = Field(alias="schema")
    label: str | None = None
    row_count: int
    has_mock: bool
    updated_at: datetime

    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )


class DomainRef(BaseModel):
    id: str
    name: str
    url: str
    online: bool


class SearchHit(BaseModel):
    domain: DomainRef
    dataset: IndexedDatasetOut
    score: float = Field(description="Relevance: higher is better; 0 without a query.")


class SearchResults(BaseModel):
    items: list[SearchHit]


# --- accounts -----------------------------------------------------------------

NetworkRole = Literal["operator", "data_scientist"]


class AccountCreate(Strict):
    email: EmailStr
    password: Password
    role: NetworkRole = "operator"


# --- membership (the domain's side) -------------------------------------------


class JoinNetworkIn(Strict):
    url: NodeUrl = Field(description="The network's base URL.")
    domain_url: NodeUrl | None = Field(
        default=None,
        description="How the network reaches this domain; default: GRID_PUBLIC_URL, else the "
        "URL this request came in on.",
    )


class MembershipOut(BaseModel):
    network_id: str
    name: str
    url: str
    status: MembershipStatus
    domain_url: str
    association_id: int | None
    signing_key: str
    encryption_key: str
    requested_at: datetime
    last_push_at: datetime | None
    last_error: str | None


class MembershipList(BaseModel):
    items: list[MembershipOut]
