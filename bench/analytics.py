"""Federated analytics through a real grid against the same computation on the pooled rows.

Synthetic regression data with a fixed seed: 19 float features x0..x18 and a target
y = x·w + noise (20 columns), `--rows` rows on each domain (each domain's features centred
elsewhere, so no domain looks like the pool). For each domain count a local grid is started
(a network and that many domains, one worker each, no chain); every owner has an
auto-approval rule for analyses that releases on completion, so no person is in the loop.
Timed from the data scientist's client, submission to result in hand:

- `analyze` of count, mean, var, std and corr over the 20 columns;
- `fit_exact("ridge", label="y", alpha=1.0)` on the 19 features;

against pandas and scikit-learn on the pooled DataFrame in this process (the rows already in
memory). A first analysis (count) on each fresh grid is left out of the table: it also pays the
workers' first use of CKKS and the tail of the grid's start. Printed per domain count: both
wall times and their ratio, the largest relative difference of the results, the sums each
domain sends and the encrypted bytes (the worker's update file), and where a job's time goes,
from the network's timestamps: until every owner approved, until the round opened, the round
(read, sum, encrypt, send, add), the release (decrypt, release, attest), and the client's
polling and download.

    .venv/bin/python bench/analytics.py [--domains 3 5 8] [--rows 100000] [--json]

Like `analyze` and `fit_exact`, the client submits and waits, but polls every 0.05 s
instead of 0.5 s, so the figure is not rounded up to the poll.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge

import grid_cli as grid
from grid_cli.client.analytics import AnalyticsJob
from grid_cli.client.network import DatasetRef, NetworkClient
from grid_cli.local.demo_data import SeedDataset
from grid_cli.local.grid import GridConfig, LocalGrid
from grid_common.federated_schemas import RoundList
from grid_common.schemas import AutoApprovalRule

FEATURES = [f"x{i}" for i in range(19)]
LABEL = "y"
COLUMNS = [*FEATURES, LABEL]
DATASET = "regression"
STATISTICS = ["count", "mean", "var", "std", "corr"]
ALPHA = 1.0
POLL_S = 0.05
T = TypeVar("T")


def make_parts(domains: int, rows: int, seed: int = 0) -> list[pd.DataFrame]:
    """Each domain's rows: features around a mean of its own, y linear in them plus noise."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(0, 2, len(FEATURES))
    parts = []
    for _ in range(domains):
        centre = rng.normal(0, 3, len(FEATURES))
        scale = rng.uniform(0.5, 5, len(FEATURES))
        x = rng.normal(centre, scale, (rows, len(FEATURES)))
        y = x @ weights + 7.0 + rng.normal(0, 1, rows)
        frame = pd.DataFrame(x, columns=FEATURES)
        frame[LABEL] = y
        parts.append(frame)
    return parts


def start_grid(root: Path, parts: list[pd.DataFrame]) -> LocalGrid:
    """A network and one domain per part (one worker each), polling often, no chain."""
    config = GridConfig(
        data_dir=root,
        domains=len(parts),
        port=0,
        chain=False,
        datasets=[
            [SeedDataset(DATASET, part, LABEL, "synthetic regression rows", ["bench"])]
            for part in parts
        ],
        sync_s=0.1,
        lease_s=3,
        health_interval_s=1,
        worker_poll_s=0.1,
    )
    return LocalGrid(config, supervised=False).start()


def auto_approve_analyses(owner: grid.DomainClient) -> None:
    """The owner's rule: approve every analysis as it arrives, release its result when done."""
    settings = owner.settings
    settings.auto_approval.append(AutoApprovalRule(kind="analytics", release_on_completion=True))
    owner.update_settings(settings)


@dataclass
class Timed:
    """One analysis as the client saw it, and where the network says its time went."""

    seconds: float
    phases: dict[str, float]
    sums: int
    bytes_per_domain: list[int]


def statistics_job(net: NetworkClient, hits: list[DatasetRef]) -> AnalyticsJob:
    return net.submit_analysis(hits, statistics=STATISTICS, columns=COLUMNS)


def ridge_job(net: NetworkClient, hits: list[DatasetRef]) -> AnalyticsJob:
    return net.submit_analysis(hits, model="ridge", label=LABEL, alpha=ALPHA)


def warm_up(net: NetworkClient, hits: list[DatasetRef]) -> float:
    """Seconds of a first, untimed analysis: it pays the workers' first use of CKKS."""
    started = time.perf_counter()
    job = net.submit_analysis(hits, statistics=["count"])
    job.wait(3600, progress=False, poll_interval=POLL_S).result()
    return time.perf_counter() - started


def run_job(
    net: NetworkClient, local: LocalGrid, submit: Callable[[], AnalyticsJob]
) -> tuple[Any, Timed]:
    """Submit, wait, fetch the result; then read the job's timestamps and the update sizes."""
    started = time.perf_counter()
    job = submit()
    result = job.wait(3600, progress=False, poll_interval=POLL_S).result()
    seconds = time.perf_counter() - started
    sizes = [update_bytes(d.owner_client) for d in local.domains]
    return result, Timed(seconds, phases(net, job, seconds), job.info.parameters, sizes)


def phases(net: NetworkClient, job: AnalyticsJob, seconds: float) -> dict[str, float]:
    """Seconds of each step, from the network's timestamps (the client's wall time last)."""
    info = job.refresh().info
    rounds = net._get(f"/fl/jobs/{job.id}/rounds", RoundList).items
    decided = max(p.decided_at for p in info.participants if p.decided_at is not None)
    assert info.started_at and info.finished_at and rounds and rounds[-1].closed_at

    def between(a: datetime, b: datetime) -> float:
        return (b - a).total_seconds()

    on_network = between(info.created_at, info.finished_at)
    return {
        "approval": between(info.created_at, decided),
        "start": between(decided, rounds[0].opened_at),
        "round": between(rounds[0].opened_at, rounds[-1].closed_at),
        "release": between(rounds[-1].closed_at, info.finished_at),
        "client": seconds - on_network,
    }


def update_bytes(owner: grid.DomainClient) -> int:
    """What the domain's worker sent for its newest analysis: its encrypted update's size."""
    newest = max(r.id for r in owner.requests if r.info.kind == "analytics")
    events = owner.job_events(newest, kind="progress")
    return int(next(e.data["bytes"] for e in reversed(events) if "bytes" in e.data))


def timed(compute: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    value = compute()
    return value, time.perf_counter() - started


def pooled_statistics(pooled: pd.DataFrame) -> dict[str, Any]:
    return {
        "count": len(pooled),
        "mean": pooled.mean(),
        "var": pooled.var(),
        "std": pooled.std(),
        "corr": pooled.corr(),
    }


def pooled_ridge(pooled: pd.DataFrame) -> Ridge:
    return Ridge(alpha=ALPHA).fit(pooled[FEATURES], pooled[LABEL])


def relative_difference(got: Any, want: Any) -> float:
    """max |got - want| / max |want|: how far a whole statistic is off, at its own scale."""
    if isinstance(got, pd.Series | pd.DataFrame):  # compare by column name, not position
        want = want.reindex_like(got)
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


@dataclass
class Figures:
    """One domain count's figures."""

    domains: int
    rows: int
    warm_up_s: float
    analyze: Timed
    analyze_pooled_s: float
    analyze_difference: dict[str, float]
    ridge: Timed
    ridge_pooled_s: float
    ridge_difference: dict[str, float]


def bench(domains: int, rows: int, scratch: Path) -> Figures:
    parts = make_parts(domains, rows)
    pooled = pd.concat(parts, ignore_index=True)
    want, stats_s = timed(lambda: pooled_statistics(pooled))
    baseline, ridge_s = timed(lambda: pooled_ridge(pooled))
    local = start_grid(scratch / f"grid-{domains}", parts)
    try:
        for d in local.domains:
            auto_approve_analyses(d.owner_client)
        net = local.scientist()
        hits = [h for h in net.search(DATASET, limit=100) if h.dataset.name == DATASET]
        assert len(hits) == domains, f"found {len(hits)} of {domains} datasets"
        warm_up_s = warm_up(net, hits)
        analysis, stats_run = run_job(net, local, lambda: statistics_job(net, hits))
        model, ridge_run = run_job(net, local, lambda: ridge_job(net, hits))
        net.close()
    finally:
        local.stop()
    return Figures(
        domains=domains,
        rows=rows,
        warm_up_s=warm_up_s,
        analyze=stats_run,
        analyze_pooled_s=stats_s,
        analyze_difference={name: relative_difference(analysis[name], want[name]) for name in want},
        ridge=ridge_run,
        ridge_pooled_s=ridge_s,
        ridge_difference={
            "coef_": relative_difference(model.coef_, baseline.coef_),
            "intercept_": relative_difference(model.intercept_, baseline.intercept_),
        },
    )


def print_table(results: list[Figures]) -> None:
    print()
    print(f"{len(FEATURES) + 1} columns; times from submission to result in the client's hands")
    header = (
        f"{'domains':>7} {'rows each':>9} {'job':<8} {'grid s':>7} {'pooled s':>9} "
        f"{'ratio':>7} {'max rel diff':>12} {'sums':>5} {'bytes/domain':>15}"
    )
    print(header)
    print("-" * len(header))
    for f in results:
        for name, run, pooled_s, difference in (
            ("analyze", f.analyze, f.analyze_pooled_s, f.analyze_difference),
            ("ridge", f.ridge, f.ridge_pooled_s, f.ridge_difference),
        ):
            low, high = min(run.bytes_per_domain), max(run.bytes_per_domain)
            size = f"{low:,}" if low == high else f"{low:,}-{high:,}"
            print(
                f"{f.domains:>7} {f.rows:>9,} {name:<8} {run.seconds:>7.2f} {pooled_s:>9.4f} "
                f"{run.seconds / pooled_s:>6.0f}x {max(difference.values()):>12.1e} "
                f"{run.sums:>5} {size:>15}"
            )
    for f in results:
        print(f"{f.domains} domains: the first analysis (count, untimed) took {f.warm_up_s:.2f} s")
    print()
    print("where the grid's time goes (s): approval = until every owner's rule approved,")
    print("start = until a worker took the job and its keys were dealt, round = every domain")
    print("reads, sums, encrypts and sends, the network adds; release = decrypt, release and")
    print("attest; client = polling and download")
    names = list(results[0].analyze.phases)
    print(f"{'domains':>7} {'job':<8} " + " ".join(f"{n:>8}" for n in names))
    for f in results:
        for name, run in (("analyze", f.analyze), ("ridge", f.ridge)):
            cells = " ".join(f"{run.phases[n]:>8.2f}" for n in names)
            print(f"{f.domains:>7} {name:<8} {cells}")
    print()
    print("relative difference per statistic (max |grid - pooled| / max |pooled|):")
    for f in results:
        both = {**f.analyze_difference, **f.ridge_difference}
        print(f"{f.domains:>7} domains: " + ", ".join(f"{k} {v:.1e}" for k, v in both.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, nargs="+", default=[3, 5, 8])
    parser.add_argument("--rows", type=int, default=100_000, help="rows on each domain")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="grid-bench-analytics-") as scratch:
        for domains in args.domains:
            print(f"{domains} domains, {args.rows:,} rows each ...", flush=True)
            results.append(bench(domains, args.rows, Path(scratch)))
    print_table(results)
    if args.json:
        print(json.dumps([asdict(f) for f in results]))


if __name__ == "__main__":
    main()
