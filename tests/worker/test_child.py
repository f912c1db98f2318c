"""The training child: real runs in a separate process, and every way a job can end badly."""

from __future__ import annotations

import dataclasses
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.conftest import eventually
from worker.child import WarmChild
from worker.spec import TrainingEvent, TrainingLimits, TrainingSpec

from .training_jobs import MLP, Hog, blobs, make_spec, write_npz

ROOT = Path(__file__).resolve().parents[2]


class Children:
    """Hands out ready children and starts the next one at once, as a worker does."""

    def __init__(self) -> None:
        self.started: list[WarmChild] = []
        self.spare = self._start()

    def _start(self) -> WarmChild:
        child = WarmChild.start(threads=1)
        self.started.append(child)
        return child

    def take(self) -> WarmChild:
        child, self.spare = self.spare, self._start()
        child.wait_ready()
        return child

    def close(self) -> None:
        for child in self.started:
            child.kill()


@pytest.fixture(scope="module")
def children() -> Iterator[Children]:
    pool = Children()
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> TrainingSpec:
    return make_spec(tmp_path_factory.mktemp("quick"), epochs=1)


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> TrainingSpec:
    """A job that would train for many minutes."""
    return make_spec(tmp_path_factory.mktemp("slow"), epochs=1000, batch_size=1)


def ignore(event: TrainingEvent) -> None:
    """Events are checked in the tests that are about them."""


def running(pid: int) -> bool:
    """Whether `pid` is alive (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def gone(child: WarmChild) -> bool:
    """The child and its whole process group are reaped."""
    try:
        os.killpg(child.pid, 0)
    except ProcessLookupError:
        return child.process.returncode is not None
    return False


def next_job_works(children: Children, quick: TrainingSpec, tmp_path: Path) -> None:
    """What a worker does after any failure: a fresh child takes the next job."""
    outcome = children.take().run(dataclasses.replace(quick, output_dir=tmp_path / "next"), ignore)
    assert outcome.status == "completed", outcome.reason


def test_start_returns_at_once_and_the_child_gets_ready() -> None:
    child = WarmChild.start(threads=1)
    try:
        # start() neither waited for the child's "ready" line nor read it: the child is still
        # importing torch when start() returns, and only wait_ready() takes the line.
        assert not child.ready
        assert select.select([child.process.stdout], [], [], 0)[0] == []
        child.wait_ready()
        assert child.process.poll() is None
    finally:
        child.kill()
    assert gone(child)


def test_a_real_run(children: Children, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, epochs=8, validation_split=0.2)
    events: list[TrainingEvent] = []
    outcome = children.take().run(spec, events.append)

    assert outcome.status == "completed", outcome.reason
    assert outcome.metrics["accuracy"] > 0.9 and outcome.metrics["val_accuracy"] > 0.9
    assert outcome.metrics["cpu_seconds"] > 0
    assert outcome.weights_path == spec.output_dir.absolute() / "weights.safetensors"
    model = MLP()
    model.load_state_dict(load_file(str(outcome.weights_path)))
    epochs = [e for e in events if e.kind == "progress" and e.data["phase"] == "epoch"]
    assert len(epochs) == 8
    assert any(e.kind == "log" and "loaded model" in e.data["message"] for e in events)


def test_a_child_runs_one_job_only(children: Children, quick: TrainingSpec, tmp_path: Path) -> None:
    child = children.take()
    child.run(dataclasses.replace(quick, output_dir=tmp_path), ignore)
    with pytest.raises(RuntimeError, match="one job only"):
        child.run(quick, ignore)


def test_cancel_mid_epoch(
    children: Children, slow: TrainingSpec, quick: TrainingSpec, tmp_path: Path
) -> None:
    events: list[TrainingEvent] = []
    child = children.take()
    outcome = child.run(
        dataclasses.replace(slow, output_dir=tmp_path), events.append, lambda: len(events) > 3
    )
    assert (outcome.status, outcome.reason) == ("cancelled", "cancelled")
    assert any("cancelled at epoch" in str(e.data.get("message")) for e in events)
    assert gone(child)
    next_job_works(children, quick, tmp_path)


def test_a_child_that_ignores_cancel_is_killed(
    children: Children, slow: TrainingSpec, quick: TrainingSpec, tmp_path: Path
) -> None:
    child = children.take()
    child.cancel_grace = 0.5
    events: list[TrainingEvent] = []

    def freeze_then_cancel() -> bool:
        if events and child.process.poll() is None:
            os.kill(child.pid, signal.SIGSTOP)  # it can no longer notice the request
            return True
        return False

    outcome = child.run(
        dataclasses.replace(slow, output_dir=tmp_path), events.append, freeze_then_cancel
    )
    assert (outcome.status, outcome.reason) == ("cancelled", "cancelled")
    assert gone(child)
    next_job_works(children, quick, tmp_path)


def test_nan_loss(children: Children, quick: TrainingSpec, tmp_path: Path) -> None:
    features, labels = blobs()
    features[5, 0] = float("inf")
    spec = dataclasses.replace(
        quick, data=[write_npz(tmp_path / "inf.npz", features, labels)], output_dir=tmp_path
    )
    child = children.take()
    outcome = child.run(spec, ignore)
    assert outcome.status == "failed"
    assert outcome.reason.startswith("the loss became nan at epoch 1, step ")
    assert gone(child)
    next_job_works(children, quick, tmp_path)


def test_out_of_memory(children: Children, quick: TrainingSpec, tmp_path: Path) -> None:
    limits = TrainingLimits(cpu_seconds=60, memory_mb=200, wall_seconds=60)
    spec = make_spec(tmp_path / "hog", model=Hog(), limits=limits, epochs=1)
    child = children.take()
    outcome = child.run(spec, ignore)
    assert (outcome.status, outcome.reason) == (
        "failed",
        "out of memory: the job's limit is 200 MiB",
    )
    assert gone(child)
    next_job_works(children, quick, tmp_path)


def test_wall_clock_timeout(
    children: Children, slow: TrainingSpec, quick: TrainingSpec, tmp_path: Path
) -> None:
    limits = TrainingLimits(cpu_seconds=60, memory_mb=1024, wall_seconds=2)
    child = children.take()
    outcome = child.run(dataclasses.replace(slow, limits=limits, output_dir=tmp_path), ignore)
    assert (outcome.status, outcome.reason) == ("failed", "timed out after 2 s")
    assert gone(child)
    next_job_works(children, quick, tmp_path)


def test_cpu_time_limit(
    children: Children, slow: TrainingSpec, quick: TrainingSpec, tmp_path: Path
) -> None:
    limits = TrainingLimits(cpu_seconds=1, memory_mb=1024, wall_seconds=60)
    child = children.take()
    outcome = child.run(dataclasses.replace(slow, limits=limits, output_dir=tmp_path), ignore)
    assert (outcome.status, outcome.reason) == ("failed", "CPU time limit of 1 s exceeded")
    assert gone(child)
    next_job_works(children, quick, tmp_path)


def test_a_crash_is_reported(
    children: Children, slow: TrainingSpec, quick: TrainingSpec, tmp_path: Path
) -> None:
    child = children.take()

    def crash(event: TrainingEvent) -> None:
        if event.kind == "progress":
            os.kill(child.pid, signal.SIGSEGV)

    outcome = child.run(dataclasses.replace(slow, output_dir=tmp_path), crash)
    assert (outcome.status, outcome.reason) == (
        "failed",
        "the training process crashed: killed by SIGSEGV",
    )
    assert gone(child)
    next_job_works(children, quick, tmp_path)


def test_a_child_whose_worker_died_stops(tmp_path: Path) -> None:
    script = (
        "from worker.child import WarmChild\n"
        "child = WarmChild.start(threads=1)\n"
        "child.wait_ready()\n"
        "print(child.pid, flush=True)\n"
        "import os; os._exit(0)\n"  # like kill -9: no cleanup
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    pid = int(result.stdout)
    try:
        eventually(lambda: not running(pid), "the orphaned training child to stop", 30)
    except AssertionError:
        os.kill(pid, signal.SIGKILL)
        raise
