"""One domain's part in a federated analysis: sum its rows, encrypt, release what the total gives.

The worker reads the dataset next to the data, fills the analysis's vector of sufficient
statistics (adding its share of the Gaussian noise when the analysis is differentially
private), encrypts it and sends it through its domain. Once the network has added every
domain's vector, the worker decrypts the total and computes what is released: the asked-for
statistics or model parameters, with small groups withheld. If nothing may be released, it
tells the network why, and the job fails for everyone with that reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grid_common import he
from grid_common.analytics.compute import from_wire, local_sums, release, to_wire
from grid_common.analytics.plan import AnalysisPlan, AnalyticsError
from grid_common.analytics.privacy import noise_share, noise_shares, noise_sigma
from grid_common.datafiles import read_frame
from grid_common.federated_schemas import ParticipantState
from grid_common.schemas import DatasetFormat, LeasedJob
from grid_common.transport import GridError
from worker.domain_api import DomainWorkerApi
from worker.federated import NetworkRun
from worker.spec import TrainingEvent, TrainingOutcome

log = logging.getLogger("grid.worker")


class AnalyticsRun(NetworkRun):
    """Computes this domain's sums for a leased analysis, and its release."""

    headroom_bits = he.STATISTICS_HEADROOM_BITS

    def __init__(
        self,
        api: DomainWorkerApi,
        leased: LeasedJob,
        data: tuple[Path, DatasetFormat],
        work: Path,
        on_event: Callable[[TrainingEvent], None],
        should_stop: Callable[[], bool],
    ) -> None:
        super().__init__(api, leased, work, on_event, should_stop)
        self.plan = AnalysisPlan.model_validate(self.task.analysis)
        self.sigma = noise_sigma(self.plan)
        self.data = data
        self.rows = 0

    @property
    def values(self) -> int:
        return self.plan.layout.size

    def _contribute(self, state: ParticipantState) -> TrainingOutcome | None:
        frame = read_frame(*self.data)
        try:
            vector, _ = local_sums(frame, self.plan)
        except AnalyticsError as exc:
            return TrainingOutcome("failed", f"the analysis cannot read this dataset: {exc}")
        if self.sigma:
            # Each of the `min_domains` domains a round needs adds a share; the sum carries
            # at least the whole noise (with fewer than 3, each adds all of it).
            shares = noise_shares(self.task.min_domains)
            vector = vector + noise_share(len(vector), self.sigma, shares)
        update = self.work / "update.bin"
        size = self._encrypt(state, to_wire(self.plan, vector), update)
        self.rows = len(frame)
        # Not how many rows had every column: that count is private.
        self._log(
            f"summed the rows with every column the analysis reads into {len(vector)} values; "
            f"sending {size:,} encrypted bytes"
        )
        # The published row count, not the complete rows: nothing about the data leaves in
        # plaintext beyond what the domain already publishes.
        if self._send(state.round, update, {"samples": len(frame)}):
            self.on_event(
                TrainingEvent("progress", {"phase": "round", "round": state.round, "bytes": size})
            )
        return None

    def _final(self, state: ParticipantState) -> TrainingOutcome:
        total = from_wire(self.plan, self._aggregate(state, state.rounds)[0])
        min_group_size = max(state.min_group_size, self.task.min_group_size)
        try:
            result = release(
                self.plan, total, min_group_size=min_group_size, noise_sigma=self.sigma
            )
        except AnalyticsError as exc:
            self._withhold(str(exc))
            return TrainingOutcome("failed", f"nothing may be released: {exc}")
        path = self.work / "analysis.safetensors"
        result.write(path)
        withheld = result.info["withheld"]
        self._log(
            "the sums are decrypted; the result is ready"
            + (f" (withheld: {'; '.join(withheld)})" if withheld else "")
        )
        metrics: dict[str, Any] = {"samples": self.rows}
        if self.plan.dp is not None:  # the Gaussian mechanism spends exactly what it was set for
            metrics.update(epsilon=self.plan.dp.epsilon, delta=self.plan.dp.delta)
        return TrainingOutcome("completed", weights_path=path, metrics=metrics)

    def _withhold(self, reason: str) -> None:
        """Tell the network (through the domain) why nothing is released; retried while down."""
        while not self.should_stop():
            try:
                self.api.federated_withheld(*self._ids, reason)
                return
            except GridError as exc:
                if exc.status and exc.status < 500:
                    return  # another domain already ended the job with the same reason
                log.warning("job %s: withholding not delivered yet: %s", self._ids[0], exc)
                self.wait(1.0)
