"""The Python client of a Grid network: find datasets, reach their domains, run associations."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

import requests

from grid_cli.client import API, DomainClient, NodeClient
from grid_cli.http import GridError
from grid_common.network_schemas import (
    AssociationList,
    AssociationOut,
    AssociationStatus,
    DomainList,
    DomainOut,
    IndexedDatasetOut,
    NodeInfo,
    SearchResults,
)
from grid_common.schemas import DatasetSchema

# A domain that does not answer this quickly is reached through the network instead.
DIRECT_PROBE_TIMEOUT: tuple[float, float] = (2.0, 3.0)
Via = Literal["auto", "direct", "network"]


@dataclass(frozen=True)
class NetworkDomain:
    """A domain associated with the network (search hits leave `dataset_count` None)."""

    id: str
    name: str
    url: str
    online: bool
    dataset_count: int | None = None
    last_seen: datetime | None = None

    @classmethod
    def from_wire(cls, info: DomainOut) -> NetworkDomain:
        return cls(info.id, info.name, info.url, info.online, info.dataset_count, info.last_seen)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset's public description as the network indexed it."""

    name: str
    description: str
    tags: list[str]
    schema: DatasetSchema
    row_count: int
    has_mock: bool
    updated_at: datetime

    @classmethod
    def from_wire(cls, info: IndexedDatasetOut) -> DatasetInfo:
        return cls(
            info.name,
            info.description,
            list(info.tags),
            info.dataset_schema,
            info.row_count,
            info.has_mock,
            info.updated_at,
        )

    @property
    def columns(self) -> list[str]:
        return [c.name for c in self.schema.columns]

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class DatasetRef:
    """One search hit: which domain, which dataset, how relevant (higher is better)."""

    domain: NetworkDomain
    dataset: DatasetInfo
    score: float

    def __repr__(self) -> str:
        return (
            f"DatasetRef(domain={self.domain.name!r}, dataset={self.dataset.name!r}, "
            f"score={self.score:.3g})"
        )


class NetworkClient(NodeClient):
    """A connection to a network: anyone may list domains and search; operators sign in."""

    @property
    def node(self) -> NodeInfo:
        """The network's id and public keys."""
        return NodeInfo.model_validate(self.http.request("GET", f"{API}/node").json())

    @property
    def domains(self) -> list[NetworkDomain]:
        """Associated domains: id, name, url, whether online, how many datasets each has."""
        listing = self._get("/domains", DomainList)
        return [NetworkDomain.from_wire(d) for d in listing.items]

    def search(
        self,
        query: str = "",
        *,
        tags: Iterable[str] = (),
        columns: Iterable[str] = (),
        domain: str | NetworkDomain | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[DatasetRef]:
        """Datasets matching `query` (all words; "phrases"; OR; -word), best first.

        `tags` and `columns` narrow to datasets having every one; `domain` to one domain
        (id or name).
        """
        params: dict[str, Any] = {"q": query, "limit": limit, "offset": offset}
        params["tag"] = [tags] if isinstance(tags, str) else list(tags)
        params["column"] = [columns] if isinstance(columns, str) else list(columns)
        if domain is not None:
            params["domain"] = domain.id if isinstance(domain, NetworkDomain) else domain
        results = self._get("/search", SearchResults, params=params)
        return [
            DatasetRef(
                domain=NetworkDomain(
                    hit.domain.id, hit.domain.name, hit.domain.url, hit.domain.online
                ),
                dataset=DatasetInfo.from_wire(hit.dataset),
                score=hit.score,
            )
            for hit in results.items
        ]

    def _resolve(self, domain: str | NetworkDomain) -> NetworkDomain:
        if isinstance(domain, NetworkDomain):
            return domain
        known = self.domains
        for candidate in known:
            if candidate.id == domain:
                return candidate
        named = [d for d in known if d.name == domain]
        if len(named) == 1:
            return named[0]
        if named:
            ids = ", ".join(d.id for d in named)
            raise GridError(0, "ambiguous_domain", f"Several domains are named {domain!r}: {ids}")
        names = ", ".join(d.name for d in known) or "none"
        raise GridError(404, "not_found", f"No domain {domain!r} on this network (known: {names})")

    def reaches_directly(self, domain: str | NetworkDomain) -> bool:
        """Whether this machine reaches the domain at its own URL, and finds it there."""
        target = self._resolve(domain)
        try:
            response = requests.get(f"{target.url}{API}/node", timeout=DIRECT_PROBE_TIMEOUT)
            return response.ok and response.json().get("id") == target.id
        except (requests.RequestException, ValueError, AttributeError):
            return False

    def domain_url(self, domain: str | NetworkDomain, *, via: Via = "auto") -> str:
        """Where to talk to a domain: its own URL when reachable, else through the network."""
        target = self._resolve(domain)
        if via == "direct" or (via == "auto" and self.reaches_directly(target)):
            return target.url
        return f"{self.url}{API}/domains/{quote(target.id, safe='')}"

    def login_domain(
        self,
        domain: str | NetworkDomain,
        email: str,
        password: str,
        *,
        via: Via = "auto",
        **options: Any,
    ) -> DomainClient:
        """Sign in to a domain of this network (by id, name or `NetworkDomain`).

        The client talks to the domain directly when it can, else through the network,
        which forwards the calls and never sees more than the domain's own tokens.
        """
        client = DomainClient(self.domain_url(domain, via=via), **options)
        client.sign_in(email, password)
        return client

    # --- operators -------------------------------------------------------------

    def associations(self, status: AssociationStatus | None = None) -> list[AssociationOut]:
        """Association requests and associated domains (operators only)."""
        params = {"status": status} if status else None
        return self._get("/associations", AssociationList, params=params).items

    def approve(self, association_id: int, reason: str = "") -> AssociationOut:
        path = f"/associations/{int(association_id)}/approve"
        return self._post(path, {"reason": reason}, AssociationOut)

    def reject(self, association_id: int, reason: str = "") -> AssociationOut:
        path = f"/associations/{int(association_id)}/reject"
        return self._post(path, {"reason": reason}, AssociationOut)

    def remove_domain(self, association_id: int) -> None:
        """Remove an associated domain: no more routing to it, its datasets leave the index."""
        self._call("DELETE", f"/associations/{int(association_id)}")
