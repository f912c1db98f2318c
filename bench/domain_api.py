"""Requests per second of the domain API against a bare Flask endpoint, both under gunicorn.

Each server runs with one sync worker; the same load generator (N client processes, a new
connection per request, as gunicorn's sync worker closes them) drives both in the same run.

    .venv/bin/python bench/domain_api.py [--seconds 5] [--clients 2] [--database-url URL]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
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


def measure(port: int, path: str, token: str, seconds: float, clients: int) -> float:
    _client(port, path, token, 0.5, multiprocessing.Queue())  # warm up
    counts: multiprocessing.Queue = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=_client, args=(port, path, token, seconds, counts))
        for _ in range(clients)
    ]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    results = [counts.get() for _ in workers]
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - started
    errors = sum(e for _, e in results)
    if errors:
        raise SystemExit(f"{errors} non-200 answers from {path}")
    return sum(d for d, _ in results) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument(
        "--database-url", default="", help="default: SQLite in a temporary data dir"
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
            bare_rps = measure(bare_port, "/json", "", args.seconds, args.clients)
            figures = {
                "bare Flask JSON endpoint": bare_rps,
                "GET /api/v1/datasets": measure(
                    domain_port, "/api/v1/datasets", token, args.seconds, args.clients
                ),
                f"GET /api/v1/requests/{request_id}": measure(
                    domain_port, f"/api/v1/requests/{request_id}", token, args.seconds, args.clients
                ),
            }
        finally:
            for process in (domain, bare):
                process.terminate()
                process.wait(timeout=30)

    backend = "PostgreSQL" if args.database_url.startswith("postgresql") else "SQLite"
    print(
        f"gunicorn, 1 sync worker each; {args.clients} client processes, "
        f"{args.seconds:g} s per endpoint; {backend}"
    )
    for name, rps in figures.items():
        ratio = rps / bare_rps
        print(f"  {name:<36} {rps:8.0f} req/s   ratio to bare {ratio:4.2f}")
    print(json.dumps({k: round(v, 1) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
