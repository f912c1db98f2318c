"""A job from the client's side: status, live progress, logs, curves, the released model."""

from __future__ import annotations

import copy
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, overload

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from grid_cli.client.progress import show_progress
from grid_common.schemas import JobEventOut, JobOut, JobStatus
from grid_common.transport import GridError

if TYPE_CHECKING:
    from torch import nn

    from registry.verify import Proof

FINISHED: frozenset[JobStatus] = frozenset({"completed", "failed", "cancelled", "denied"})
RPC_ENV, REGISTRY_ENV = "GRID_CHAIN_RPC_URL", "GRID_REGISTRY_ADDRESS"


def chain_target(
    rpc_url: str | None, registry_address: str | None, offered: str | None, by: str
) -> tuple[str, str]:
    """The chain and registry a proof is read from: the caller's (`rpc_url`,
    `registry_address`), else their configuration ($GRID_CHAIN_RPC_URL,
    $GRID_REGISTRY_ADDRESS). A registry address `offered` by the node being checked (`by`) is
    never taken on its word: the caller confirms it by passing it."""
    url = rpc_url or os.environ.get(RPC_ENV)
    if not url:
        raise ValueError(f"pass rpc_url= or set {RPC_ENV}: the chain holding the proof")
    address = registry_address or os.environ.get(REGISTRY_ENV)
    if address:
        return url, address
    if offered:
        raise ValueError(
            f"{by} says its registry is {offered}, but a proof read from an address the "
            f"checked party supplies proves nothing: set {REGISTRY_ENV} to the registry you "
            f"trust, or confirm this one with registry_address={offered!r}"
        )
    raise ValueError(f"pass registry_address= or set {REGISTRY_ENV}: the registry to check")


class JobSource(Protocol):
    """What a `Job` asks of its domain (`DomainClient` is one); a protocol, so this module
    needs nothing from the client that builds its jobs."""

    def job_info(self, job_id: int) -> JobOut: ...

    def job_events(
        self, job_id: int, *, after: int = 0, kind: str | None = None
    ) -> list[JobEventOut]: ...

    def cancel_job(self, job_id: int) -> JobOut: ...

    def download_result(self, job_id: int, path: str | Path) -> Path: ...


class JobFailed(GridError):
    """A job ended without a result: failed, cancelled or denied."""


class Job:
    """A job on a domain; attributes read the last state fetched, `refresh()` fetches anew."""

    def __init__(
        self,
        info: JobOut,
        client: JobSource,
        model: nn.Module | None = None,
        spec_hash: str | None = None,
    ) -> None:
        self._info, self._client, self._model = info, client, model
        # The hash of what this session submitted, so `verify` checks the domain's word too.
        self._spec_hash = spec_hash
        self._events: list[JobEventOut] = []

    # --- state -----------------------------------------------------------------

    @property
    def id(self) -> int:
        return self._info.id

    @property
    def info(self) -> JobOut:
        return self._info

    @property
    def status(self) -> JobStatus:
        """The job's status, fetched afresh."""
        return self.refresh().info.status

    @property
    def result_status(self) -> str:
        return self._info.result_status

    @property
    def failure_reason(self) -> str | None:
        return self._info.failure_reason

    def refresh(self) -> Job:
        withheld = self._info.metrics_withheld
        self._info = self._client.job_info(self.id)
        if withheld and not self._info.metrics_withheld:
            self._events = []  # released: the domain now shows what it withheld, so read anew
        return self

    def _fetch_events(self) -> list[JobEventOut]:
        if self._info.metrics_withheld:
            self.refresh()  # has the owner released the result since?
        after = self._events[-1].id if self._events else 0
        while True:
            batch = self._client.job_events(self.id, after=after)
            self._events.extend(batch)
            if len(batch) < 1000:
                return self._events
            after = batch[-1].id

    @property
    def history(self) -> list[dict[str, Any]]:
        """Per-epoch progress points of the newest attempt (epoch, loss, accuracy, val_...).

        While the domain withholds metrics (differential privacy, or its owner's setting) the
        points carry only the epoch, until the owner releases the result.
        """
        events = self._fetch_events()
        attempt = max((e.attempt for e in events), default=0)
        return [
            e.data
            for e in events
            if e.kind == "progress" and e.attempt == attempt and e.data.get("phase") == "epoch"
        ]

    @property
    def metrics(self) -> dict[str, Any]:
        """Final metrics once completed; until then the newest progress point."""
        self.refresh()
        if self._info.metrics is not None:
            return dict(self._info.metrics)
        progress = [e.data for e in self._fetch_events() if e.kind == "progress"]
        return dict(progress[-1]) if progress else {}

    def logs(self) -> list[str]:
        """Log lines as `time [attempt n] message`."""
        return [
            f"{e.at:%Y-%m-%d %H:%M:%S} [attempt {e.attempt}] {e.data.get('message', '')}"
            for e in self._fetch_events()
            if e.kind == "log"
        ]

    # --- waiting ---------------------------------------------------------------

    def wait(
        self,
        timeout: float | None = None,
        *,
        progress: bool | None = None,
        poll_interval: float = 0.5,
    ) -> Job:
        """Block until the job finishes; the bar shows epoch, loss and accuracy as they come.

        Raises JobFailed if it failed, was cancelled or denied; TimeoutError past `timeout`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        epochs = int(self._info.plan.get("epochs", 1))
        bar = Progress(
            TextColumn("job {task.fields[job]} · {task.fields[state]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[figures]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=not show_progress(progress),
        )
        with bar:
            task = bar.add_task("", total=epochs, job=self.id, state="", figures="")
            while True:
                self.refresh()
                points = [e.data for e in self._fetch_events() if e.kind == "progress"]
                latest = points[-1] if points else {}
                done = sum(1 for p in points if p.get("phase") == "epoch") if points else 0
                bar.update(
                    task,
                    completed=min(done, epochs),
                    state=self._info.status,
                    figures=figures(latest),
                )
                if self._info.status in FINISHED:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {self.id} is still {self._info.status}")
                time.sleep(poll_interval)
        if self._info.status != "completed":
            reason = self._info.failure_reason or "no reason given"
            raise JobFailed(
                0, f"job_{self._info.status}", f"job {self.id} {self._info.status}: {reason}"
            )
        return self

    # --- actions ---------------------------------------------------------------

    def cancel(self) -> Job:
        self._info = self._client.cancel_job(self.id)
        return self

    def download_result(self, path: str | Path) -> Path:
        """Save the trained weights (safetensors) once the owner released them."""
        return self._client.download_result(self.id, path)

    def result(self, model: nn.Module | None = None) -> nn.Module:
        """The trained model: a copy of the submitted model (or `model`) with the new weights."""
        base = model if model is not None else self._model
        if base is None:
            raise ValueError(
                "this Job was not made by submit_training in this session; pass the model "
                "architecture: job.result(model=MyNet())"
            )
        return module_with_weights(base, self.download_result)

    def verify(
        self,
        rpc_url: str | None = None,
        model_file: str | Path | None = None,
        *,
        registry_address: str | None = None,
    ) -> Proof:
        """Check this job on the registry and return a readable proof (`print(proof.render())`).

        Recomputes the spec hash (of what this session submitted, else the domain's) and the
        hash of the model you hold (`model_file`, else the released weights, downloaded), and
        reads the chain at `rpc_url` (default `$GRID_CHAIN_RPC_URL`) and the registry at
        `registry_address` (default `$GRID_REGISTRY_ADDRESS`; the domain's own word for it is
        refused unless you pass it). `proof.ok` says whether every check passed;
        `proof.problems` says what did not.
        """
        from registry.verify import verify_on_chain

        info = self.refresh().info
        if info.registry_job_id is None:
            raise ValueError(f"job {self.id} is not on a registry: the domain's writes are off")
        url, address = chain_target(
            rpc_url, registry_address, info.registry_address, f"the domain of job {self.id}"
        )
        spec = self._spec_hash or info.spec_hash
        with tempfile.TemporaryDirectory(prefix="grid-verify-") as folder:
            held = Path(model_file) if model_file else None
            if held is None:
                held = self.download_result(Path(folder) / "weights.safetensors")
            return verify_on_chain(url, address, info.registry_job_id, model=held, spec_hash=spec)

    def plot(self, path: str | Path | None = None) -> Any:
        """Training curves (loss; accuracy when measured) per epoch, saved to `path` if given."""
        history = self.history
        if not history:
            raise ValueError(f"job {self.id} has no finished epoch to plot yet")
        if self._info.metrics_withheld:
            raise ValueError(
                f"job {self.id}'s metrics are withheld until the domain's owner releases its result"
            )
        return plot_curves(history, "epoch", "", f"job {self.id}", path)

    def __repr__(self) -> str:
        return f"<Job {self.id} {self._info.status} on {', '.join(self._info.datasets)}>"


def figures(point: dict[str, Any]) -> str:
    parts = []
    if "epoch" in point:
        parts.append(f"epoch {point['epoch']}")
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        if isinstance(point.get(key), int | float):
            parts.append(f"{key} {point[key]:.4f}")
    return " · ".join(parts)


def module_with_weights(base: nn.Module, download: Callable[[Path], Path]) -> nn.Module:
    """A copy of `base` holding the weights `download` saves (safetensors), in eval mode."""
    from safetensors.torch import load_file

    with tempfile.TemporaryDirectory(prefix="grid-result-") as folder:
        state = load_file(str(download(Path(folder) / "weights.safetensors")))
    trained = copy.deepcopy(base)
    trained.load_state_dict(state)
    return trained.eval()


def plot_curves(
    points: list[dict[str, Any]], x: str, ylabel_note: str, title: str, path: str | Path | None
) -> Any:
    """Loss and accuracy (train and validation, where measured) against `x`, one panel each."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [m for m in ("loss", "accuracy") if any(m in p or f"val_{m}" in p for p in points)]
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
    xs = [p[x] for p in points]
    for ax, metric in zip(axes[0], panels, strict=True):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            values = [p.get(key) for p in points]
            if any(v is not None for v in values):
                ax.plot(xs, values, marker="o", label=label)
        ax.set_xlabel(x)
        ax.set_ylabel(f"{metric}{ylabel_note}")
        ax.legend()
    figure.suptitle(title)
    figure.tight_layout()
    if path is not None:
        figure.savefig(path)
        plt.close(figure)
    return figure


class JobCollection(Sequence[Job]):
    """Jobs as a list, with filters by status."""

    def __init__(self, jobs: Iterable[Job]) -> None:
        self._jobs = list(jobs)

    def with_status(self, status: JobStatus) -> JobCollection:
        return JobCollection(j for j in self._jobs if j.info.status == status)

    @property
    def ids(self) -> list[int]:
        return [j.id for j in self._jobs]

    @overload
    def __getitem__(self, key: int) -> Job: ...

    @overload
    def __getitem__(self, key: slice) -> JobCollection: ...

    def __getitem__(self, key: int | slice) -> Job | JobCollection:
        if isinstance(key, slice):
            return JobCollection(self._jobs[key])
        return self._jobs[key]

    def __iter__(self) -> Iterator[Job]:
        return iter(self._jobs)

    def __len__(self) -> int:
        return len(self._jobs)

    def __repr__(self) -> str:
        return f"JobCollection({self._jobs!r})"
