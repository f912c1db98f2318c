"""Jobs a network runs, from the data scientist's side: rounds, their metrics, the attested
result and its proof on the registry."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from grid_cli.client.jobs import chain_target, figures, module_with_weights, plot_curves
from grid_cli.client.progress import show_progress
from grid_common.federated_schemas import FINISHED_STATUSES, FederatedJobOut, RoundList
from grid_common.network_schemas import NodeInfo
from grid_common.transport import GridError

if TYPE_CHECKING:
    from torch import nn

    from registry.verify import Proof

_STATE = {
    "pending_approval": "waiting for the domains' owners",
    "key_setup": "setting up keys",
    "running": "training",
    "finishing": "waiting for the domains to attest and release",
    "completed": "done",
}


class NetworkJobSource(Protocol):
    """What a `NetworkJob` asks of its network (`NetworkClient` is one); a protocol, so this
    module needs nothing from the client that builds its jobs."""

    def federated_job_info(self, job_id: int) -> FederatedJobOut: ...

    def federated_job_rounds(self, job_id: int) -> RoundList: ...

    def cancel_federated_job(self, job_id: int) -> FederatedJobOut: ...

    def download_federated_result(self, job_id: int, path: str | Path) -> Path: ...

    @property
    def node(self) -> NodeInfo: ...

    def domain_node(self, domain: str) -> NodeInfo: ...


class FederatedJobFailed(GridError):
    """A federated job ended without a result: failed or cancelled."""


class NetworkJob:
    """A job a network runs across domains; attributes read the last state, `refresh()` fetches
    anew. `FederatedJob` trains a model, `AnalyticsJob` computes an analysis."""

    running_label = "training"
    noun = "federated job"

    def __init__(
        self,
        info: FederatedJobOut,
        client: NetworkJobSource,
        *,
        spec_hash: str | None = None,
        bounty: int | str | None = None,
    ) -> None:
        self._info, self._client = info, client
        # The spec hash this client computed from what it submitted (None: not this session).
        self._spec_hash = spec_hash
        # A bounty asked at submission, escrowed by `wait()` once the job is on chain.
        self._bounty = bounty

    @property
    def id(self) -> int:
        return self._info.id

    @property
    def info(self) -> FederatedJobOut:
        return self._info

    @property
    def status(self) -> str:
        return self.refresh().info.status

    def refresh(self) -> Self:
        self._info = self._client.federated_job_info(self.id)
        return self

    def wait(
        self,
        timeout: float | None = None,
        *,
        progress: bool | None = None,
        poll_interval: float = 0.5,
    ) -> Self:
        """Block until the result is available; one bar over the rounds shows their metrics.

        Raises FederatedJobFailed if the job failed or was cancelled; TimeoutError past `timeout`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        labels = {**_STATE, "running": self.running_label}
        bar = Progress(
            TextColumn(f"{self.noun} {{task.fields[job]}} · {{task.fields[state]}}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[figures]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=not show_progress(progress),
        )
        with bar:
            task = bar.add_task("", total=self._info.rounds, job=self.id, state="", figures="")
            while True:
                info = self.refresh().info
                if self._bounty is not None and info.registry_job_id is not None:
                    self.fund_bounty(self._bounty)
                last = info.last_round
                done = last.number - (last.status == "open") if last else 0
                bar.update(
                    task,
                    completed=done,
                    state=labels.get(info.status, info.status),
                    figures=figures(last.metrics if last and last.status == "closed" else {}),
                )
                if info.status in FINISHED_STATUSES:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"federated job {self.id} is still {info.status}")
                time.sleep(poll_interval)
        if self._info.status != "completed":
            reason = self._info.failure_reason or "no reason given"
            raise FederatedJobFailed(
                0, f"job_{self._info.status}", f"federated job {self.id}: {reason}"
            )
        return self

    def cancel(self) -> Self:
        self._info = self._client.cancel_federated_job(self.id)
        return self

    def download_result(self, path: str | Path) -> Path:
        """Save the result (safetensors), once every domain attested the same hash and every
        owner whose data is in it released it."""
        return self._client.download_federated_result(self.id, path)

    def fund_bounty(
        self,
        amount: int | str,
        rpc_url: str | None = None,
        *,
        registry_address: str | None = None,
        key_file: str | Path | None = None,
        timeout: float = 120,
    ) -> str:
        """Escrow a bounty ("0.05 ether", or wei) on this job's chain record, signed with your
        own key (`key_file`, else `$GRID_ETH_PRIVATE_KEY`); returns the transaction hash.

        Waits (up to `timeout` s) for the job to start and the network's record of it to be
        on chain. At finalize the domains that attested the agreed model share it by
        contribution (samples times rounds); a failed job's bounty is yours to reclaim.
        """
        from grid_common.ether import parse_wei
        from registry.bounty import fund_when_open, scientist_account
        from registry.client import RegistryClient

        wei = parse_wei(amount)
        url, address = chain_target(rpc_url, registry_address, None, "the network")
        account = scientist_account(key_file)
        ends = time.monotonic() + timeout
        while (job_id := self.refresh().info.registry_job_id) is None:
            if self._info.status in FINISHED_STATUSES or time.monotonic() > ends:
                raise TimeoutError(f"{self.noun} {self.id} has no chain record to fund yet")
            time.sleep(0.5)
        client = RegistryClient(url, address, account)
        tx_hash = fund_when_open(client, job_id, wei, timeout_s=max(1.0, ends - time.monotonic()))
        self._bounty = None
        return tx_hash

    def verify(
        self,
        rpc_url: str | None = None,
        model_file: str | Path | None = None,
        *,
        registry_address: str | None = None,
        spec_hash: str | None = None,
    ) -> Proof:
        """Check this job on the registry; returns a proof that names each check and its
        result (`print(proof.render())`, `proof.ok`, `proof.problems`).

        The chain is `rpc_url` (default `$GRID_CHAIN_RPC_URL`), the registry
        `registry_address` (default `$GRID_REGISTRY_ADDRESS`): never an address a node
        supplies. Checked: the coordinator is this network's own address (its node info) and
        registered as a network; the participants are exactly the domains that approved (each
        domain's address as the domain itself gives it); each participant attested the hash
        of the model you hold (`model_file`, else the result, downloaded); the rounds are the
        network's, aggregate by aggregate; and the spec hash is what this client computed
        from what it submitted (or `spec_hash`).
        """
        from registry.verify import Expected, verify_on_chain

        info = self.refresh().info
        if info.registry_job_id is None:
            raise ValueError(
                f"{self.noun} {self.id} is not on a registry: the network's writes are off"
            )
        url, address = chain_target(rpc_url, registry_address, None, "the network")
        network = self._client.node
        approved = [p for p in info.participants if p.status == "approved"]
        expected = Expected(
            coordinator=network.eth_address or "none",
            participants={
                p.domain: self._client.domain_node(p.domain_id).eth_address or "none"
                for p in approved
            },
            aggregates=[
                r.aggregate_hash
                for r in self._client.federated_job_rounds(self.id).items
                if r.status == "closed" and r.aggregate_hash
            ],
        )
        with tempfile.TemporaryDirectory(prefix="grid-verify-") as folder:
            held = Path(model_file) if model_file else None
            if held is None:
                held = self.download_result(Path(folder) / "result.safetensors")
            return verify_on_chain(
                url,
                address,
                info.registry_job_id,
                model=held,
                spec_hash=spec_hash or self._spec_hash,
                expected=expected,
            )

    def __repr__(self) -> str:
        domains = ", ".join(p.domain for p in self._info.participants)
        return f"<{type(self).__name__} {self.id} {self._info.status} on {domains}>"


class FederatedJob(NetworkJob):
    """A model trained across domains: its rounds, their metrics, the attested model."""

    def __init__(
        self,
        info: FederatedJobOut,
        client: NetworkJobSource,
        model: nn.Module | None = None,
        *,
        spec_hash: str | None = None,
        bounty: int | str | None = None,
    ) -> None:
        super().__init__(info, client, spec_hash=spec_hash, bounty=bounty)
        self._model = model

    @property
    def history(self) -> list[dict[str, Any]]:
        """Per closed round: its number, the rows behind it, and the sample-weighted metrics."""
        rounds = self._client.federated_job_rounds(self.id)
        return [
            {"round": r.number, "samples": r.samples, **r.metrics}
            for r in rounds.items
            if r.status == "closed"
        ]

    def result(self, model: nn.Module | None = None) -> nn.Module:
        """The trained model: a copy of the submitted model (or `model`) with the final weights."""
        base = model if model is not None else self._model
        if base is None:
            raise ValueError(
                "this FederatedJob was not submitted in this session; pass the architecture: "
                "fl.result(model=MyNet())"
            )
        return module_with_weights(base, self.download_result)

    def plot(self, path: str | Path | None = None) -> Any:
        """Per-round curves of the weighted local metrics, saved to `path` if given."""
        history = self.history
        if not history:
            raise ValueError(f"federated job {self.id} has no closed round to plot yet")
        note = " (weighted over domains)"
        return plot_curves(history, "round", note, f"federated job {self.id}", path)
