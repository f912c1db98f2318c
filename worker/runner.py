"""The worker's loop: lease a job, fetch its inputs, train in a limited child, report, repeat."""

from __future__ import annotations

import itertools
import logging
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from grid_common import he
from grid_common.schemas import LeasedDataset, LeasedJob
from grid_common.transport import GridError
from worker.analytics import AnalyticsRun
from worker.child import ChildError, WarmChild
from worker.domain_api import DomainWorkerApi
from worker.federated import FederatedRun
from worker.spec import DataFile, TrainingEvent, TrainingLimits, TrainingOutcome, TrainingSpec

log = logging.getLogger("grid.worker")

_EVENT_FLUSH_S = 0.5
# How often a worker waiting for a job checks whether it was told to stop.
_STOP_CHECK_S = 0.1
# Answers other than a refusal (a 5xx while the domain restarts) are tried this many times.
_DELIVERY_TRIES = 5
_DELIVERY_BACKOFF_MAX_S = 10.0


class WorkerRevoked(Exception):
    """The domain no longer accepts this worker's token."""


@dataclass
class WorkerOptions:
    """How a worker runs: where it keeps files, how it asks for work, which device.

    Each lease request waits at the domain up to `lease_wait_s` for a job (a long poll; the
    domain may wait less), so a new job starts at once. A request answered sooner than
    `poll_interval_s` with no job (a domain that does not wait, or an error) is followed by a
    pause to make up the interval.
    """

    work_dir: Path
    poll_interval_s: float = 2.0
    lease_wait_s: float = 20.0
    device: str = "cpu"
    host: str = ""


class _Attempt:
    """One leased attempt: forwards events in batches and keeps the lease alive meanwhile."""

    def __init__(self, api: DomainWorkerApi, leased: LeasedJob) -> None:
        self.api, self.leased = api, leased
        self.cancelled = threading.Event()
        self.lease_lost = threading.Event()
        self._done = threading.Event()
        self._pending: list[TrainingEvent] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._report, name="grid-worker-report")

    def __enter__(self) -> _Attempt:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.flush()

    def on_event(self, event: TrainingEvent) -> None:
        with self._lock:
            self._pending.append(event)

    def should_stop(self) -> bool:
        return self.cancelled.is_set() or self.lease_lost.is_set()

    def flush(self) -> None:
        with self._lock:
            events, self._pending = self._pending, []
        for start in range(0, len(events), 1000):
            try:
                self.api.send_events(
                    self.leased.job_id, self.leased.attempt, events[start : start + 1000]
                )
            except GridError as exc:
                self._on_error(exc, "progress report")
                return

    def _on_error(self, exc: GridError, what: str) -> None:
        if exc.code == "lease_lost" or exc.status == 401:
            self.lease_lost.set()
        log.warning("%s for job %s failed: %s", what, self.leased.job_id, exc)

    def _report(self) -> None:
        heartbeat_every = max(self.leased.lease_seconds / 3, _EVENT_FLUSH_S)
        since_heartbeat = heartbeat_every
        while not self._done.wait(_EVENT_FLUSH_S):
            self.flush()
            since_heartbeat += _EVENT_FLUSH_S
            if since_heartbeat < heartbeat_every:
                continue
            since_heartbeat = 0.0
            try:
                answer = self.api.heartbeat(self.leased.job_id, self.leased.attempt)
            except GridError as exc:
                self._on_error(exc, "heartbeat")
                continue
            if answer.cancel:
                self.cancelled.set()


class Worker:
    """Takes jobs from one domain until stopped; a failed job never stops the worker."""

    def __init__(self, api: DomainWorkerApi, options: WorkerOptions) -> None:
        self.api, self.options = api, options
        self.host = options.host or socket.gethostname()
        self.cache = options.work_dir / "datasets"
        self.cache.mkdir(parents=True, exist_ok=True)
        self.stop = threading.Event()

    def run(self, stop: threading.Event) -> None:
        """Lease and run jobs until `stop` is set; raises WorkerRevoked if the token is revoked."""
        self.stop = stop
        child = WarmChild.start()
        try:
            while not stop.is_set():
                asked = time.monotonic()
                leased = self._lease()
                if leased is None:
                    stop.wait(max(0.0, self.options.poll_interval_s - (time.monotonic() - asked)))
                    continue
                self.run_job(leased, child)
                if not _is_analysis(leased):
                    child = WarmChild.start()  # every training job gets a fresh process
        finally:
            child.kill()

    def _lease(self) -> LeasedJob | None:
        """Ask for a job; None when there is none yet, or the worker is told to stop meanwhile.

        The long poll runs in a thread of its own, so that a stop does not wait for it: the
        process exits, and the domain, seeing the connection closed, hands the job to no one.
        """
        answer: list[LeasedJob | GridError | None] = []

        def ask() -> None:
            try:
                answer.append(self.api.lease(self.host, self.options.lease_wait_s))
            except GridError as exc:
                answer.append(exc)

        asking = threading.Thread(target=ask, name="grid-worker-lease", daemon=True)
        asking.start()
        while asking.is_alive() and not self.stop.is_set():
            asking.join(_STOP_CHECK_S)
        result = answer[0] if answer else None
        if not isinstance(result, GridError):
            return result
        if result.status == 401:
            raise WorkerRevoked(f"{self.api.url} refused this worker's token: {result}") from result
        log.warning("could not lease a job from %s: %s", self.api.url, result)
        return None

    def run_job(self, leased: LeasedJob, child: WarmChild) -> TrainingOutcome | None:
        """Run one attempt and report how it ended; None when the lease was lost on the way."""
        job_dir = self.options.work_dir / f"job-{leased.job_id}-{leased.attempt}"
        job_dir.mkdir(parents=True, exist_ok=True)
        log.info("job %s attempt %s: started", leased.job_id, leased.attempt)
        try:
            with _Attempt(self.api, leased) as attempt:
                outcome = self._attempt(leased, job_dir, child, attempt)
                lost = attempt.lease_lost.is_set()
            if outcome is None:
                return None
            if lost:
                log.warning("job %s attempt %s: lease lost, result dropped", *_ids(leased))
                return None
            if not self._report(leased, outcome):
                return None
            log.info("job %s attempt %s: %s", leased.job_id, leased.attempt, outcome.status)
            return outcome
        finally:
            shutil.rmtree(job_dir, ignore_errors=True)

    def _attempt(
        self, leased: LeasedJob, job_dir: Path, child: WarmChild, attempt: _Attempt
    ) -> TrainingOutcome | None:
        """How the attempt ended; None when the fault is the worker's, not the job's."""
        if _is_analysis(leased):
            # An analysis runs no submitted model: the ready training process waits for the
            # next job that does.
            return self._analyse(leased, job_dir, attempt)
        try:
            spec = self._prepare(leased, job_dir)
        except (GridError, ValueError, OSError) as exc:
            child.kill()
            return TrainingOutcome("failed", f"could not fetch the job's inputs: {exc}")
        try:
            return self._train(leased, spec, child, attempt)
        except ChildError as exc:
            # The worker's own fault, not the job's: let the lease run out, so the job goes
            # back to the queue for another attempt.
            log.error("job %s: training process failed to start: %s", leased.job_id, exc)
            return None

    def _train(
        self, leased: LeasedJob, spec: TrainingSpec, child: WarmChild, attempt: _Attempt
    ) -> TrainingOutcome:
        if leased.federated is None:
            return child.run(spec, attempt.on_event, attempt.should_stop)
        try:
            return FederatedRun(
                self.api, leased, spec, child, attempt.on_event, attempt.should_stop
            ).run()
        except (GridError, he.UpdateError) as exc:
            return TrainingOutcome("failed", f"federated round failed: {exc}")
        finally:
            child.kill()  # kept alive between rounds; done now

    def _analyse(self, leased: LeasedJob, job_dir: Path, attempt: _Attempt) -> TrainingOutcome:
        """An analysis runs in the worker itself: it sums numbers and runs no submitted code."""
        try:
            ((dataset, path),) = self._datasets(leased)
            return AnalyticsRun(
                self.api,
                leased,
                (path, dataset.format),
                job_dir / "analysis",
                attempt.on_event,
                attempt.should_stop,
            ).run()
        except (GridError, he.UpdateError, ValueError, OSError) as exc:
            return TrainingOutcome("failed", f"federated analysis failed: {exc}")

    def _datasets(self, leased: LeasedJob) -> list[tuple[LeasedDataset, Path]]:
        """Each dataset of the job with its file, from the worker's cache or fetched (checked
        by sha256)."""
        found = []
        for dataset in leased.datasets:
            cached = self.cache / f"{dataset.digest}.{dataset.format}"
            if not cached.exists():
                path = f"/jobs/{leased.job_id}/datasets/{dataset.name}"
                self.api.download(path, cached, dataset.digest)
            found.append((dataset, cached))
        return found

    def _prepare(self, leased: LeasedJob, job_dir: Path) -> TrainingSpec:
        base = f"/jobs/{leased.job_id}"
        assert leased.plan is not None  # every job but an analysis has a training plan
        model = self.api.download(f"{base}/model", job_dir / "model.pt2")
        weights = self.api.download(f"{base}/weights", job_dir / "weights.safetensors")
        data = []
        for dataset, path in self._datasets(leased):
            if dataset.label is None:
                raise ValueError(f"dataset {dataset.name!r} has no label column to train on")
            data.append(DataFile(path, dataset.format, dataset.label))
        output = job_dir / "output"
        output.mkdir(exist_ok=True)
        limits = leased.limits
        return TrainingSpec(
            model_path=model,
            weights_path=weights,
            data=data,
            plan=leased.plan,
            limits=TrainingLimits(limits.cpu_seconds, limits.memory_mb, limits.wall_seconds),
            output_dir=output,
            device=self.options.device,
        )

    def _report(self, leased: LeasedJob, outcome: TrainingOutcome) -> bool:
        """Deliver how the attempt ended; True once the domain took it.

        While the domain cannot be reached the worker keeps the outcome and tries again, backing
        off, until the domain answers or the worker is stopped: an outage longer than the lease
        then costs nothing the domain would still accept, and whatever it no longer accepts
        (the job went to another worker) is refused, logged and dropped.
        """
        job_id, attempt = _ids(leased)
        answered_errors = 0
        for tries in itertools.count(1):
            try:
                if outcome.status == "completed" and outcome.weights_path is not None:
                    self.api.deliver_result(job_id, attempt, outcome.weights_path, outcome.metrics)
                else:
                    reason = outcome.reason or outcome.status
                    self.api.report_failure(job_id, attempt, outcome.status, reason)
                return True
            except GridError as exc:
                if exc.status in (401, 409, 422):
                    log.warning(
                        "job %s attempt %s: report refused, outcome (%s) dropped: %s",
                        job_id, attempt, outcome.status, exc,
                    )  # fmt: skip
                    return False
                answered_errors += exc.status != 0
                if answered_errors >= _DELIVERY_TRIES:
                    break
                log.warning("job %s attempt %s: report failed, retrying: %s", job_id, attempt, exc)
            if self.stop.wait(min(2**tries, _DELIVERY_BACKOFF_MAX_S)):
                break
        log.error("job %s attempt %s: gave up reporting; the lease will run out", job_id, attempt)
        return False


def _ids(leased: LeasedJob) -> tuple[int, int]:
    return leased.job_id, leased.attempt


def _is_analysis(leased: LeasedJob) -> bool:
    return leased.federated is not None and leased.federated.kind == "analytics"
