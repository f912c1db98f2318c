"""What a domain lists, wrapped for reading: datasets with their mocks, requests with their
decisions, and collections of each that index by position or name.

Each wrapper holds its domain only through the small protocol it calls, so this module needs
nothing from the client that builds it (`DomainClient` fills both protocols).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, overload

from grid_common.schemas import DatasetOut, DatasetSchema, MockSample, RequestOut, RequestStatus

if TYPE_CHECKING:
    from grid_cli.client.mocks import MockData


class MockSource(Protocol):
    """Where a `Dataset` fetches its mock sample: its domain."""

    def mock_sample(self, name: str) -> MockSample: ...


class RequestDesk(Protocol):
    """Where a `Request` is fetched again and decided: its domain."""

    def request(self, request_id: int) -> Request: ...

    def approve(self, request: int | Request, reason: str = "") -> Request: ...

    def deny(self, request: int | Request, reason: str) -> Request: ...


class Dataset:
    """A dataset's public side: metadata, schema and its mock sample (never private rows)."""

    def __init__(self, info: DatasetOut, client: MockSource) -> None:
        self.info = info
        self._client = client
        self._mock: MockData | None = None

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def description(self) -> str:
        return self.info.description

    @property
    def tags(self) -> list[str]:
        return list(self.info.tags)

    @property
    def label(self) -> str | None:
        return self.info.label

    @property
    def format(self) -> str:
        return self.info.format

    @property
    def schema(self) -> DatasetSchema:
        return self.info.dataset_schema

    @property
    def row_count(self) -> int:
        return self.info.dataset_schema.row_count

    @property
    def columns(self) -> list[str]:
        return [c.name for c in self.info.dataset_schema.columns]

    @property
    def citation(self) -> str:
        return self.info.citation

    @property
    def license(self) -> str:
        return self.info.license

    @property
    def size_bytes(self) -> int:
        return self.info.size_bytes

    @property
    def created_at(self) -> datetime:
        return self.info.created_at

    @property
    def mock(self) -> MockData:
        """The mock sample: a DataFrame for tables, a dict of numpy arrays for array datasets."""
        if self._mock is None:
            # pandas loads only when a mock is read, so the `grid` command starts quickly.
            from grid_cli.client.mocks import mock_from_sample

            self._mock = mock_from_sample(self._client.mock_sample(self.name))
        return self._mock

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, format={self.format!r}, rows={self.row_count}, "
            f"columns={self.columns!r}, label={self.label!r}, tags={self.tags!r})"
        )


class DatasetCollection(Sequence[Dataset]):
    """Datasets in name order; index by position or by name (`datasets["digits-a"]`)."""

    def __init__(self, datasets: Iterable[Dataset]) -> None:
        self._items = list(datasets)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self._items]

    @overload
    def __getitem__(self, key: int | str) -> Dataset: ...

    @overload
    def __getitem__(self, key: slice) -> DatasetCollection: ...

    def __getitem__(self, key: int | str | slice) -> Dataset | DatasetCollection:
        if isinstance(key, str):
            for dataset in self._items:
                if dataset.name == key:
                    return dataset
            available = ", ".join(self.names) or "none"
            raise KeyError(f"no dataset named {key!r}; available: {available}")
        if isinstance(key, slice):
            return DatasetCollection(self._items[key])
        return self._items[key]

    def __contains__(self, item: object) -> bool:
        name = item.name if isinstance(item, Dataset) else item
        return any(d.name == name for d in self._items)

    def __iter__(self) -> Iterator[Dataset]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"DatasetCollection({self.names!r})"


class Request:
    """A request for access (or a job) and its decision; `.refresh()` fetches the latest state."""

    def __init__(self, info: RequestOut, client: RequestDesk) -> None:
        self.info = info
        self._client = client

    @property
    def id(self) -> int:
        return self.info.id

    @property
    def status(self) -> RequestStatus:
        return self.info.status

    @property
    def reason(self) -> str | None:
        """Why it was approved or denied (None while pending)."""
        return self.info.decision_reason

    @property
    def request_reason(self) -> str:
        """Why the requester asked."""
        return self.info.reason

    @property
    def kind(self) -> str:
        return self.info.kind

    @property
    def requester(self) -> str:
        return self.info.requester

    @property
    def datasets(self) -> list[str]:
        return list(self.info.datasets)

    @property
    def decided_by(self) -> str | None:
        return self.info.decided_by

    @property
    def decided_at(self) -> datetime | None:
        return self.info.decided_at

    @property
    def auto_approved(self) -> bool:
        return self.info.auto_approved

    @property
    def created_at(self) -> datetime:
        return self.info.created_at

    def refresh(self) -> Request:
        """Fetch this request again; returns itself, now up to date."""
        self.info = self._client.request(self.id).info
        return self

    def approve(self, reason: str = "") -> Request:
        self.info = self._client.approve(self.id, reason=reason).info
        return self

    def deny(self, reason: str) -> Request:
        self.info = self._client.deny(self.id, reason=reason).info
        return self

    def __repr__(self) -> str:
        return (
            f"Request(id={self.id}, kind={self.kind!r}, status={self.status!r}, "
            f"datasets={self.datasets!r}, requester={self.requester!r}, reason={self.reason!r})"
        )


class RequestCollection(Sequence[Request]):
    """Requests in filing order, with `.pending`, `.approved` and `.denied` views."""

    def __init__(self, requests: Iterable[Request]) -> None:
        self._items = list(requests)

    def with_status(self, status: RequestStatus) -> RequestCollection:
        return RequestCollection(r for r in self._items if r.status == status)

    @property
    def pending(self) -> RequestCollection:
        return self.with_status("pending")

    @property
    def approved(self) -> RequestCollection:
        return self.with_status("approved")

    @property
    def denied(self) -> RequestCollection:
        return self.with_status("denied")

    @property
    def ids(self) -> list[int]:
        return [r.id for r in self._items]

    @overload
    def __getitem__(self, key: int) -> Request: ...

    @overload
    def __getitem__(self, key: slice) -> RequestCollection: ...

    def __getitem__(self, key: int | slice) -> Request | RequestCollection:
        if isinstance(key, slice):
            return RequestCollection(self._items[key])
        return self._items[key]

    def __iter__(self) -> Iterator[Request]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"RequestCollection({self._items!r})"
