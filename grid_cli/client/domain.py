"""The Python client of a Grid domain: datasets and mocks, users, requests and the audit log."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar, overload
from urllib.parse import quote

import jwt
from pydantic import BaseModel
from requests import Response

from grid_cli.client.jobs import Job, JobCollection
from grid_cli.client.progress import show_progress, upload_body
from grid_common.network_schemas import MembershipList, MembershipOut
from grid_common.plan import TrainingPlan
from grid_common.registry_schemas import AnchorQueued, RegistryStatus
from grid_common.schemas import (
    ApiKeyList,
    ApiKeyOut,
    AuditEntryOut,
    AuditList,
    AuditVerification,
    DatasetList,
    DatasetOut,
    DatasetSchema,
    Health,
    InviteOut,
    JobEventList,
    JobEventOut,
    JobLimits,
    JobList,
    JobOut,
    JobStatus,
    MockSample,
    PrivacyBudgetOut,
    RequestList,
    RequestOut,
    RequestStatus,
    RoleName,
    Settings,
    TokenPair,
    UserList,
    UserOut,
    WorkerList,
    WorkerOut,
)
from grid_common.transport import DEFAULT_TIMEOUT, GridError, HttpSession

if TYPE_CHECKING:
    from torch import nn

    from grid_cli.client.mocks import MockData
    from grid_cli.client.network import NetworkClient

API = "/api/v1"
# How the SDK names itself to nodes (the worker says grid-worker).
USER_AGENT = "grid-cli"
# Uploads wait longer for the answer: the node inspects the file and builds a mock first.
UPLOAD_TIMEOUT: tuple[float, float] = (5.0, 600.0)
# Refresh ahead of a streaming upload when the access token has less than this left.
UPLOAD_TOKEN_MARGIN_S = 60

Model = TypeVar("Model", bound=BaseModel)
Result = TypeVar("Result")
TokenListener = Callable[[TokenPair], None]


class Dataset:
    """A dataset's public side: metadata, schema and its mock sample (never private rows)."""

    def __init__(self, info: DatasetOut, client: DomainClient) -> None:
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

    def __init__(self, info: RequestOut, client: DomainClient) -> None:
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


def _seconds_left(access_token: str) -> float | None:
    """Seconds until the token's `exp`, read without verifying (only the node can verify)."""
    try:
        claims = jwt.decode(access_token, options={"verify_signature": False})
        return float(claims["exp"]) - time.time()
    except (jwt.InvalidTokenError, KeyError, TypeError, ValueError):
        return None


def _request_id(request: int | Request) -> int:
    return request.id if isinstance(request, Request) else int(request)


class NodeClient:
    """A connection to one Grid node and its sign-in session (tokens or an API key)."""

    def __init__(
        self,
        url: str,
        *,
        access_token: str | None = None,
        refresh_token: str | None = None,
        api_key: str | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        upload_timeout: tuple[float, float] = UPLOAD_TIMEOUT,
        retries: int = 3,
        verify: bool | str = True,
        on_tokens: TokenListener | None = None,
    ) -> None:
        self.http = HttpSession(
            url, product=USER_AGENT, timeout=timeout, retries=retries, verify=verify
        )
        self.upload_timeout = upload_timeout
        self.on_tokens = on_tokens
        self._access_token = access_token
        self._refresh_token = refresh_token
        self._api_key = api_key
        self.http.set_bearer(api_key or access_token)

    # --- connection and tokens -------------------------------------------------

    @property
    def url(self) -> str:
        return self.http.base_url

    @property
    def access_token(self) -> str | None:
        return self._access_token

    @property
    def refresh_token(self) -> str | None:
        return self._refresh_token

    def _use_tokens(self, tokens: TokenPair) -> None:
        self._access_token, self._refresh_token = tokens.access_token, tokens.refresh_token
        self._api_key = None
        self.http.set_bearer(tokens.access_token)
        if self.on_tokens is not None:
            self.on_tokens(tokens)

    def sign_in(self, email: str, password: str) -> UserOut:
        """Exchange email and password for tokens; returns the signed-in account."""
        body = {"email": email, "password": password}
        response = self.http.request("POST", f"{API}/auth/login", json=body)
        self._use_tokens(TokenPair.model_validate(response.json()))
        return self.me

    def refresh_tokens(self) -> None:
        """Trade the refresh token for a new pair (the old refresh token stops working)."""
        if not self._refresh_token:
            raise GridError(401, "no_refresh_token", "No refresh token; sign in again.")
        body = {"refresh_token": self._refresh_token}
        response = self.http.request("POST", f"{API}/auth/refresh", json=body)
        self._use_tokens(TokenPair.model_validate(response.json()))

    def _authorized(self, send: Callable[[], Result]) -> Result:
        """Run `send`; if the access token expired, refresh once and run it again."""
        try:
            return send()
        except GridError as exc:
            if exc.status != 401 or exc.code != "token_expired" or not self._refresh_token:
                raise
        self.refresh_tokens()
        return send()

    def _call(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> Response:
        return self._authorized(
            lambda: self.http.request(method, f"{API}{path}", json=json, params=params)
        )

    def _get(self, path: str, model: type[Model], params: dict[str, Any] | None = None) -> Model:
        return model.model_validate(self._call("GET", path, params=params).json())

    def _post(self, path: str, body: dict[str, Any], model: type[Model]) -> Model:
        # Bodies go as plain JSON: the node validates them and names any problem in a 422.
        return model.model_validate(self._call("POST", path, json=body).json())

    def set_up(self, email: str, password: str) -> UserOut:
        """Create the node's first account (a domain's owner, a network's operator) while it
        has none; no sign-in needed, and the node refuses once one exists."""
        body = {"email": email, "password": password}
        return UserOut.model_validate(self.http.request("POST", f"{API}/setup", json=body).json())

    def health(self) -> Health:
        """The node's liveness answer (no sign-in needed)."""
        return Health.model_validate(self.http.request("GET", "/healthz").json())

    def logout(self) -> None:
        """Revoke this session's refresh token on the node."""
        if self._refresh_token:
            # The body is built per attempt: a refresh on the way rotates the token to revoke.
            self._authorized(
                lambda: self.http.request(
                    "POST", f"{API}/auth/logout", json={"refresh_token": self._refresh_token}
                )
            )
        self._access_token = self._refresh_token = None
        self.http.set_bearer(self._api_key)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    @property
    def me(self) -> UserOut:
        """The signed-in account."""
        return self._get("/auth/me", UserOut)


class DomainClient(NodeClient):
    """A signed-in connection to one domain node."""

    # --- accounts --------------------------------------------------------------

    @property
    def users(self) -> list[UserOut]:
        """Every account on the domain (needs the manage_users permission)."""
        return self._get("/users", UserList).items

    def create_user(self, email: str, password: str, role: RoleName = "data_scientist") -> UserOut:
        body = {"email": email, "password": password, "role": role}
        return self._post("/users", body, UserOut)

    def update_user(
        self, user_id: int, *, role: RoleName | None = None, is_active: bool | None = None
    ) -> UserOut:
        """Change an account's role, or deactivate (`is_active=False`) or reactivate it."""
        body: dict[str, Any] = {}
        if role is not None:
            body["role"] = role
        if is_active is not None:
            body["is_active"] = is_active
        response = self._call("PATCH", f"/users/{int(user_id)}", json=body)
        return UserOut.model_validate(response.json())

    def invite(self, email: str, role: RoleName = "data_scientist") -> InviteOut:
        """Invite someone; they sign up with the returned `.token` (shown only here) in 7 days."""
        return self._post("/invites", {"email": email, "role": role}, InviteOut)

    def sign_up(self, email: str, password: str, invite_token: str | None = None) -> UserOut:
        """Create your own account with an invite's token (or freely, where sign-up is open)."""
        body = {"email": email, "password": password, "invite_token": invite_token}
        return UserOut.model_validate(self.http.request("POST", f"{API}/signup", json=body).json())

    def create_api_key(self, name: str) -> ApiKeyOut:
        """A long-lived key acting as this account; its secret (`.key`) is shown only here."""
        return self._post("/api-keys", {"name": name}, ApiKeyOut)

    @property
    def api_keys(self) -> list[ApiKeyOut]:
        """This account's API keys, revoked ones included (never their secrets)."""
        return self._get("/api-keys", ApiKeyList).items

    def revoke_api_key(self, key_id: int) -> None:
        self._call("DELETE", f"/api-keys/{int(key_id)}")

    # --- datasets --------------------------------------------------------------

    @property
    def datasets(self) -> DatasetCollection:
        """The domain's datasets (public metadata), fetched afresh on each access."""
        listing = self._get("/datasets", DatasetList)
        return DatasetCollection(Dataset(info, self) for info in listing.items)

    def dataset(self, name: str) -> Dataset:
        return Dataset(self._get(f"/datasets/{quote(name, safe='')}", DatasetOut), self)

    def mock_sample(self, name: str) -> MockSample:
        """A dataset's mock sample as it travels (JSON); `Dataset.mock` converts it."""
        return self._get(f"/datasets/{quote(name, safe='')}/mock", MockSample)

    def upload_dataset(
        self,
        name: str,
        file: str | Path,
        *,
        label: str | None = None,
        description: str = "",
        tags: Iterable[str] = (),
        mock: str | Path | None = None,
        citation: str = "",
        license: str = "",
        progress: bool | None = None,
    ) -> Dataset:
        """Upload a private data file (CSV, Parquet, .npz, safetensors) with its public metadata.

        Without `mock`, the domain synthesizes one from column statistics. The bar shows
        only on a terminal unless `progress` says otherwise.
        """
        data_path = Path(file)
        files = [("file", data_path)]
        if mock is not None:
            files.append(("mock", Path(mock)))
        for _, path in files:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such file")
        tag_list = [tags] if isinstance(tags, str) else list(tags)
        fields = [("name", name), ("description", description)]
        fields += [("tags", tag) for tag in tag_list]  # one field per tag, as the server reads
        fields += [("citation", citation), ("license", license)]
        if label is not None:
            fields.append(("label", label))
        draw = show_progress(progress)

        def send() -> Response:
            with upload_body(
                fields, files, progress=draw, description=f"Uploading {data_path.name}"
            ) as body:
                return self.http.request(
                    "POST",
                    f"{API}/datasets",
                    data=body,
                    headers={"Content-Type": body.content_type},
                    timeout=self.upload_timeout,
                )

        # The node may answer 401 before reading a big body, which breaks the stream; so a
        # token about to expire is refreshed before sending rather than after.
        left = _seconds_left(self._access_token) if self._access_token else None
        if self._refresh_token and left is not None and left < UPLOAD_TOKEN_MARGIN_S:
            self.refresh_tokens()
        response = self._authorized(send)
        return Dataset(DatasetOut.model_validate(response.json()), self)

    def download_dataset(self, name: str, path: str | Path) -> Path:
        """Save a dataset's private file to `path` (owner and admin; every read is audited)."""
        return self._download(f"/datasets/{quote(name, safe='')}/data", path)

    def _download(self, api_path: str, path: str | Path) -> Path:
        target = Path(path)
        response = self._authorized(
            lambda: self.http.request("GET", f"{API}{api_path}", stream=True)
        )
        # A transfer cut short must not leave a truncated file under the name asked for.
        partial = target.with_name(f"{target.name}.part")
        try:
            with response, partial.open("wb") as handle:
                for chunk in response.iter_content(1 << 20):
                    handle.write(chunk)
            partial.replace(target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return target

    def delete_dataset(self, name: str) -> None:
        """Delete a dataset, its private file and its mock."""
        self._call("DELETE", f"/datasets/{quote(name, safe='')}")

    # --- requests --------------------------------------------------------------

    def list_requests(self, status: RequestStatus | None = None) -> RequestCollection:
        """Requests you may see (all of them for reviewers), optionally of one status."""
        params = {"status": status} if status else None
        listing = self._get("/requests", RequestList, params=params)
        return RequestCollection(Request(info, self) for info in listing.items)

    @property
    def requests(self) -> RequestCollection:
        """Every request you may see; `.pending` narrows it to those awaiting a decision."""
        return self.list_requests()

    def request(self, request_id: int) -> Request:
        return Request(self._get(f"/requests/{int(request_id)}", RequestOut), self)

    def approve(
        self,
        request: int | Request,
        reason: str = "",
        *,
        limits: JobLimits | None = None,
        release_on_completion: bool = False,
    ) -> Request:
        """Approve a request; a job's approval may set its limits and release it on completion."""
        body: dict[str, Any] = {"reason": reason}
        if limits is not None:
            body["limits"] = limits.model_dump()
        if release_on_completion:
            body["release_on_completion"] = True
        path = f"/requests/{_request_id(request)}/approve"
        return Request(self._post(path, body, RequestOut), self)

    def deny(self, request: int | Request, reason: str) -> Request:
        path = f"/requests/{_request_id(request)}/deny"
        return Request(self._post(path, {"reason": reason}, RequestOut), self)

    # --- settings --------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The domain's settings: sign-up, auto-approval rules, default job limits."""
        return self._get("/settings", Settings)

    def update_settings(self, settings: Settings) -> Settings:
        response = self._call("PUT", "/settings", json=settings.model_dump(mode="json"))
        return Settings.model_validate(response.json())

    # --- jobs ------------------------------------------------------------------

    def submit_training(
        self,
        model: nn.Module,
        dataset: str | Iterable[str],
        plan: TrainingPlan | dict[str, Any],
        reason: str,
        *,
        progress: bool | None = None,
    ) -> Job:
        """Ask to train `model` on datasets of this domain; returns the job (pending approval).

        The model is checked first on the first dataset's mock sample: a few rows go through
        it and the plan's loss, so a shape mismatch fails here, not on the domain. Then it is
        exported in train mode (`torch.export`, no pickle) with its weights as safetensors.
        """
        from grid_cli.client.export import ModelCheckError, dry_run, export_model
        from grid_common.hashes import spec_hash_of_files
        from grid_common.training_data import TrainingDataError, training_arrays

        names = [dataset] if isinstance(dataset, str) else list(dataset)
        if not names:
            raise ValueError("name at least one dataset to train on")
        plan = plan if isinstance(plan, TrainingPlan) else TrainingPlan.model_validate(plan)
        first = self.dataset(names[0])
        if first.label is None:
            raise ModelCheckError(f"dataset {first.name!r} has no label column to train against")
        try:
            features, labels = training_arrays(first.mock, first.label)
        except TrainingDataError as exc:
            raise ModelCheckError(f"dataset {first.name!r} cannot train a model: {exc}") from None
        dry_run(model, features, labels, plan)
        exported = export_model(model, features, dp=plan.dp is not None)
        with exported.folder:
            spec = spec_hash_of_files(exported.program, exported.weights, plan=plan, datasets=names)
            fields = [("reason", reason), ("plan", plan.model_dump_json())]
            fields += [("datasets", name) for name in names]
            files = [("model", exported.program), ("weights", exported.weights)]

            def send() -> Response:
                with upload_body(
                    fields, files, progress=show_progress(progress), description="Sending model"
                ) as body:
                    return self.http.request(
                        "POST",
                        f"{API}/requests/jobs",
                        data=body,
                        headers={"Content-Type": body.content_type},
                        timeout=self.upload_timeout,
                    )

            response = self._authorized(send)
        filed = RequestOut.model_validate(response.json())
        return Job(self.job_info(filed.id), self, model, spec)

    def job_info(self, job_id: int) -> JobOut:
        return self._get(f"/jobs/{int(job_id)}", JobOut)

    def job(self, job_id: int, model: nn.Module | None = None) -> Job:
        """A job by id; pass the model's architecture to get `result()` as a module."""
        return Job(self.job_info(job_id), self, model)

    def list_jobs(self, status: JobStatus | None = None) -> JobCollection:
        params = {"status": status} if status else None
        listing = self._get("/jobs", JobList, params=params)
        return JobCollection(Job(info, self) for info in listing.items)

    @property
    def jobs(self) -> JobCollection:
        """Jobs you may see: all of them for reviewers, your own otherwise."""
        return self.list_jobs()

    def job_events(
        self, job_id: int, *, after: int = 0, kind: str | None = None
    ) -> list[JobEventOut]:
        params: dict[str, Any] = {"after": after}
        if kind:
            params["kind"] = kind
        return self._get(f"/jobs/{int(job_id)}/events", JobEventList, params=params).items

    def cancel_job(self, job_id: int) -> JobOut:
        return JobOut.model_validate(self._call("POST", f"/jobs/{int(job_id)}/cancel").json())

    def release(self, job_id: int | Job) -> JobOut:
        """Release a job's held result to its data scientist (owner and admin)."""
        ident = job_id.id if isinstance(job_id, Job) else int(job_id)
        return JobOut.model_validate(self._call("POST", f"/jobs/{ident}/release").json())

    def download_result(self, job_id: int, path: str | Path) -> Path:
        """Save a job's trained weights (safetensors) to `path`."""
        return self._download(f"/jobs/{int(job_id)}/result", path)

    # --- workers and privacy budgets -------------------------------------------

    @property
    def workers(self) -> list[WorkerOut]:
        """Registered workers with status, last heartbeat and current job."""
        return self._get("/workers", WorkerList).items

    def add_worker(self, name: str) -> WorkerOut:
        """Register a worker; its token (`.token`) is shown only here."""
        return self._post("/workers", {"name": name}, WorkerOut)

    def revoke_worker(self, worker_id: int) -> None:
        self._call("DELETE", f"/workers/{int(worker_id)}")

    def privacy_budget(self, dataset: str) -> PrivacyBudgetOut:
        """A dataset's epsilon budgets with what is spent and left."""
        return self._get(f"/datasets/{quote(dataset, safe='')}/privacy-budget", PrivacyBudgetOut)

    def set_privacy_budget(
        self,
        dataset: str,
        epsilon: float | None,
        *,
        data_scientist: str | None = None,
        network: str | None = None,
    ) -> PrivacyBudgetOut:
        """Cap the epsilon jobs may spend on a dataset (or one data scientist's: a local account,
        or with `network` a network's data scientist); None lifts it."""
        body = {"epsilon": epsilon, "data_scientist": data_scientist, "network": network}
        response = self._call(
            "PUT", f"/datasets/{quote(dataset, safe='')}/privacy-budget", json=body
        )
        return PrivacyBudgetOut.model_validate(response.json())

    # --- networks --------------------------------------------------------------

    def join_network(self, url: str, *, domain_url: str | None = None) -> MembershipOut:
        """Ask the network at `url` to take this domain in (the owner only).

        It stays pending until the network's operator decides; then the domain publishes
        its datasets' public metadata there by itself. `domain_url` is how the network
        reaches this domain (default: the domain's GRID_PUBLIC_URL, else this client's URL).
        """
        body: dict[str, Any] = {"url": url}
        if domain_url is not None:
            body["domain_url"] = domain_url
        return self._post("/networks", body, MembershipOut)

    @property
    def networks(self) -> list[MembershipOut]:
        """Networks this domain belongs to or asked to join, with their status."""
        return self._get("/networks", MembershipList).items

    def leave_network(self, network_id: str) -> MembershipOut | None:
        """Leave a network; returns the membership while the network cannot be told yet."""
        response = self._call("DELETE", f"/networks/{quote(network_id, safe='')}")
        if response.status_code == 204:
            return None
        return MembershipOut.model_validate(response.json())

    # --- audit -----------------------------------------------------------------

    def audit_log(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[AuditEntryOut]:
        """Audit entries in order; `action` matches by prefix (`"datasets."`)."""
        params: dict[str, Any] = {"after": after, "limit": limit}
        if actor:
            params["actor"] = actor
        if action:
            params["action"] = action
        return self._get("/audit", AuditList, params=params).items

    def verify_audit(self) -> AuditVerification:
        """Recompute the audit log's hash chain on the node; names the first broken entry."""
        return self._get("/audit/verify", AuditVerification)

    def registry_status(self) -> RegistryStatus:
        """Whether the domain records on chain, its Ethereum address and its outbox."""
        return self._get("/registry", RegistryStatus)

    def anchor_audit_log(self) -> AnchorQueued:
        """Have the domain anchor its audit log's head hash on chain (queued, sent shortly)."""
        return self._post("/registry/anchor", {}, AnchorQueued)


def login(url: str, email: str, password: str, **options: Any) -> DomainClient:
    """Sign in to a domain with email and password; the client refreshes its token itself."""
    client = DomainClient(url, **options)
    client.sign_in(email, password)
    return client


def login_network(url: str, email: str, password: str, **options: Any) -> NetworkClient:
    """Sign in to a network (an operator, or a data scientist who runs federated jobs)."""
    from grid_cli.client.network import NetworkClient

    client = NetworkClient(url, **options)
    if client.health().kind != "network":
        client.close()
        raise ValueError(f"{url} is a domain: use grid.login(url, email, password)")
    client.sign_in(email, password)
    return client


@overload
def connect(
    url: str,
    api_key: str,
    *,
    access_token: str | None = None,
    refresh_token: str | None = None,
    **options: Any,
) -> DomainClient: ...


@overload
def connect(
    url: str,
    api_key: None = None,
    *,
    access_token: str,
    refresh_token: str | None = None,
    **options: Any,
) -> DomainClient: ...


@overload
def connect(
    url: str,
    api_key: None = None,
    *,
    access_token: None = None,
    refresh_token: str,
    **options: Any,
) -> DomainClient: ...


@overload
def connect(
    url: str,
    api_key: None = None,
    *,
    access_token: None = None,
    refresh_token: None = None,
    **options: Any,
) -> NetworkClient: ...


def connect(
    url: str,
    api_key: str | None = None,
    *,
    access_token: str | None = None,
    refresh_token: str | None = None,
    **options: Any,
) -> DomainClient | NetworkClient:
    """Connect to a domain with an API key (or saved tokens), checked against it at once;
    or, with no credentials, to a network, which anyone may search."""
    if not (api_key or access_token or refresh_token):
        from grid_cli.client.network import NetworkClient

        network = NetworkClient(url, **options)
        if network.health().kind == "network":
            return network
        network.close()
        raise ValueError(
            f"{url} is a domain: connect() needs api_key= (or access_token=/refresh_token=); "
            "use grid.login(url, email, password) to sign in with a password"
        )
    client = DomainClient(
        url, api_key=api_key, access_token=access_token, refresh_token=refresh_token, **options
    )
    if not (api_key or access_token):
        client.refresh_tokens()
    _ = client.me
    return client
