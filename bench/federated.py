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

`--peer-split` runs instead exactly the work of a Flower 1.41 comparison run: digits[:1500] for
training and [1500:] for test (pixels / 16); the training rows split over 3 domains by
`RandomState(0)` with Dirichlet(0.5) per class in class order (613/308/579 rows); an MLP
64-512-128-10 (100,234 parameters) seeded; 1 local epoch of SGD, lr 0.05, batch 32; 20
rounds. The grid runs with the production defaults (`GRID_NETWORK_SYNC_S` 10 s, workers'
`--poll-interval` 2 s) and auto-approval, through the real client, for ckks and none in the
same run. Per mode it prints the accuracy after the rounds, the median round time, the
orchestration cost per round (round time minus the slowest domain's training time, its epochs'
seconds, from the job events), the per-phase timings (train: the whole run in the training
process; compute: its epochs), the bytes per domain per round, the submission to first round
start latency and the network's peak RSS. Rounds 2 onwards count for the medians (round 1 also
pays the workers' first load of the model).

    .venv/bin/python bench/federated.py --peer-split
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.datasets import load_digits
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grid_cli as grid  # noqa: E402
from grid_cli.local import grid as local_grid  # noqa: E402
from grid_cli.local.demo_data import SeedDataset  # noqa: E402
from grid_common.federated_schemas import RoundList, RoundOut  # noqa: E402
from grid_common.schemas import AutoApprovalRule  # noqa: E402
from tests.e2e.grid import LocalGrid, eventually, start_grid  # noqa: E402


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


# --- the Flower peer's work (--peer-split) -----------------------------------------------------


def peer_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 128), nn.ReLU(), nn.Linear(128, 10)
    )


PEER_PLAN = grid.TrainingPlan(
    loss="cross_entropy", optimizer="sgd", lr=0.05, epochs=1, batch_size=32, seed=0,
    metrics=["loss", "accuracy"],
)  # fmt: skip
PEER_DOMAINS = 3
PHASES = ("global_s", "train_s", "encrypt_s", "send_s")


def peer_split() -> tuple[list[pd.DataFrame], np.ndarray, np.ndarray]:
    """The peer's 3 training parts (613/308/579 rows) and its test rows."""
    digits = load_digits()
    x, y = (digits.data / 16.0).astype(np.float32), digits.target
    train_y = y[:1500]
    rng = np.random.RandomState(0)
    owners: list[list[int]] = [[] for _ in range(PEER_DOMAINS)]
    for label in range(10):
        rows = np.where(train_y == label)[0]
        shares = rng.dirichlet([0.5] * PEER_DOMAINS)
        cuts = (np.cumsum(shares)[:-1] * len(rows)).astype(int)
        for domain, part in enumerate(np.split(rows, cuts)):
            owners[domain].extend(part.tolist())
    frame = pd.DataFrame(x[:1500], columns=[f"p{i}" for i in range(64)])
    frame["target"] = train_y
    parts = [frame.iloc[rows].reset_index(drop=True) for rows in owners]
    return parts, x[1500:], y[1500:]


def peer_epoch(model: nn.Module, part: pd.DataFrame) -> nn.Module:
    """One local epoch from `model` on one domain's rows, as the peer trains: the local model."""
    local = peer_mlp()
    local.load_state_dict(model.state_dict())
    optimizer = torch.optim.SGD(local.parameters(), lr=PEER_PLAN.lr)
    x = torch.tensor(part.drop(columns="target").to_numpy(), dtype=torch.float32)
    y = torch.tensor(part["target"].to_numpy())
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    for batch in order.split(PEER_PLAN.batch_size):
        optimizer.zero_grad()
        nn.functional.cross_entropy(local(x[batch]), y[batch]).backward()
        optimizer.step()
    return local


def plain_fedavg(parts: list[pd.DataFrame], rounds: int) -> nn.Module:
    """The same rounds as plain-torch FedAvg in this process: the reference accuracy."""
    model = peer_mlp()
    for _ in range(rounds):
        states, weights = [], []
        for part in parts:
            states.append(peer_epoch(model, part).state_dict())
            weights.append(len(part) / sum(len(p) for p in parts))
        model.load_state_dict(
            {k: sum(w * s[k] for s, w in zip(states, weights, strict=True)) for k in states[0]}
        )
    return model.eval()


def start_peer_grid(root: Path, parts: list[pd.DataFrame]) -> LocalGrid:
    """Three domains as `grid domain start` runs them, each approving federated jobs itself."""
    config = local_grid.GridConfig(
        data_dir=root,
        domains=PEER_DOMAINS,
        port=0,
        chain=False,
        datasets=[
            [SeedDataset("digits", part, "target", "handwritten digits", ["digits"])]
            for part in parts
        ],
        sync_s=10.0,  # GRID_NETWORK_SYNC_S's default
        lease_s=30,
        worker_poll_s=2.0,  # `grid worker start`'s default
    )
    local = LocalGrid(local_grid.LocalGrid(config, supervised=False).start())
    for member in local.members:
        settings = member.owner.settings
        settings.auto_approval = [AutoApprovalRule(kind="federated", release_on_completion=True)]
        member.owner.update_settings(settings)
    for member in local.members:
        # A worker asks for its first job once its training process is ready: until then a
        # job would wait on the worker's start, which is no part of a job's latency.
        eventually(
            lambda m=member: all(w.status == "online" for w in m.owner.workers),
            f"{member.name}'s worker to be ready",
        )
    return local


def round_timings(local: LocalGrid) -> list[dict[int, dict[str, float]]]:
    """Per domain: round number -> the phase timings its worker reported for that round, with
    `compute_s`, the seconds its epochs took (the training proper, from the epoch points)."""
    found = []
    for member in local.members:
        job = [j for j in member.owner.jobs if j.info.kind == "federated"][-1]
        rounds, compute = {}, 0.0
        for e in job._fetch_events():  # in order: a round's epochs, then its round point
            if e.kind != "progress":
                continue
            if e.data.get("phase") == "epoch":
                compute += float(e.data.get("seconds", 0.0))
            elif e.data.get("phase") == "round" and "timings" in e.data:
                rounds[e.data["round"]] = {**e.data["timings"], "compute_s": compute}
                compute = 0.0
        found.append(rounds)
    return found


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def run_peer_job(
    local: LocalGrid, mode: str, rounds: int, x_test: np.ndarray, y_test: np.ndarray
) -> dict[str, Any]:
    """One job of the peer's work through the real client; its figures."""
    began = time.time()
    hits = local.scientist.search("digits")
    fl = local.scientist.federated_training(
        peer_mlp(), datasets=hits, plan=PEER_PLAN, rounds=rounds, secure_aggregation=mode,
        progress=False,
    )  # fmt: skip
    fl.wait(timeout=3600, progress=False)
    model = fl.result()
    downloaded = time.time()
    listing: list[RoundOut] = local.scientist._get(f"/fl/jobs/{fl.id}/rounds", RoundList).items
    timings = round_timings(local)
    per_round = []
    for item in listing:
        if item.closed_at is None:
            continue
        opened, closed = item.opened_at.timestamp(), item.closed_at.timestamp()
        reports = [t[item.number] for t in timings if item.number in t]
        if not reports:
            continue
        phases = {p: max(r.get(p, 0.0) for r in reports) for p in PHASES}
        compute = max(r["compute_s"] for r in reports)
        started = [r["began_at"] - opened for r in reports]
        finished = max(r["began_at"] + sum(r.get(p, 0.0) for p in PHASES) for r in reports)
        per_round.append(
            {
                "number": item.number,
                "round_s": closed - opened,
                # Training proper is the epochs; the rest of train_s (loading the program and
                # the rows in the training process) is orchestration too.
                "orchestration_s": (closed - opened) - compute,
                "start_delay_s": max(started),
                **phases,
                "compute_s": compute,
                "close_after_last_send_s": closed - finished,
            }
        )
    later = [r for r in per_round if r["number"] > 1] or per_round
    sent = [
        e.data["bytes"]
        for e in [j for j in local.members[0].owner.jobs if j.info.kind == "federated"][
            -1
        ]._fetch_events()
        if e.kind == "progress" and "bytes" in e.data
    ]
    return {
        "accuracy": accuracy(model, x_test, y_test),
        "round_s": _median([r["round_s"] for r in later]),
        "round_1_s": per_round[0]["round_s"] if per_round else float("nan"),
        "orchestration_s": _median([r["orchestration_s"] for r in later]),
        "phases": {
            key: _median([r[key] for r in later])
            for key in ("start_delay_s", *PHASES, "compute_s", "close_after_last_send_s")
        },
        "bytes": int(statistics.median(sent)) if sent else 0,
        "first_round_latency_s": listing[0].opened_at.timestamp() - fl.info.created_at.timestamp(),
        "total_s": downloaded - began,
    }


def peer_split_main(rounds: int) -> None:
    parts, x_test, y_test = peer_split()
    print(
        f"peer split: {sum(p.numel() for p in peer_mlp().parameters()):,} parameters; rows per "
        f"domain {[len(p) for p in parts]}; test rows {len(y_test)}"
    )
    reference = accuracy(plain_fedavg(parts, rounds), x_test, y_test)
    print(f"plain-torch FedAvg, {rounds} rounds in this process: test accuracy {reference:.4f}")
    with tempfile.TemporaryDirectory(prefix="grid-bench-peer-") as scratch:
        local = start_peer_grid(Path(scratch), parts)
        try:
            results = {
                mode: run_peer_job(local, mode, rounds, x_test, y_test) for mode in ("ckks", "none")
            }
            peak = peak_rss_mib(local.network.process.pid)
        finally:
            local.stop()
    for mode, r in results.items():
        phases = ", ".join(f"{k.removesuffix('_s')} {v:.3f}" for k, v in r["phases"].items())
        print(
            f"{mode:>4}: accuracy after {rounds} rounds {r['accuracy']:.4f}; round time median "
            f"{r['round_s']:.3f} s (round 1: {r['round_1_s']:.3f} s); orchestration per round "
            f"{r['orchestration_s']:.3f} s; bytes per domain per round {r['bytes']:,}; "
            f"submission to round 1 open {r['first_round_latency_s']:.2f} s; submission to "
            f"downloaded model {r['total_s']:.1f} s"
        )
        print(f"      per-phase medians (s, slowest domain): {phases}")
    ratio = results["ckks"]["round_s"] / results["none"]["round_s"]
    print(f"ckks / none round time: {ratio:.2f}x")
    print(f"network peak memory (RSS high-water mark, both jobs): {peak:.0f} MiB")


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
    parser.add_argument(
        "--peer-split", action="store_true", help="the Flower comparison's work (see above)"
    )
    args = parser.parse_args()
    if args.peer_split:
        peer_split_main(args.rounds)
        return

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
