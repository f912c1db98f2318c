"""The training child: a warm process that takes one job, trains it within its limits, and exits.

Parent side: `WarmChild.start()` spawns `python -m worker.child`, which imports torch and the
training code and then waits for a spec line on stdin; `WarmChild.run()` sends the spec and
turns the child's JSON lines (events, then the outcome) and its exit into a `TrainingOutcome`.
A federated job trains once per round in the same child (`keep=True`), under one set of limits.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from grid_common.plan import TrainingPlan
from worker.redact import redacted
from worker.spec import DataFile, TrainingEvent, TrainingLimits, TrainingOutcome, TrainingSpec

THREADS_ENV = "GRID_TRAINING_THREADS"
PARENT_ENV = "GRID_TRAINING_PARENT"
READY_TIMEOUT = 120.0
CANCEL_GRACE = 5.0
POLL_INTERVAL = 0.1
CPU_HARD_GRACE = 5  # seconds between SIGXCPU and the kernel's SIGKILL
MAX_LINE = 1 << 20
# What the child inherits; secrets such as the worker's token stay in the parent.
_INHERITED_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TMPDIR",
    "TZ",
    "VIRTUAL_ENV",
    "CUDA_VISIBLE_DEVICES",
)
_ROOT = Path(__file__).resolve().parent.parent

log = logging.getLogger(__name__)


class ChildError(RuntimeError):
    """The training child could not be started or used."""


def default_threads() -> int:
    """Torch threads per child: $GRID_TRAINING_THREADS, else half this machine's cores, 1 to 4.

    Half, because the worker, its domain and other workers share the machine, and torch's
    threads spin while they wait: an oversubscribed core makes a small model many times slower.
    """
    value = os.environ.get(THREADS_ENV)
    if value:
        return max(1, int(value))
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def spec_to_json(spec: TrainingSpec) -> dict[str, Any]:
    """The spec as the JSON line the child reads; paths made absolute."""
    return {
        "model_path": str(spec.model_path.absolute()),
        "weights_path": str(spec.weights_path.absolute()),
        "data": [
            {"path": str(f.path.absolute()), "format": f.format, "label": f.label}
            for f in spec.data
        ],
        "plan": spec.plan.model_dump(mode="json"),
        "limits": {
            "cpu_seconds": spec.limits.cpu_seconds,
            "memory_mb": spec.limits.memory_mb,
            "wall_seconds": spec.limits.wall_seconds,
        },
        "output_dir": str(spec.output_dir.absolute()),
        "device": spec.device,
        "proximal_mu": spec.proximal_mu,
        "dp_rounds": spec.dp_rounds,
        "dp_rounds_spent": spec.dp_rounds_spent,
    }


def spec_from_json(data: dict[str, Any]) -> TrainingSpec:
    """The inverse of `spec_to_json`; the plan is validated again."""
    return TrainingSpec(
        model_path=Path(data["model_path"]),
        weights_path=Path(data["weights_path"]),
        data=[DataFile(Path(f["path"]), f["format"], f["label"]) for f in data["data"]],
        plan=TrainingPlan.model_validate(data["plan"]),
        limits=TrainingLimits(**data["limits"]),
        output_dir=Path(data["output_dir"]),
        device=data.get("device", "cpu"),
        proximal_mu=float(data.get("proximal_mu", 0.0)),
        dp_rounds=int(data.get("dp_rounds", 1)),
        dp_rounds_spent=int(data.get("dp_rounds_spent", 0)),
    )


def outcome_to_json(outcome: TrainingOutcome) -> dict[str, Any]:
    """The outcome as the child reports it."""
    return {
        "status": outcome.status,
        "reason": outcome.reason,
        "weights_path": str(outcome.weights_path) if outcome.weights_path else None,
        "metrics": outcome.metrics,
    }


def outcome_from_json(data: dict[str, Any]) -> TrainingOutcome:
    """The inverse of `outcome_to_json`."""
    weights = data.get("weights_path")
    return TrainingOutcome(
        status=data["status"],
        reason=data.get("reason"),
        weights_path=Path(weights) if weights else None,
        metrics=dict(data.get("metrics") or {}),
    )


class _Lines:
    """JSON lines from a pipe, read with a timeout so the caller can keep checking its clocks."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.fd = stream.fileno()
        self.buffer = b""
        self.eof = False

    def read(self, timeout: float) -> list[dict[str, Any]]:
        if self.eof:
            return []
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0))
        if not ready:
            return []
        chunk = os.read(self.fd, 1 << 16)
        if not chunk:
            self.eof = True
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        if len(self.buffer) > MAX_LINE:
            raise ChildError("the training process wrote a line longer than 1 MiB")
        messages = []
        for line in lines:
            try:
                message = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError):
                log.warning("training child wrote a line that is not JSON: %.200r", line)
                continue
            if isinstance(message, dict):
                messages.append(message)
        return messages


class WarmChild:
    """A training process started ahead of its job, so torch's import is off the job's clock."""

    def __init__(self, process: subprocess.Popen[bytes], threads: int) -> None:
        self.process = process
        self.threads = threads
        self.ready = False
        self.used = False
        self.kept = False
        self.cpu_before_job = 0.0
        self.cancel_grace = CANCEL_GRACE
        assert process.stdout is not None and process.stderr is not None
        self._lines = _Lines(process.stdout)
        self._stderr: deque[str] = deque(maxlen=50)
        self._stderr_thread = threading.Thread(
            target=self._drain_stderr, args=(process.stderr,), daemon=True
        )
        self._stderr_thread.start()

    @classmethod
    def start(cls, threads: int | None = None) -> WarmChild:
        """Spawn a child that imports torch and then waits for a job; returns at once."""
        threads = threads or default_threads()
        env = {k: os.environ[k] for k in _INHERITED_ENV if k in os.environ}
        paths = [str(_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env.update(
            {
                "PYTHONPATH": os.pathsep.join(paths),
                PARENT_ENV: str(os.getpid()),
                THREADS_ENV: str(threads),
                "OMP_NUM_THREADS": str(threads),
                "MKL_NUM_THREADS": str(threads),
                "OPENBLAS_NUM_THREADS": str(threads),
                # pyarrow's own allocator reserves memory that RLIMIT_DATA would count up front.
                "ARROW_DEFAULT_MEMORY_POOL": "system",
            }
        )
        process = subprocess.Popen(
            # -P: the working directory never shadows a module the child imports.
            [sys.executable, "-P", "-m", "worker.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=str(_ROOT),
            close_fds=True,
            start_new_session=True,
        )
        return cls(process, threads)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr_tail(self) -> list[str]:
        """The child's last lines of stderr (warnings, tracebacks), for the worker's own log."""
        return list(self._stderr)

    def _drain_stderr(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            self._stderr.append(line)
            log.debug("training child %d: %s", self.process.pid, line)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Block until the child has imported everything and waits for its job."""
        deadline = time.monotonic() + timeout
        while not self.ready:
            for message in self._lines.read(min(POLL_INTERVAL, deadline - time.monotonic())):
                if message.get("type") == "ready":
                    self.ready = True
            if self.ready:
                return
            if self._lines.eof:
                self._reap()
                raise ChildError(f"the training process did not start: {self._last_error()}")
            if time.monotonic() > deadline:
                self.kill()
                raise ChildError(f"the training process was not ready after {timeout:.0f} s")

    def run(
        self,
        spec: TrainingSpec,
        on_event: Callable[[TrainingEvent], None],
        should_cancel: Callable[[], bool] = lambda: False,
        *,
        keep: bool = False,
    ) -> TrainingOutcome:
        """Train `spec` in the child and return how it ended; the child is gone afterwards,
        unless `keep` is set and it finished cleanly: then it waits for the next spec.

        Cancelling asks the child to stop at its next step and kills it after a short grace;
        the wall-clock limit kills it outright. A child that is not kept is always reaped.
        """
        if self.used and not self.kept:
            raise ChildError("a training process runs one job only; start a new one")
        self.used, self.kept = True, False
        try:
            self.wait_ready()
            outcome = self._run(spec, on_event, should_cancel, keep)
            self.kept = keep and self.process.poll() is None and outcome.status == "completed"
            return outcome
        finally:
            if not self.kept:
                if self.process.poll() is None:
                    self.kill()
                self._reap()

    def _run(
        self,
        spec: TrainingSpec,
        on_event: Callable[[TrainingEvent], None],
        should_cancel: Callable[[], bool],
        keep: bool,
    ) -> TrainingOutcome:
        assert self.process.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # a child that died already is reported below
            self.process.stdin.write(json.dumps(spec_to_json(spec)).encode() + b"\n")
            self.process.stdin.flush()
            if not keep:
                self.process.stdin.close()
        wall = spec.limits.wall_seconds
        deadline = time.monotonic() + wall
        outcome: TrainingOutcome | None = None
        verdict: TrainingOutcome | None = None
        cancel_asked: float | None = None
        cpu_before_job = self.cpu_before_job
        while not self._lines.eof and not (keep and outcome is not None):
            for message in self._lines.read(POLL_INTERVAL):
                kind = message.get("type")
                if kind == "event":
                    on_event(TrainingEvent(kind=message["kind"], data=message["data"]))
                elif kind == "started":
                    cpu_before_job = self.cpu_before_job = float(message["cpu_seconds"])
                elif kind == "outcome":
                    outcome = outcome_from_json(message["outcome"])
            if verdict is not None:
                continue
            now = time.monotonic()
            if now > deadline:
                self._kill_group()
                verdict = TrainingOutcome(status="failed", reason=f"timed out after {wall} s")
            elif cancel_asked is None and should_cancel():
                cancel_asked = now
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.process.pid, signal.SIGUSR1)
            elif cancel_asked is not None and now - cancel_asked > self.cancel_grace:
                self._kill_group()
                verdict = TrainingOutcome(status="cancelled", reason="cancelled")
        if keep and outcome is not None and verdict is None:
            return outcome
        cpu = self._reap() - cpu_before_job
        if verdict is not None:
            return verdict
        code = self.process.returncode
        if outcome is not None:
            return outcome
        if code == -signal.SIGXCPU or (code == -signal.SIGKILL and cpu >= spec.limits.cpu_seconds):
            return TrainingOutcome(
                status="failed", reason=f"CPU time limit of {spec.limits.cpu_seconds} s exceeded"
            )
        if code == -signal.SIGKILL:
            return TrainingOutcome(
                status="failed",
                reason="the training process was killed (SIGKILL), most likely because the "
                "machine ran out of memory",
            )
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            return TrainingOutcome(
                status="failed", reason=f"the training process crashed: killed by {name}"
            )
        return TrainingOutcome(
            status="failed",
            reason=f"the training process crashed (exit status {code}): {self._last_error()}",
        )

    def _last_error(self) -> str:
        """The child's last line of stderr, numbers masked: a crash on private rows may quote
        their values, and the reason reaches the data scientist."""
        self._stderr_thread.join(timeout=1)
        lines = [line for line in self._stderr if line.strip()]
        return redacted(lines[-1]) if lines else "no error message"

    def _kill_group(self) -> None:
        if self.process.returncode is not None:
            return  # reaped: its pid, and so its group id, may belong to someone else by now
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def _reap(self) -> float:
        """Wait for the child; returns the CPU seconds it used (0 if already reaped)."""
        if self.process.returncode is not None:
            return 0.0
        try:
            _, status, usage = os.wait4(self.process.pid, 0)
        except ChildProcessError:
            self.process.wait()
            return 0.0
        self.process.returncode = os.waitstatus_to_exitcode(status)
        for stream in (self.process.stdout, self.process.stdin):
            if stream is not None and not stream.closed:
                with contextlib.suppress(OSError):
                    stream.close()
        return usage.ru_utime + usage.ru_stime

    def kill(self) -> None:
        """Kill the child and everything it started, and reap it."""
        self._kill_group()
        self._reap()
        self.kept = False


# -- the child's side ----------------------------------------------------------------------


def _protocol_stream() -> IO[str]:
    # Our JSON lines get a private copy of stdout; anything else that prints (torch, warnings,
    # a library's stray print) lands on stderr and cannot corrupt the protocol.
    protocol = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    return protocol


def _watch_parent(parent: int) -> None:
    # Orphaned (the worker died): stop now rather than train for nobody. The parent's pid comes
    # from the parent itself, in case it died before this process looked.
    while os.getppid() == parent:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGKILL)


def _data_size() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    return 0


def _prepare_gpu(device: str, memory_mb: int) -> None:
    # The CUDA context is the runtime's, not the job's: create it before RLIMIT_DATA applies.
    # RLIMIT_DATA does not see GPU memory, so torch's allocator gets the job's allowance there.
    import torch

    if not device.startswith("cuda") or not torch.cuda.is_available():
        return
    try:
        index = torch.device(device).index or 0
        torch.zeros(1, device=device)
    except RuntimeError:
        return  # a device this machine lacks: train() says so
    total = torch.cuda.get_device_properties(index).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, (memory_mb << 20) / total), index)


def _apply_limits(limits: TrainingLimits) -> float:
    """Limit this process to the job's CPU time and memory; returns the CPU seconds used so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    soft = math.ceil(used) + limits.cpu_seconds
    resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + CPU_HARD_GRACE))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # RLIMIT_DATA counts private writable memory (heap and anonymous maps, where tensors live)
    # but not the address space torch's libraries and idle thread arenas reserve, so a job
    # gets exactly its allowance on top of the ready process, and an allocation beyond it
    # fails cleanly instead of killing the process.
    data = _data_size() + (limits.memory_mb << 20)
    resource.setrlimit(resource.RLIMIT_DATA, (data, data))
    return used


def _warm_up(threads: int) -> None:
    # Start every thread pool a job will use now, before the limits: a thread's stack counts
    # against RLIMIT_DATA, and a pool that cannot start a thread under a tight limit (pyarrow's)
    # waits forever instead of failing.
    import tempfile

    import pyarrow
    import pyarrow.parquet as pq
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    from worker import training

    with tempfile.TemporaryDirectory(prefix="grid-warm-up-") as scratch:
        training.warm_up(Path(scratch))
    layer = torch.nn.Linear(256, 256)  # big enough for torch to start its intra-op threads
    layer(torch.randn(4096, 256)).sum().backward()
    pyarrow.set_cpu_count(1)
    pyarrow.set_io_thread_count(1)
    buffer = io.BytesIO()
    pq.write_table(pyarrow.table({"x": [1.0, 2.0]}), buffer)
    pq.read_table(io.BytesIO(buffer.getvalue()))


def main() -> None:
    parent = int(os.environ.get(PARENT_ENV, os.getppid()))
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    protocol = _protocol_stream()
    _warm_up(int(os.environ.get(THREADS_ENV, "1")))
    from worker import training

    stop = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: stop.set())

    def send(message: dict[str, Any]) -> None:
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    def emit(event: TrainingEvent) -> None:
        send({"type": "event", "kind": event.kind, "data": event.data})

    send({"type": "ready"})
    limited = False
    # One spec per line; a federated job sends one per round. The first one's limits hold for
    # all of them, and end of input (the parent closing stdin) ends the process.
    while (line := sys.stdin.readline()).strip():
        spec = spec_from_json(json.loads(line))
        if not limited:
            _prepare_gpu(spec.device, spec.limits.memory_mb)
            send({"type": "started", "cpu_seconds": _apply_limits(spec.limits)})
            limited = True
        started = time.process_time()
        try:
            outcome = training.train(spec, emit, stop.is_set)
        except Exception as e:
            if not training.is_out_of_memory(e):
                raise
            outcome = TrainingOutcome(
                status="failed", reason=training.out_of_memory_reason(spec.limits.memory_mb)
            )
        outcome.metrics.setdefault("cpu_seconds", round(time.process_time() - started, 3))
        send({"type": "outcome", "outcome": outcome_to_json(outcome)})


if __name__ == "__main__":
    main()
    sys.stderr.flush()
    os._exit(0)  # skip tearing down torch's modules: seconds for nothing
