"""Jobs a network runs, from the data scientist's side: rounds, their metrics, the attested
result."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from grid_cli.client.jobs import figures, module_with_weights, plot_curves
from grid_cli.client.progress import show_progress
from grid_common.federated_schemas import FINISHED_STATUSES, FederatedJobOut, RoundList
from grid_common.transport import GridError

if TYPE_CHECKING:
    from torch import nn

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


class FederatedJobFailed(GridError):
    """A federated job ended without a result: failed or cancelled."""


class NetworkJob:
    """A job a network runs across domains; attributes read the last state, `refresh()` fetches
    anew. `FederatedJob` trains a model, `AnalyticsJob` computes an analysis."""

    running_label = "training"
    noun = "federated job"

    def __init__(self, info: FederatedJobOut, client: NetworkJobSource) -> None:
        self._info, self._client = info, client

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

    def __repr__(self) -> str:
        domains = ", ".join(p.domain for p in self._info.participants)
        return f"<{type(self).__name__} {self.id} {self._info.status} on {domains}>"


class FederatedJob(NetworkJob):
    """A model trained across domains: its rounds, their metrics, the attested model."""

    def __init__(
        self, info: FederatedJobOut, client: NetworkJobSource, model: nn.Module | None = None
    ) -> None:
        super().__init__(info, client)
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
