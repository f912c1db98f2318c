"""The Python client of a Grid domain: accounts, datasets and mocks, requests, jobs, workers,
privacy budgets, networks joined, and the audit log."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from grid_cli.client.collections import Dataset, DatasetCollection, Request, RequestCollection
from grid_cli.client.jobs import Job, JobCollection
from grid_cli.client.node import API, NodeClient
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
    UserList,
    UserOut,
    WorkerList,
    WorkerOut,
)

if TYPE_CHECKING:
    from torch import nn


def _request_id(request: int | Request) -> int:
    return request.id if isinstance(request, Request) else int(request)


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
        """Upload a private data file (CSV, Parquet, .npz, safetensors) with its public metadata,
        or a .zip of PNG/JPEG images with a labels.csv (`file,<label>`), which the domain stores
        as one uint8 (N, C, H, W) array.

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
        self._refresh_if_expiring()
        response = self._upload(
            "/datasets", fields, files, progress=progress, description=f"Uploading {data_path.name}"
        )
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
        # The export stack loads on first use, so the `grid` command starts without it.
        from grid_cli.client.export import ModelCheckError
        from grid_cli.client.model_upload import upload_model
        from grid_common.hashes import spec_hash
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
        fields = [("reason", reason), ("plan", plan.model_dump_json())]
        fields += [("datasets", name) for name in names]
        sent = upload_model(
            self,
            "/requests/jobs",
            model,
            features,
            plan,
            labels=labels,
            fields=fields,
            progress=progress,
        )
        spec = spec_hash(
            model_digest=sent.model_digest,
            weights_digest=sent.weights_digest,
            plan=plan,
            datasets=names,
        )
        filed = RequestOut.model_validate(sent.response.json())
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
