"""The Python client of a Grid network: find datasets, reach their domains, run associations."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import requests
from pydantic import ValidationError

from grid_cli.client.analytics import Analysis, AnalyticsJob
from grid_cli.client.domain import DomainClient
from grid_cli.client.federated import FederatedJob
from grid_cli.client.node import API, NodeClient
from grid_common.analytics.plan import AnalyticsDp, AnalyticsError, ExactModel
from grid_common.analytics_compatibility import PublishedTarget, resolve_plan
from grid_common.ether import parse_wei
from grid_common.federated_schemas import (
    AnalyticsSpec,
    CkksParamsIn,
    DatasetTarget,
    FederatedJobList,
    FederatedJobOut,
    FederatedSpec,
    RoundList,
)
from grid_common.he import SecureAggregation
from grid_common.job_specs import analytics_spec_hash, federated_spec_hash
from grid_common.network_schemas import (
    AssociationList,
    AssociationOut,
    AssociationStatus,
    DomainList,
    DomainOut,
    IndexedDatasetOut,
    NetworkRole,
    NodeInfo,
    SearchResults,
)
from grid_common.plan import TrainingPlan
from grid_common.schemas import DatasetSchema, UserList, UserOut
from grid_common.strategy import Strategy
from grid_common.transport import GridError

if TYPE_CHECKING:
    from torch import nn

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
    label: str | None = None

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
            info.label,
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

    def association(self, association_id: int) -> AssociationOut:
        """One association: the domain's keys, its status and who decided (operators only)."""
        return self._get(f"/associations/{int(association_id)}", AssociationOut)

    def approve(self, association_id: int, reason: str = "") -> AssociationOut:
        path = f"/associations/{int(association_id)}/approve"
        return self._post(path, {"reason": reason}, AssociationOut)

    def reject(self, association_id: int, reason: str = "") -> AssociationOut:
        path = f"/associations/{int(association_id)}/reject"
        return self._post(path, {"reason": reason}, AssociationOut)

    def create_account(
        self, email: str, password: str, role: NetworkRole = "data_scientist"
    ) -> UserOut:
        """Add an account: a data scientist (who may run federated jobs) or an operator."""
        return self._post(
            "/accounts", {"email": email, "password": password, "role": role}, UserOut
        )

    def accounts(self) -> list[UserOut]:
        return self._get("/accounts", UserList).items

    def remove_domain(self, association_id: int) -> None:
        """Remove an associated domain: no more routing to it, its datasets leave the index."""
        self._call("DELETE", f"/associations/{int(association_id)}")

    # --- federated training (data scientists with a network account) --------------------------

    def federated_training(
        self,
        model: nn.Module,
        datasets: Iterable[DatasetRef | tuple[str, str]],
        plan: TrainingPlan | dict[str, Any],
        *,
        rounds: int = 10,
        min_domains: int | None = None,
        secure_aggregation: SecureAggregation = "ckks",
        strategy: Strategy = "fedavg",
        mu: float = 0.0,
        server_lr: float | None = None,
        momentum: float | None = None,
        beta1: float | None = None,
        beta2: float | None = None,
        tau: float | None = None,
        fraction: float = 1.0,
        min_sample: int | None = None,
        round_timeout: float = 300.0,
        ckks: dict[str, Any] | None = None,
        reason: str = "",
        example_input: Any = None,
        progress: bool | None = None,
        bounty: int | str | None = None,
    ) -> FederatedJob:
        """Train `model` across the domains of `datasets` (search hits or (domain, dataset)).

        Every round each domain trains `plan.epochs` local epochs from the global model and
        sends its update encrypted (CKKS) through its domain; the network sums them without a
        key. The model is checked on a zero batch shaped like the first dataset's rows (or on
        `example_input`) and exported in train mode before anything is sent.

        `strategy` is "fedavg", "fedprox" (with `mu`), or a server optimizer stepped on each
        round's average by every domain: "fedavgm" (`server_lr`, `momentum`), "fedadam" and
        "fedyogi" (`server_lr`, `beta1`, `beta2`, `tau`), "fedadagrad" (`server_lr`, `beta1`,
        `tau`); unset hyperparameters take their defaults. `fraction` below 1 samples that
        share of the domains each round (at least `min_sample`), drawn from a seed the network
        picks (docs/federated.md).

        `bounty` ("0.05 ether", or wei) is escrowed on the job's chain record from your own
        key (`$GRID_ETH_PRIVATE_KEY`) by `wait()` once the job is on chain, or by
        `fl.fund_bounty(...)`; the domains share it by contribution (docs/registry.md).
        """
        import numpy as np

        # The export stack loads on first use, so the `grid` command starts without it.
        from grid_cli.client.export import ModelCheckError
        from grid_cli.client.model_upload import upload_model
        from grid_common.training_data import TrainingDataError, example_features

        targets = list(datasets)
        if not targets:
            raise ValueError("name at least one dataset to train on")
        if bounty is not None:
            parse_wei(bounty)  # a malformed amount fails before anything is sent
        plan = plan if isinstance(plan, TrainingPlan) else TrainingPlan.model_validate(plan)
        if example_input is None:
            first = targets[0]
            if not isinstance(first, DatasetRef):
                raise ValueError(
                    "pass example_input= (a batch of rows) with (domain, dataset) pairs"
                )
            if first.dataset.label is None:
                raise ModelCheckError(f"dataset {first.dataset.name!r} publishes no label column")
            try:
                example_input = example_features(first.dataset.schema, first.dataset.label)
            except TrainingDataError as exc:
                raise ModelCheckError(f"dataset {first.dataset.name!r}: {exc}") from None
        features = np.asarray(example_input, dtype=np.float32)
        spec = FederatedSpec(
            plan=plan,
            datasets=_targets(targets),
            rounds=rounds,
            strategy=strategy,
            mu=mu,
            server_lr=server_lr,
            momentum=momentum,
            beta1=beta1,
            beta2=beta2,
            tau=tau,
            fraction=fraction,
            min_sample=min_sample,
            min_domains=min_domains,
            round_timeout=round_timeout,
            secure_aggregation=secure_aggregation,
            ckks=CkksParamsIn.model_validate(ckks or {}),
            reason=reason,
        )
        if (problem := spec.peer_problem()) is not None:
            raise ValueError(problem)  # what the network would refuse, said before uploading
        sent = upload_model(
            self,
            "/fl/jobs",
            model,
            features,
            plan,
            labels=None,
            fields=[("spec", spec.model_dump_json())],
            progress=progress,
        )
        info = FederatedJobOut.model_validate(sent.response.json())
        # Computed here from what was sent, so `fl.verify()` checks the network's record of it;
        # with the sampling seed the network drew (a client cannot choose it).
        digest = federated_spec_hash(
            spec.model_copy(update={"sample_seed": info.sample_seed}),
            model_digest=sent.model_digest,
            weights_digest=sent.weights_digest,
            targets=_target_ids(spec.datasets, info),
        )
        return FederatedJob(info, self, model, spec_hash=digest, bounty=bounty)

    # --- federated analytics ----------------------------------------------------------------

    def submit_analysis(
        self,
        datasets: Iterable[DatasetRef | tuple[str, str]],
        *,
        statistics: Iterable[str] = (),
        model: ExactModel | None = None,
        columns: Iterable[str] | None = None,
        label: str | None = None,
        dp: AnalyticsDp | dict[str, Any] | None = None,
        alpha: float = 1.0,
        var_smoothing: float = 1e-9,
        min_domains: int | None = None,
        round_timeout: float = 300.0,
        secure_aggregation: SecureAggregation = "ckks",
        ckks: dict[str, Any] | None = None,
        reason: str = "",
    ) -> AnalyticsJob:
        """Ask the domains of `datasets` for statistics or one exact model; returns at once.

        With search hits, the request is checked against their published schemas before
        anything is sent (the network checks again); errors name every difference.
        """
        targets = list(datasets)
        try:
            spec = AnalyticsSpec(
                datasets=_targets(targets),
                statistics=list(statistics),
                model=model,
                columns=list(columns) if columns is not None else None,
                label=label,
                dp=AnalyticsDp.model_validate(dp) if isinstance(dp, dict) else dp,
                alpha=alpha,
                var_smoothing=var_smoothing,
                min_domains=min_domains,
                round_timeout=round_timeout,
                secure_aggregation=secure_aggregation,
                ckks=CkksParamsIn.model_validate(ckks or {}),
                reason=reason,
            )
        except ValidationError as exc:
            raise AnalyticsError.from_validation(exc) from None
        if (problem := spec.peer_problem()) is not None:
            raise AnalyticsError(problem)
        plan = None
        if all(isinstance(t, DatasetRef) for t in targets):
            published = [
                PublishedTarget(t.domain.name, t.dataset.name, t.dataset.schema, t.dataset.label)
                for t in targets
                if isinstance(t, DatasetRef)
            ]
            plan = resolve_plan(spec, published)
        info = self._post("/fl/analytics", spec.model_dump(mode="json"), FederatedJobOut)
        digest = None
        if plan is not None:  # the plan as resolved here, from the published schemas
            digest = analytics_spec_hash(spec, plan, targets=_target_ids(spec.datasets, info))
        return AnalyticsJob(info, self, spec_hash=digest)

    def analyze(
        self,
        datasets: Iterable[DatasetRef | tuple[str, str]],
        stats: Iterable[str],
        *,
        timeout: float | None = None,
        progress: bool | None = None,
        **options: Any,
    ) -> Analysis:
        """Statistics over the rows of every dataset together, computed from encrypted sums.

        `stats`: count, sum, mean, var, std, cov, corr, class_count, class_mean, and
        histograms `hist:COLUMN:LOW:HIGH:BINS`. Waits for every owner's approval and release;
        `options` are those of `submit_analysis` (columns, label, dp, min_domains, ...).
        """
        job = self.submit_analysis(datasets, statistics=stats, **options)
        result: Analysis = job.wait(timeout, progress=progress).result()
        return result

    def fit_exact(
        self,
        model: ExactModel,
        datasets: Iterable[DatasetRef | tuple[str, str]],
        *,
        timeout: float | None = None,
        progress: bool | None = None,
        **options: Any,
    ) -> Any:
        """A scikit-learn estimator equal to fitting `model` on the pooled rows, from sums.

        `model`: "gaussian_nb", "nearest_centroid", "ridge" (with `alpha`) or "ols". Waits for
        every owner's approval and release; `options` are those of `submit_analysis`.
        """
        job = self.submit_analysis(datasets, model=model, **options)
        return job.wait(timeout, progress=progress).result()

    # --- every job the network runs --------------------------------------------------------

    def federated_job_info(self, job_id: int) -> FederatedJobOut:
        return self._get(f"/fl/jobs/{int(job_id)}", FederatedJobOut)

    def domain_node(self, domain: str | NetworkDomain) -> NodeInfo:
        """A domain's own node info (its id, keys and Ethereum address), asked of the domain
        itself (through the network when not reachable directly); its id must match."""
        target = self._resolve(domain)
        response = requests.get(f"{self.domain_url(target)}{API}/node", timeout=10)
        response.raise_for_status()
        info = NodeInfo.model_validate(response.json())
        if info.id != target.id:
            raise GridError(0, "wrong_node", f"{target.name} answered as node {info.id}")
        return info

    def federated_job_rounds(self, job_id: int) -> RoundList:
        """A federated job's rounds: their status, the rows behind them, their metrics."""
        return self._get(f"/fl/jobs/{int(job_id)}/rounds", RoundList)

    def federated_job(
        self, job_id: int, model: nn.Module | None = None
    ) -> FederatedJob | AnalyticsJob:
        """A job by id; for training, pass the architecture to get `result()` as a module."""
        return self._job(self.federated_job_info(job_id), model)

    def federated_jobs(self) -> list[FederatedJob | AnalyticsJob]:
        """Your federated jobs and analyses (every one, for operators), newest first."""
        listing = self._get("/fl/jobs", FederatedJobList)
        return [self._job(info) for info in listing.items]

    def _job(
        self, info: FederatedJobOut, model: nn.Module | None = None
    ) -> FederatedJob | AnalyticsJob:
        if info.kind == "analytics":
            return AnalyticsJob(info, self)
        return FederatedJob(info, self, model)

    def cancel_federated_job(self, job_id: int) -> FederatedJobOut:
        return self._post(f"/fl/jobs/{int(job_id)}/cancel", {}, FederatedJobOut)

    def download_federated_result(self, job_id: int, path: str | Path) -> Path:
        """Save a federated job's result (safetensors) to `path`: a training job's final
        weights, or an analysis's released figures."""
        target = Path(path)
        response = self._authorized(
            lambda: self.http.request("GET", f"{API}/fl/jobs/{int(job_id)}/result", stream=True)
        )
        with response, target.open("wb") as handle:
            for chunk in response.iter_content(1 << 20):
                handle.write(chunk)
        return target


def _target_ids(targets: list[DatasetTarget], info: FederatedJobOut) -> list[tuple[str, str]]:
    """Each target as (domain id, dataset): a domain named by name is the participant of
    that name in the job."""
    ids = {p.domain: p.domain_id for p in info.participants}
    return [(ids.get(t.domain, t.domain), t.dataset) for t in targets]


def _targets(targets: list[DatasetRef | tuple[str, str]]) -> list[DatasetTarget]:
    return [
        DatasetTarget(domain=t.domain.id, dataset=t.dataset.name)
        if isinstance(t, DatasetRef)
        else DatasetTarget(domain=t[0], dataset=t[1])
        for t in targets
    ]
