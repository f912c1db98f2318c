"""Network figures: search latency over 10,000 indexed datasets, routing overhead, streaming memory.

Starts a network (one gunicorn worker with threads, as `grid network start` runs it) and one
real domain. 100 domains join through signed calls and push 100 datasets each; searches are
timed over HTTP. A data scientist then calls the real domain directly and through the network,
and 200 MB go up and back down through the network while its peak RSS is read from /proc.

    .venv/bin/python bench/network_search.py [--domains 100] [--datasets 100] [--searches 400]
        [--calls 300] [--stream-mb 200] [--database-url URL]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests
from safetensors.numpy import save_file

import grid_cli as grid
from grid_common.identity import NodeIdentity
from grid_common.signing import NodeAuth

ROOT = Path(__file__).resolve().parent.parent
OPERATOR = ("operator@example.org", "bench-operator-password")
OWNER = ("owner@example.org", "bench-owner-password")
SCIENTIST = ("ds@example.org", "bench-ds-password")
VOCABULARY = """
    handwritten digits images cardiology heart disease records diabetes glucose insulin
    retina scans tumour biopsy histology pathology genome sequencing variants blood pressure
    clinical trial outcomes radiology chest xray lung nodules sleep apnea wearable sensor
    accelerometer gait speech audio transcripts census income survey housing prices traffic
    weather rainfall energy consumption household smart meter fraud transactions credit
"""
WORDS = VOCABULARY.split()
QUERIES = [
    {"q": "handwritten digits"},
    {"q": "heart disease"},
    {"q": '"chest xray"'},
    {"q": "genome OR sequencing"},
    {"q": "blood pressure -diabetes"},
    {"q": "retina", "tag": "imaging"},
    {"q": "sensor", "column": "age"},
    {"q": "energy consumption household"},
    {"tag": "tabular", "limit": "50"},
    {"q": "fraud transactions credit", "tag": "finance"},
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(module: str, env: dict[str, str], log: Path, threads: int) -> tuple[Any, str]:
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "--workers", "1", "--threads", str(threads)]
    command += ["--bind", f"127.0.0.1:{port}", "--preload", f"{module}.wsgi:app"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{module} exited early; see {log}")
        try:
            if requests.get(f"{url}/healthz", timeout=1).ok:
                return process, url
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{module} did not start within 60 s; see {log}")


def worker_pid(process: Any) -> int:
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    return int(children[0])


def memory(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of a process, in bytes."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


class RssSampler:
    """The largest RSS a process reaches while sampled (every 5 ms), as VmHWM cannot be reset."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, memory(self.pid)[0])
            self._stop.wait(0.005)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def synthetic_datasets(rng: random.Random, domain: int, count: int) -> list[dict[str, Any]]:
    tags = ["imaging", "tabular", "finance", "clinical", "audio", "genomics", "sensors"]
    columns = ["age", "sex", "label", "value", "time", "site", "score", "target"]
    out = []
    for i in range(count):
        chosen = rng.sample(columns, 4)
        out.append(
            {
                "name": f"d{domain}-{i}-{rng.choice(WORDS)}",
                "description": " ".join(rng.choices(WORDS, k=rng.randint(8, 30))),
                "tags": rng.sample(tags, 2),
                "schema": {
                    "format": "csv",
                    "columns": [{"name": c, "dtype": "float64", "shape": []} for c in chosen],
                    "row_count": rng.randint(100, 100_000),
                },
                "has_mock": True,
            }
        )
    return out


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def timed(session: requests.Session, url: str, **kwargs: Any) -> float:
    started = time.perf_counter()
    response = session.get(url, timeout=30, **kwargs)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed


def index_domains(
    network: str, operator: grid.NetworkClient, domains: int, per_domain: int
) -> float:
    recipient = operator.node.id
    rng = random.Random(0)
    started = time.perf_counter()
    with requests.Session() as session:
        for d in range(domains):
            node = NodeIdentity.generate()
            auth = NodeAuth(node, recipient)
            body = {
                "name": f"bench-domain-{d}",
                "url": "http://127.0.0.1:9",
                "encryption_key": node.encryption_public_key,
            }
            joined = session.post(
                f"{network}/api/v1/associations", json=body, auth=auth, timeout=30
            )
            joined.raise_for_status()
            operator.approve(joined.json()["id"])
            push = {"datasets": synthetic_datasets(rng, d, per_domain)}
            pushed = session.put(
                f"{network}/api/v1/index/{node.node_id}/datasets", json=push, auth=auth, timeout=60
            )
            pushed.raise_for_status()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=100)
    parser.add_argument("--datasets", type=int, default=100, help="per domain")
    parser.add_argument("--searches", type=int, default=400)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--stream-mb", type=int, default=200)
    parser.add_argument("--database-url", default="", help="network database (default SQLite)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="grid-bench-network-"))
    network_env = {
        "GRID_DATA_DIR": str(scratch / "network"),
        "GRID_NODE_NAME": "bench-network",
        "GRID_OPERATOR_EMAIL": OPERATOR[0],
        "GRID_OPERATOR_PASSWORD": OPERATOR[1],
        # The bench domains have no server: check health rarely so checks do not skew timings.
        "GRID_HEALTH_INTERVAL_S": "3600",
        "GRID_MAX_JOINS_PER_ADDRESS": str(args.domains + 10),
    }
    if args.database_url:
        network_env["GRID_DATABASE_URL"] = args.database_url
    domain_env = {
        "GRID_DATA_DIR": str(scratch / "domain"),
        "GRID_NODE_NAME": "bench-domain",
        "GRID_OWNER_EMAIL": OWNER[0],
        "GRID_OWNER_PASSWORD": OWNER[1],
        "GRID_NETWORK_SYNC_S": "1",
        "GRID_DATABASE_URL": "",
    }
    network_process, network = start("network", network_env, scratch / "network.log", threads=8)
    domain_process, domain = start("domain", domain_env, scratch / "domain.log", threads=1)
    try:
        operator = grid.connect(network)
        operator.sign_in(*OPERATOR)
        seconds = index_domains(network, operator, args.domains, args.datasets)
        total = args.domains * args.datasets
        print(f"indexed {total} datasets of {args.domains} domains in {seconds:.1f} s "
              f"(signed join, approval and push per domain)")  # fmt: skip

        latencies, hits = [], 0
        with requests.Session() as session:
            for i in range(args.searches):
                params = QUERIES[i % len(QUERIES)]
                latencies.append(timed(session, f"{network}/api/v1/search", params=params))
            hits = len(session.get(f"{network}/api/v1/search", params=QUERIES[0]).json()["items"])
        p50_ms, p95_ms = percentile(latencies, 50) * 1e3, percentile(latencies, 95) * 1e3
        print(f"search over HTTP ({args.searches} queries, {len(QUERIES)} kinds; "
              f"{hits} hits for {QUERIES[0]['q']!r}): "
              f"p50 {p50_ms:.1f} ms, p95 {p95_ms:.1f} ms")  # fmt: skip

        owner = grid.login(domain, *OWNER)
        owner.create_user(*SCIENTIST, role="data_scientist")
        owner.join_network(network)
        [request] = operator.associations(status="pending")
        operator.approve(request.id)
        net = grid.connect(network)
        direct = net.login_domain(request.domain_id, *SCIENTIST, via="direct")
        routed = net.login_domain(request.domain_id, *SCIENTIST, via="network")
        headers = {"Authorization": f"Bearer {direct.access_token}"}
        samples: dict[str, list[float]] = {"direct": [], "routed": []}
        with requests.Session() as session:
            for i in range(args.calls * 2):
                kind = "direct" if i % 2 == 0 else "routed"
                base = direct.url if kind == "direct" else routed.url
                samples[kind].append(timed(session, f"{base}/api/v1/auth/me", headers=headers))
        p50 = {k: statistics.median(v) for k, v in samples.items()}
        print(f"small call GET /api/v1/auth/me, {args.calls} each, interleaved: direct p50 "
              f"{p50['direct'] * 1e3:.2f} ms, routed p50 {p50['routed'] * 1e3:.2f} ms, "
              f"ratio {p50['routed'] / p50['direct']:.2f}")  # fmt: skip

        path = scratch / "big.safetensors"
        rows = args.stream_mb * 1024 * 1024 // (256 * 4)
        save_file({"x": np.zeros((rows, 256), dtype=np.float32)}, str(path))
        size = path.stat().st_size
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        routed_owner = net.login_domain(request.domain_id, *OWNER, via="network")
        pid = worker_pid(network_process)
        rss_before, peak_before = memory(pid)
        with RssSampler(pid) as sampler:
            started = time.perf_counter()
            routed_owner.upload_dataset("big", path, progress=False)
            up = time.perf_counter() - started
            started = time.perf_counter()
            received = hashlib.sha256()
            with requests.get(
                f"{routed_owner.url}/api/v1/datasets/big/data",
                headers={"Authorization": f"Bearer {routed_owner.access_token}"},
                stream=True,
                timeout=600,
            ) as response:
                response.raise_for_status()
                for chunk in response.iter_content(1 << 20):
                    received.update(chunk)
            down = time.perf_counter() - started
        assert received.hexdigest() == digest, "the download differs from the upload"
        _, peak_after = memory(pid)
        mib = 2**20
        growth = (sampler.peak - rss_before) / mib
        print(f"streamed {size / 1e6:.0f} MB up ({up:.1f} s) and back down ({down:.1f} s) "
              f"through the network: its worker's RSS {rss_before / mib:.0f} MiB before, at most "
              f"{sampler.peak / mib:.0f} MiB during (+{growth:.1f} MiB); lifetime peak "
              f"{peak_before / mib:.0f} -> {peak_after / mib:.0f} MiB")  # fmt: skip
        figures = {
            "search_p50_ms": round(p50_ms, 2),
            "search_p95_ms": round(p95_ms, 2),
            "routed_over_direct": round(p50["routed"] / p50["direct"], 3),
            "stream_rss_before_mib": round(rss_before / mib, 1),
            "stream_rss_max_mib": round(sampler.peak / mib, 1),
            "stream_peak_growth_mib": round(growth, 1),
        }
        print(json.dumps(figures))
    finally:
        for process in (network_process, domain_process):
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
