"""One domain's part in a federated job: contribute to each round, decrypt what the network sums.

`NetworkRun` is the loop every federated job shares: it follows the job's state at the network
(through the domain), contributes to each open round, and finishes once the rounds are done.
`FederatedRun` trains: each round the worker starts from the global model (the initial
weights, or the last published aggregate divided by the rows behind it, stepped by the job's
server optimizer if it has one: `worker.server_optimizer`), trains locally in its child
process, multiplies the flat weights by its row count over the job's `row_scale`, encrypts
them with the job's shared CKKS context and sends them through its domain. The network adds
the ciphertexts; every domain decrypts the same sum. A job that samples its domains trains
each round only on the domains drawn for it; the others wait for the next round.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from grid_common import he
from grid_common.federated_schemas import ParticipantState
from grid_common.long_poll import digest
from grid_common.model_archive import inspect_archive
from grid_common.schemas import LeasedFederated, LeasedJob
from grid_common.transport import GridError
from worker.child import WarmChild
from worker.domain_api import DomainWorkerApi
from worker.server_optimizer import ServerOptimizer
from worker.spec import TrainingEvent, TrainingOutcome, TrainingSpec
from worker.stopwatch import Stopwatch

log = logging.getLogger("grid.worker")
POLL_S = 0.2
# How long a state request may wait at the network for the job to move on (a long poll).
STATE_WAIT_S = 5.0
T = TypeVar("T")
_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
# Under DP: what the job's accountant has spent so far, and the noise behind it.
_DP_METRICS = ("epsilon", "delta", "noise_multiplier")


class NetworkRun(ABC):
    """Follows one leased federated job at its network until the job ends there."""

    headroom_bits = he.SEND_HEADROOM_BITS

    def __init__(
        self,
        api: DomainWorkerApi,
        leased: LeasedJob,
        work: Path,
        on_event: Callable[[TrainingEvent], None],
        should_stop: Callable[[], bool],
    ) -> None:
        assert leased.federated is not None
        self.api, self.leased, self.task = api, leased, leased.federated
        self.on_event, self.should_stop = on_event, should_stop
        self.wait = threading.Event().wait  # an interruptible sleep between polls
        self.work = work
        self.work.mkdir(parents=True, exist_ok=True)
        self.codec: he.FrameCodec | None = None
        self.seen = ""  # digest of the state this worker had nothing to do in

    @property
    @abstractmethod
    def values(self) -> int:
        """How many values every update of this job holds."""

    @abstractmethod
    def _contribute(self, state: ParticipantState) -> TrainingOutcome | None:
        """Send this domain's update to the open round; an outcome ends the job, None goes on."""

    @abstractmethod
    def _final(self, state: ParticipantState) -> TrainingOutcome:
        """What the job delivers to the domain once its rounds are done."""

    @property
    def _ids(self) -> tuple[int, int]:
        return self.leased.job_id, self.leased.attempt

    def _log(self, message: str) -> None:
        self.on_event(TrainingEvent("log", {"level": "info", "message": message}))

    def run(self) -> TrainingOutcome:
        while not self.should_stop():
            try:
                state = self._state()
            except GridError as exc:
                if exc.status and exc.status < 500:
                    raise
                # The domain or the network is down for a moment: the round deadline decides.
                log.warning("job %s: federated state unavailable: %s", self.leased.job_id, exc)
                self.wait(1.0)
                continue
            if state.status in ("failed", "cancelled"):
                reason = state.failure_reason or f"the federated job was {state.status}"
                return TrainingOutcome("failed", f"at the network: {reason}")
            if state.participant_status != "approved" or not state.keys_ready:
                self.seen = digest(state)
                continue
            if state.status == "running" and state.round_open and not state.submitted:
                if not state.sampled:
                    # Not drawn this round: wait, without training, for the next one.
                    self.seen = digest(state)
                    continue
                # The domain checks the job's keys came from its dealer before handing them
                # over: a refusal ends the job here, before any training or encryption.
                self._codec(self.task)
                outcome = self._contribute(state)
                if outcome is not None:
                    return outcome
                continue
            if state.status in ("finishing", "completed"):
                return self._final(state)
            self.seen = digest(state)
        return TrainingOutcome("cancelled", "cancelled")

    def _state(self) -> ParticipantState:
        """The job's state; after a state with nothing to do, once it changed (the network holds
        the request up to STATE_WAIT_S), so a round that opens starts here at once. A network
        that answers at once with nothing new is asked again after POLL_S."""
        asked = time.monotonic()
        wait = STATE_WAIT_S if self.seen else 0.0
        state = self.api.federated_state(*self._ids, wait=wait, seen=self.seen)
        if self.seen and digest(state) == self.seen and time.monotonic() - asked < POLL_S:
            self.wait(POLL_S)
        return state

    def _codec(self, task: LeasedFederated) -> he.FrameCodec:
        if self.codec is None:
            context = None
            if task.secure_aggregation == "ckks":
                context = self._through_outages(
                    lambda: self.api.federated_context(*self._ids), "the job's keys"
                )
            self.codec = he.codec_for(task.secure_aggregation, context, self.headroom_bits)
        return self.codec

    def _through_outages(self, call: Callable[[], T], what: str) -> T:
        """`call()`, tried again while the domain or the network is down (a 5xx or no answer):
        a network restarting while this worker starts or between rounds is no reason to fail."""
        while True:
            try:
                return call()
            except GridError as exc:
                if (exc.status and exc.status < 500) or self.should_stop():
                    raise
                log.warning("job %s: %s unavailable: %s", self.leased.job_id, what, exc)
                self.wait(1.0)

    def _layout(self, state: ParticipantState) -> he.UpdateLayout:
        return he.UpdateLayout(state.secure_aggregation, self.values, state.slots)

    def _aggregate(self, state: ParticipantState, number: int) -> tuple[np.ndarray, int]:
        """A closed round's sum, decrypted, and the rows the network counted behind it."""
        aggregate = self.work / f"round-{number}.agg"
        samples = self._through_outages(
            lambda: self.api.federated_aggregate(*self._ids, number, aggregate),
            f"round {number}'s aggregate",
        )
        total = he.read_update(aggregate, self._codec(self.task), self._layout(state))
        aggregate.unlink(missing_ok=True)
        return total, samples

    def _encrypt(self, state: ParticipantState, vector: np.ndarray, path: Path) -> int:
        """Write the update for `vector`; returns its size in bytes."""
        return he.write_update(vector, self._codec(self.task), self._layout(state), path)

    def _send(self, number: int, update: Path, query: dict[str, Any]) -> bool:
        """Deliver the update, retrying while the domain or network is down; False if refused."""
        while not self.should_stop():
            try:
                self.api.federated_update(*self._ids, number, update, query)
                return True
            except GridError as exc:
                if exc.code in ("round_closed", "already_sent", "not_running"):
                    self._log(f"round {number}: update not taken ({exc.message})")
                    return False
                if exc.status and exc.status < 500:
                    raise
                log.warning(
                    "job %s: round %s update not delivered yet: %s", self._ids[0], number, exc
                )
                self.wait(1.0)
        return False


class FederatedRun(NetworkRun):
    """Trains each round of a leased federated training job."""

    def __init__(
        self,
        api: DomainWorkerApi,
        leased: LeasedJob,
        spec: TrainingSpec,
        child: WarmChild,
        on_event: Callable[[TrainingEvent], None],
        should_stop: Callable[[], bool],
    ) -> None:
        super().__init__(api, leased, spec.output_dir / "federated", on_event, should_stop)
        self.spec, self.child = spec, child
        self.template = he.read_weights(spec.weights_path)
        self.weights_layout = he.weights_layout(self.template)
        self.global_round = -1  # which aggregate `global_path` holds; 0 = the initial weights
        self.global_path = self.work / "global.safetensors"
        # A server optimizer's state, replayed from round 1's aggregate on: a worker that takes
        # the job over mid-way reaches the same global model as the domains that never stopped.
        self.optimizer: ServerOptimizer | None = None
        self.last_metrics: dict[str, Any] = {}
        # DP: rounds this domain trained in, for the job's one accountant. A worker that takes
        # the job over counts every round before the first one it joins as spent: it cannot
        # know which of them an earlier attempt trained in, and an upper bound stays honest.
        self.dp_rounds_spent: int | None = None
        self.dp_spend: dict[str, Any] = {}  # the accountant's figures after the last round

    @property
    def values(self) -> int:
        return self.weights_layout.size

    # --- the global model ------------------------------------------------------------------------

    def _global_model(self, state: ParticipantState) -> Path:
        """The weights every domain starts this round from; the same bytes on every domain."""
        if state.aggregate_round == self.global_round:
            return self.global_path
        if state.aggregate_round == 0:
            he.write_weights(self.template, self.global_path)
        else:
            vector = self._model_after(state, state.aggregate_round)
            he.write_weights(he.unflatten(vector, self.weights_layout), self.global_path)
        self.global_round = state.aggregate_round
        return self.global_path

    def _model_after(self, state: ParticipantState, number: int) -> np.ndarray:
        """The global model once round `number` closed: its average (FedAvg, FedProx), or the
        server optimizer stepped on every round's average up to it, in round order."""
        if not self.task.server_optimizer:
            return self._decrypt(state, number)
        if self.optimizer is None:
            self.optimizer = ServerOptimizer(
                self.task, he.flatten(self.template), self._trainable()
            )
        for earlier in range(self.optimizer.steps + 1, number + 1):
            self.optimizer.step(self._decrypt(state, earlier))
        return self.optimizer.x

    def _trainable(self) -> np.ndarray:
        """Which flat values are the model's parameters (the rest are buffers)."""
        parameters = {p.name for p in inspect_archive(self.spec.model_path).parameters}
        layout = self.weights_layout
        return np.concatenate(
            [
                np.full(math.prod(shape), name in parameters, dtype=bool)
                for name, shape in zip(layout.names, layout.shapes, strict=True)
            ]
            or [np.zeros(0, dtype=bool)]
        )

    def _decrypt(self, state: ParticipantState, number: int) -> np.ndarray:
        total, samples = self._aggregate(state, number)
        if samples <= 0:
            raise he.UpdateError(f"round {number}'s aggregate has no rows behind it")
        return total * (state.row_scale / samples)

    # --- one round -------------------------------------------------------------------------------

    def _contribute(self, state: ParticipantState) -> TrainingOutcome | None:
        """Train and send this round's update; an outcome ends the job, None goes on."""
        number = state.round
        watch = Stopwatch()
        start = self._global_model(state)
        watch.lap("global_s")  # the last aggregate fetched and decrypted
        output = self.work / f"round-{number}"
        output.mkdir(exist_ok=True)
        spec = replace(
            self.spec,
            weights_path=start,
            output_dir=output,
            proximal_mu=self.task.mu if self.task.strategy == "fedprox" else 0.0,
            dp_rounds=state.rounds,
            dp_rounds_spent=self._dp_rounds_spent(number),
        )
        self._log(f"round {number} of {state.rounds}: training from the global model")
        outcome = self.child.run(spec, self.on_event, self.should_stop, keep=True)
        watch.lap("train_s")
        if outcome.status != "completed" or outcome.weights_path is None:
            return outcome
        self.dp_rounds_spent = self._dp_rounds_spent(number) + 1
        samples = int(outcome.metrics.get("samples", 0))
        if samples <= 0:
            return TrainingOutcome("failed", "local training reported no rows")
        weight = samples / state.row_scale
        vector = he.flatten(he.read_weights(outcome.weights_path)) * weight
        update = output / "update.bin"
        size = self._encrypt(state, vector, update)
        watch.lap("encrypt_s")
        metrics = {k: outcome.metrics[k] for k in _METRICS if k in outcome.metrics}
        # Spent once trained, whether or not the network takes the update.
        self.dp_spend = {k: outcome.metrics[k] for k in _DP_METRICS if k in outcome.metrics}
        spent = {"epsilon": self.dp_spend["epsilon"]} if "epsilon" in self.dp_spend else {}
        if not self._send(number, update, {"samples": samples, **metrics, **spent}):
            return None
        watch.lap("send_s")
        self.last_metrics = {"samples": samples, **metrics}
        self.on_event(
            TrainingEvent(
                "progress",
                {
                    "phase": "round",
                    "round": number,
                    "rounds": state.rounds,
                    "bytes": size,
                    "timings": watch.report(),
                    **metrics,
                    **spent,
                },
            )
        )
        return None

    def _dp_rounds_spent(self, number: int) -> int:
        if self.dp_rounds_spent is None:
            self.dp_rounds_spent = number - 1
        return self.dp_rounds_spent

    def _final(self, state: ParticipantState) -> TrainingOutcome:
        """The global model after the last round (its average, or the server optimizer's x):
        the job's model, the same bytes and so the same hash on every domain."""
        final = self.work / "final.safetensors"
        vector = self._model_after(state, state.rounds)
        he.write_weights(he.unflatten(vector, self.weights_layout), final)
        self._log(f"all {state.rounds} rounds done; the final model is decrypted")
        metrics = {"rounds": state.rounds, **self.last_metrics, **self.dp_spend}
        return TrainingOutcome("completed", weights_path=final, metrics=metrics)
