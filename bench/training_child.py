"""The training child's overhead: time to a ready child, and a job through it against in-process.

The job is scikit-learn's digits (first 1500 rows, as CSV) and a 64-32-10 MLP trained with Adam
(lr 0.01, batch 64) for 20 epochs. "In-process" calls `worker.training.train` directly, with as
many torch threads as the child gets and after the same warm-up the child does; "child" is
`WarmChild.run` on a child that is already ready, so the figure is what a worker adds to a job
once its next child is waiting: the JSON protocol, the limits and the process exit.

    .venv/bin/python bench/training_child.py [--epochs 20] [--repeat 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import save_file
from sklearn.datasets import load_digits
from torch import nn

from grid_common.model_archive import save_for_training
from grid_common.plan import TrainingPlan
from worker.child import WarmChild
from worker.spec import DataFile, TrainingLimits, TrainingSpec
from worker.training import train, warm_up

TRAIN_ROWS = 1500


def digits_job(scratch: Path, epochs: int) -> TrainingSpec:
    digits = load_digits()
    frame = pd.DataFrame(digits.data[:TRAIN_ROWS], columns=[f"p{i}" for i in range(64)])
    frame["target"] = digits.target[:TRAIN_ROWS]
    frame.to_csv(scratch / "digits.csv", index=False)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    save_for_training(model, torch.randn(4, 64), scratch / "model.pt2")
    save_file(model.state_dict(), str(scratch / "weights.safetensors"))
    return TrainingSpec(
        model_path=scratch / "model.pt2",
        weights_path=scratch / "weights.safetensors",
        data=[DataFile(scratch / "digits.csv", "csv", "target")],
        plan=TrainingPlan(
            loss="cross_entropy",
            optimizer="adam",
            lr=0.01,
            epochs=epochs,
            batch_size=64,
            seed=0,
            metrics=["loss", "accuracy"],
        ),
        limits=TrainingLimits(cpu_seconds=600, memory_mb=2048, wall_seconds=600),
        output_dir=scratch / "out",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as folder:
        spec = digits_job(Path(folder), args.epochs)
        warm_up(Path(folder))
        ready, inside, through = [], [], []
        accuracy: dict[str, float] = {}
        for _ in range(args.repeat):
            started = time.perf_counter()
            child = WarmChild.start(threads=args.threads)
            child.wait_ready()
            ready.append(time.perf_counter() - started)

            started = time.perf_counter()
            outcome = child.run(spec, lambda event: None)
            through.append(time.perf_counter() - started)
            assert outcome.status == "completed", outcome.reason
            accuracy["child"] = outcome.metrics["accuracy"]

            started = time.perf_counter()
            outcome = train(spec, lambda event: None)
            inside.append(time.perf_counter() - started)
            assert outcome.status == "completed", outcome.reason
            accuracy["in-process"] = outcome.metrics["accuracy"]

    def show(name: str, values: list[float]) -> None:
        listed = ", ".join(f"{v:.2f}" for v in values)
        print(f"{name:<32} median {statistics.median(values):6.2f} s   ({listed})")

    print(f"digits MLP, {args.epochs} epochs, {args.threads} torch thread(s), {args.repeat} runs")
    show("WarmChild.start() until ready", ready)
    show("train() in this process", inside)
    show("WarmChild.run() on a ready child", through)
    ratio = statistics.median(through) / statistics.median(inside)
    print(f"{'child / in-process':<32} {ratio:13.2f}")
    print(
        f"{'training accuracy':<32} in-process {accuracy['in-process']:.4f}, "
        f"child {accuracy['child']:.4f}"
    )


if __name__ == "__main__":
    main()
