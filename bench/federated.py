"""Federated training through a real grid: accuracy against centralized, CKKS against plain.

scikit-learn's digits: 20% held out for testing, the rest split across the domains with a
Dirichlet(0.5) label skew. The model is an MLP 64-384-192-10 (100,810 parameters); each round
every domain trains one local epoch of Adam. Figures printed:

- test accuracy after the rounds, against the same model trained centrally on the pooled rows
  for as many epochs;
- wall time per round with `secure_aggregation="ckks"` against `"none"` (rounds 2 onwards:
  round 1 also pays the workers' first load);
- bytes each domain sends per round; the network process's peak memory;
- wall time per round for 2, 4 and 8 domains (CKKS).

    .venv/bin/python bench/federated.py [--rounds 20] [--domains 3] [--scaling 3,4,8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.datasets import load_digits
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grid_cli as grid  # noqa: E402
from grid_common.federated_schemas import RoundList  # noqa: E402
from tests.e2e.grid import LocalGrid, start_grid  # noqa: E402


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(64, 384), nn.ReLU(), nn.Linear(384, 192), nn.ReLU(), nn.Linear(192, 10)
    )


PLAN = grid.TrainingPlan(
    loss="cross_entropy",
    optimizer="adam",
    lr=0.001,
    epochs=1,
    batch_size=32,
    seed=0,
    validation_split=0.1,
    metrics=["loss", "accuracy"],
)


def split(domains: int, seed: int = 0) -> tuple[list[pd.DataFrame], np.ndarray, np.ndarray]:
    """Training parts per domain with Dirichlet(0.5) label skew, and the held-out test set."""
    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.target))
    test = order[: len(order) // 5]
    train = order[len(order) // 5 :]
    frame = pd.DataFrame(digits.data, columns=[f"p{i}" for i in range(64)])
    frame["target"] = digits.target
    owners: list[list[int]] = [[] for _ in range(domains)]
    for label in range(10):
        rows = train[digits.target[train] == label]
        shares = rng.dirichlet([0.5] * domains)
        cuts = (np.cumsum(shares)[:-1] * len(rows)).astype(int)
        for domain, part in enumerate(np.split(rows, cuts)):
            owners[domain].extend(part.tolist())
    parts = [frame.iloc[sorted(rows)].reset_index(drop=True) for rows in owners]
    return parts, digits.data[test].astype(np.float32), digits.target[test]


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def centralized(parts: list[pd.DataFrame], epochs: int) -> nn.Module:
    """The same model and optimizer settings on the pooled rows, in this process."""
    pooled = pd.concat(parts)
    x = torch.tensor(pooled.drop(columns="target").to_numpy(), dtype=torch.float32)
    y = torch.tensor(pooled["target"].to_numpy())
    model = mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=PLAN.lr)
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(PLAN.batch_size):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    return model.eval()


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process and its children (gunicorn's workers)."""
    pids = [pid, *_children(pid)]
    total = 0
    for each in pids:
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total = max(total, int(line.split()[1]))
    return total / 1024


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def run_job(local: LocalGrid, mode: str, rounds: int) -> tuple[grid.FederatedJob, list[float]]:
    hits = local.scientist.search("digits")
    fl = local.scientist.federated_training(
        mlp(), datasets=hits, plan=PLAN, rounds=rounds, secure_aggregation=mode, progress=False
    )
    local.approve_all()
    fl.wait(timeout=3600, progress=True)
    listing = local.scientist._get(f"/fl/jobs/{fl.id}/rounds", RoundList)
    seconds = [(r.closed_at - r.opened_at).total_seconds() for r in listing.items if r.closed_at]
    return fl, seconds


def update_bytes(local: LocalGrid) -> int:
    """What the first domain sent in its last round (the update file), from its worker's events."""
    owner = local.members[0].owner
    job = [j for j in owner.jobs if j.info.kind == "federated"][-1]
    events = job._fetch_events()
    sent = [e.data["bytes"] for e in events if e.kind == "progress" and "bytes" in e.data]
    return int(sent[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--domains", type=int, default=3)
    parser.add_argument(
        "--scaling",
        default="3,4,8",
        help="domain counts for the scaling runs (3 or more: no DP here)",
    )
    parser.add_argument("--scaling-rounds", type=int, default=4)
    args = parser.parse_args()

    parts, x_test, y_test = split(args.domains)
    sizes = [len(p) for p in parts]
    print(
        f"model: {sum(p.numel() for p in mlp().parameters()):,} parameters; rows per domain {sizes}"
    )
    baseline = centralized(parts, args.rounds * PLAN.epochs)
    pooled = accuracy(baseline, x_test, y_test)
    print(f"centralized, {args.rounds} epochs on the pooled rows: test accuracy {pooled:.4f}")

    with tempfile.TemporaryDirectory(prefix="grid-bench-fl-") as scratch:
        (Path(scratch) / "main").mkdir()
        local = start_grid(Path(scratch) / "main", args.domains, parts=parts)
        try:
            results = {}
            for mode in ("ckks", "none"):
                fl, seconds = run_job(local, mode, args.rounds)
                model = fl.result()
                results[mode] = seconds
                print(
                    f"{mode:>4}: test accuracy after {args.rounds} rounds "
                    f"{accuracy(model, x_test, y_test):.4f}; "
                    f"round time median {statistics.median(seconds[1:]):.3f} s "
                    f"(round 1: {seconds[0]:.3f} s); bytes sent per domain per round "
                    f"{update_bytes(local):,}"
                )
            ratio = statistics.median(results["ckks"][1:]) / statistics.median(results["none"][1:])
            print(f"ckks / none round time: {ratio:.2f}x")
            peak = peak_rss_mib(local.network.process.pid)
            print(f"network peak memory (RSS high-water mark): {peak:.0f} MiB")
        finally:
            local.stop()

        for count in [int(c) for c in args.scaling.split(",") if c]:
            scaled_parts, _, _ = split(count)
            (Path(scratch) / f"scale-{count}").mkdir()
            local = start_grid(Path(scratch) / f"scale-{count}", count, parts=scaled_parts)
            try:
                _, seconds = run_job(local, "ckks", args.scaling_rounds)
                median = statistics.median(seconds[1:])
                print(f"{count} domains (ckks): round time median {median:.3f} s")
            finally:
                local.stop()


if __name__ == "__main__":
    main()
