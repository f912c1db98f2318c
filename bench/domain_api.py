"""Requests per second of the domain API against a bare Flask endpoint, both under gunicorn.

Each server runs with one sync worker; the same load generator (N client processes, a new
connection per request, as gunicorn's sync worker closes them) drives both in the same run.
The endpoints take turns (`--rounds`), so a machine that other work slows down slows each alike;
the ratio is each endpoint's mean against the bare endpoint's, and each turn's ratio is shown.

    .venv/bin/python bench/domain_api.py [--seconds 5] [--clients 2] [--rounds 5]
        [--database-url URL] [--profile DIR]

`--profile DIR` first samples the domain's worker with py-spy (`pip install py-spy`) under each
domain endpoint's load and prints the share of each phase of a request (DIR keeps the samples).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

import grid_cli as grid

ROOT = Path(__file__).resolve().parent.parent
OWNER = ("owner@example.org", "bench-owner-password")
SCIENTIST = ("ds@example.org", "bench-ds-password")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gunicorn(app: str, port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "gunicorn", "--workers", "1", "--worker-class", "sync"]
    command += ["--bind", f"127.0.0.1:{port}", "--preload", app]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{app} exited early; see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{app} did not start within 60 s; see {log}")


def seed_domain(base: str, scratch: Path) -> tuple[str, int]:
    """Seed an owner, a data scientist, three datasets and a request; return (token, request id)."""
    owner = grid.login(base, *OWNER)
    owner.create_user(*SCIENTIST, role="data_scientist")
    rows = "\n".join(f"{i % 7},{i * 0.5},{i % 2}" for i in range(200))
    data = scratch / "data.csv"
    data.write_text(f"a,b,target\n{rows}\n")
    for name in ("digits-a", "digits-b", "breast-cancer"):
        owner.upload_dataset(name, data, label="target", description="bench", progress=False)
    scientist = grid.login(base, *SCIENTIST)
    model = nn.Sequential(nn.Linear(2, 2))
    request = scientist.submit_training(model, "digits-a", {"loss": "cross_entropy"}, "bench")
    assert scientist.access_token is not None
    return scientist.access_token, request.id


def _client(
    port: int, path: str, token: str, seconds: float, counts: multiprocessing.Queue
) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    done, errors = 0, 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        connection.close()
        if response.status == 200:
            done += 1
        else:
            errors += 1
    counts.put((done, errors))


@dataclass
class Figures:
    """One endpoint's load: requests per second, and the serving worker's CPU per request."""

    rps: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)


def worker_pid(master: int) -> int:
    """The one gunicorn worker under `master`."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    if len(children) != 1:
        raise SystemExit(f"expected one gunicorn worker under {master}, found {children}")
    return int(children[0])


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    server: int, port: int, path: str, token: str, seconds: float, clients: int, into: Figures
) -> None:
    """Drive `path` for `seconds`; add its rate and the worker's CPU per request to `into`."""
    counts: multiprocessing.Queue = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=_client, args=(port, path, token, seconds, counts))
        for _ in range(clients)
    ]
    cpu_before, started = cpu_seconds(server), time.monotonic()
    for worker in workers:
        worker.start()
    results = [counts.get() for _ in workers]
    for worker in workers:
        worker.join()
    elapsed, cpu = time.monotonic() - started, cpu_seconds(server) - cpu_before
    errors = sum(e for _, e in results)
    if errors:
        raise SystemExit(f"{errors} non-200 answers from {path}")
    done = sum(d for d, _ in results)
    into.rps.append(done / elapsed)
    into.cpu_ms.append(1000 * cpu / max(done, 1))


# Where a sampled stack's time goes: the first of these frames found in it, in this order.
PHASES = (
    ("handler (the route's own work)", "Flask.dispatch_request ("),
    ("authorize_request (token, account)", "authorize_request ("),
    ("request id, metrics and access log", "grid_common/observability.py"),
    ("session cookie", "SessionInterface."),
    ("database session close", "_close_session ("),
    ("Flask around the handler", "Flask.wsgi_app ("),
    ("gunicorn (parse, write, close)", "SyncWorker.handle ("),
)


def profile(endpoints: dict[str, Endpoint], args: argparse.Namespace, out: Path) -> None:
    """Sample the domain's worker under each domain endpoint's load; print each phase's share."""
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy on PATH (pip install py-spy)")
    out.mkdir(parents=True, exist_ok=True)
    for name, endpoint in endpoints.items():
        if not endpoint.token:
            continue
        raw = out / (endpoint.path.strip("/").replace("/", "_") + ".txt")
        command = [spy, "record", "--pid", str(endpoint.server), "--gil", "--rate", "400"]
        command += ["--nonblocking", "--format", "raw", "--output", str(raw)]
        command += ["--duration", f"{args.seconds:g}"]
        sampler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        endpoint.measure(args.seconds + 2, args.clients, Figures())  # outlasts the sampling
        sampler.wait(timeout=60)
        print(f"{name}: where the worker's time goes ({raw})")
        for phase, share in phase_shares(raw).items():
            print(f"  {phase:<40} {share:5.1%}")


def phase_shares(raw: Path) -> dict[str, float]:
    """Each phase's share of the request-serving samples in a py-spy raw (collapsed) file."""
    counts = dict.fromkeys([phase for phase, _ in PHASES], 0)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue  # a frame name py-spy split over lines
        for phase, frame in PHASES:
            if frame in stack:
                counts[phase] += int(count)
                break
    total = sum(counts.values()) or 1
    return {phase: n / total for phase, n in counts.items()}


@dataclass(frozen=True)
class Endpoint:
    """A URL to load, with the gunicorn worker that serves it."""

    server: int
    port: int
    path: str
    token: str

    def measure(self, seconds: float, clients: int, into: Figures) -> None:
        measure(self.server, self.port, self.path, self.token, seconds, clients, into)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="per endpoint, all turns")
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="endpoints take turns this many times, so a busy machine slows each alike",
    )
    parser.add_argument(
        "--database-url", default="", help="default: SQLite in a temporary data dir"
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="sample the domain's worker with py-spy (on PATH) and print where its time goes",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="grid-bench-") as scratch:
        env = {**os.environ, "GRID_DATA_DIR": scratch, "GRID_NODE_NAME": "bench"}
        env |= {"GRID_OWNER_EMAIL": OWNER[0], "GRID_OWNER_PASSWORD": OWNER[1]}
        if args.database_url:
            env["GRID_DATABASE_URL"] = args.database_url
        env["PYTHONPATH"] = str(ROOT)
        domain_port, bare_port = free_port(), free_port()
        domain = start_gunicorn("domain.wsgi:app", domain_port, env, Path(scratch) / "domain.log")
        bare = start_gunicorn("bench.bare_app:app", bare_port, env, Path(scratch) / "bare.log")
        try:
            token, request_id = seed_domain(f"http://127.0.0.1:{domain_port}", Path(scratch))
            domain_worker, bare_worker = worker_pid(domain.pid), worker_pid(bare.pid)
            endpoints = {
                BARE: Endpoint(bare_worker, bare_port, "/json", ""),
                "GET /api/v1/datasets": Endpoint(
                    domain_worker, domain_port, "/api/v1/datasets", token
                ),
                f"GET /api/v1/requests/{request_id}": Endpoint(
                    domain_worker, domain_port, f"/api/v1/requests/{request_id}", token
                ),
            }
            for endpoint in endpoints.values():
                endpoint.measure(0.5, 1, Figures())  # warm up
            if args.profile:
                profile(endpoints, args, Path(args.profile))
            figures = {name: Figures() for name in endpoints}
            for _ in range(args.rounds):
                for name, endpoint in endpoints.items():
                    endpoint.measure(args.seconds / args.rounds, args.clients, figures[name])
        finally:
            for process in (domain, bare):
                process.terminate()
                process.wait(timeout=30)
    report(figures, args)


BARE = "bare Flask JSON endpoint"


def report(figures: dict[str, Figures], args: argparse.Namespace) -> None:
    """Each endpoint's rate and CPU per request, each against the bare endpoint's."""
    backend = "PostgreSQL" if args.database_url.startswith("postgresql") else "SQLite"
    print(
        f"gunicorn, 1 sync worker each; {args.clients} client processes, "
        f"{args.seconds:g} s per endpoint in {args.rounds} turns; {backend}"
    )
    print(f"  {'':<36} {'req/s':>8} {'ratio':>6} {'turns':>10}   {'CPU/req':>8} {'ratio':>6}")
    bare = figures[BARE]
    rps = {name: statistics.fmean(f.rps) for name, f in figures.items()}
    cpu = {name: statistics.median(f.cpu_ms) for name, f in figures.items()}
    for name, f in figures.items():
        turns = sorted(v / b for v, b in zip(f.rps, bare.rps, strict=True))
        print(
            f"  {name:<36} {rps[name]:8.0f} {rps[name] / rps[BARE]:6.2f} "
            f"{turns[0]:4.2f}-{turns[-1]:4.2f}   {cpu[name]:6.2f}ms {cpu[BARE] / cpu[name]:6.2f}"
        )
    print(
        "  ratio: against the bare endpoint (for CPU, its CPU per request over this one's);\n"
        "  turns: the rate ratio in each turn; CPU/req: the serving worker's CPU time per\n"
        "  request, median over turns (a busy machine slows it less than it slows the rate)"
    )
    print(
        json.dumps(
            {name: {"rps": round(rps[name], 1), "cpu_ms": round(cpu[name], 3)} for name in figures}
        )
    )


if __name__ == "__main__":
    main()
