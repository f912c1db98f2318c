"""A data-centric job through a domain and a worker against the same training in one process.

The model is an MLP (64-32-10) trained on scikit-learn's digits with Adam for 20 epochs.
"Direct" runs the worker's training function in this process on the same files; "through
Grid" is a gunicorn domain and a `grid worker start` process, timed from the owner's approval
to the job's completion as a client sees it. The whole flow (upload, submit, approve, train,
release, download) runs in a fresh client process.

    .venv/bin/python bench/data_centric.py [--epochs 20] [--database-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from domain_api import OWNER, SCIENTIST, free_port, start_gunicorn  # bench/ is on sys.path
from sklearn.datasets import load_digits
from torch import nn

import grid_cli as grid
from grid_cli.client.export import export_model
from worker.spec import DataFile, TrainingLimits, TrainingSpec
from worker.training import train

ROOT = Path(__file__).resolve().parent.parent
TRAIN_ROWS = 1500


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def plan(epochs: int) -> grid.TrainingPlan:
    return grid.TrainingPlan(
        loss="cross_entropy",
        optimizer="adam",
        lr=0.01,
        epochs=epochs,
        batch_size=64,
        seed=0,
        metrics=["loss", "accuracy"],
    )


def write_digits(scratch: Path) -> Path:
    digits = load_digits()
    frame = pd.DataFrame(digits.data[:TRAIN_ROWS], columns=[f"p{i}" for i in range(64)])
    frame["target"] = digits.target[:TRAIN_ROWS]
    path = scratch / "digits.csv"
    frame.to_csv(path, index=False)
    return path


def test_accuracy(model: nn.Module) -> float:
    digits = load_digits()
    inputs = torch.tensor(digits.data[TRAIN_ROWS:], dtype=torch.float32)
    with torch.no_grad():
        predicted = model(inputs).argmax(dim=1).numpy()
    return float(np.mean(predicted == digits.target[TRAIN_ROWS:]))


def direct(csv: Path, epochs: int, scratch: Path) -> tuple[float, float]:
    """Seconds and test accuracy of the worker's training function called in this process."""
    from safetensors.torch import load_file

    model = mlp()
    exported = export_model(model, load_digits().data[:4].astype(np.float32))
    output = scratch / "direct"
    output.mkdir()
    spec = TrainingSpec(
        model_path=exported.program,
        weights_path=exported.weights,
        data=[DataFile(csv, "csv", "target")],
        plan=plan(epochs),
        limits=TrainingLimits(cpu_seconds=3600, memory_mb=8192, wall_seconds=3600),
        output_dir=output,
    )
    started = time.perf_counter()
    outcome = train(spec, lambda event: None, lambda: False)
    seconds = time.perf_counter() - started
    assert outcome.status == "completed" and outcome.weights_path is not None, outcome.reason
    model.load_state_dict(load_file(str(outcome.weights_path)))
    exported.folder.cleanup()
    return seconds, test_accuracy(model.eval())


def flow(url: str, csv: Path, epochs: int) -> None:
    """One whole job as a data owner and a data scientist do it; prints timings as JSON."""
    started = time.perf_counter()
    owner = grid.login(url, *OWNER)
    owner.upload_dataset("digits", csv, label="target", progress=False)
    scientist = grid.login(url, *SCIENTIST)
    job = scientist.submit_training(mlp(), "digits", plan(epochs), reason="bench", progress=False)
    approved = time.perf_counter()
    owner.approve(job.id)
    job.wait(timeout=600, progress=False, poll_interval=0.05)
    trained = time.perf_counter()
    owner.release(job.id)
    model = job.result()
    finished = time.perf_counter()
    result = {
        "train_s": trained - approved,
        "flow_s": finished - started,
        "accuracy": test_accuracy(model),
        "worker_accuracy": job.metrics.get("accuracy"),
    }
    print(json.dumps(result))


def through_grid(csv: Path, epochs: int, scratch: Path, database_url: str) -> dict[str, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "GRID_DATA_DIR": str(scratch / "domain"),
        "GRID_OWNER_EMAIL": OWNER[0],
        "GRID_OWNER_PASSWORD": OWNER[1],
    }
    if database_url:
        env["GRID_DATABASE_URL"] = database_url
    domain = start_gunicorn("domain.wsgi:app", port, env, scratch / "domain.log")
    worker = None
    try:
        owner = grid.login(url, *OWNER)
        owner.create_user(*SCIENTIST, role="data_scientist")
        token = owner.add_worker("bench-worker").token
        assert token is not None
        with (scratch / "worker.log").open("wb") as log:
            worker = subprocess.Popen(
                [
                    *(sys.executable, "-m", "grid_cli", "worker", "start", "--domain", url),
                    *("--work-dir", str(scratch / "worker"), "--poll-interval", "0.05"),
                ],
                env={**os.environ, "GRID_WORKER_TOKEN": token},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while not any(w.status == "online" for w in owner.workers):
            if time.monotonic() > deadline:
                raise SystemExit("the worker did not come online; see worker.log")
            time.sleep(0.1)
        time.sleep(5)  # let the worker's warm training child finish importing torch
        answer = subprocess.run(
            [sys.executable, __file__, "flow", url, str(csv), str(epochs)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        return dict(json.loads(answer.stdout.strip().splitlines()[-1]))
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        domain.terminate()
        domain.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--database-url", default="", help="Domain database (default SQLite).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="grid-bench-") as folder:
        scratch = Path(folder)
        csv = write_digits(scratch)
        direct_s, direct_accuracy = direct(csv, args.epochs, scratch)
        grid_run = through_grid(csv, args.epochs, scratch, args.database_url)
    ratio = grid_run["train_s"] / direct_s
    print(f"digits, MLP 64-32-10, Adam, {args.epochs} epochs, batch 64, {TRAIN_ROWS} rows")
    print(f"{'direct, one process':<36} {direct_s:8.2f} s   test accuracy {direct_accuracy:.4f}")
    print(
        f"{'through domain + worker':<36} {grid_run['train_s']:8.2f} s   "
        f"test accuracy {grid_run['accuracy']:.4f}"
    )
    print(f"{'ratio (aim: 1.3 or less)':<36} {ratio:8.2f}")
    print(f"{'whole flow from a fresh client':<36} {grid_run['flow_s']:8.2f} s")
    print("(upload, submit, approve, train, release, download)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "flow":
        flow(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
