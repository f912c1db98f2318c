"""Soak: a local grid under a steady, modest mix of work for a set time; does anything grow?

A network and three domains (one gunicorn worker each, one Grid worker each, the demo
datasets: digits and breast cancer; no chain) run in real processes. After a warm-up (one
data-centric job on each domain, one federated job, a pass over the console pages: the first
of each pays imports and caches, so its cost is not counted as growth), these run side by
side until the time is up:

- network searches, about `--search-rate` a second, over a few queries;
- data-centric jobs, one after another, rotating over the domains: the data scientist submits
  a small MLP on digits through the SDK, the owner approves, the worker trains, the owner
  releases, the data scientist downloads the result;
- a federated job (the MLP, 2 rounds, CKKS) every `--federated-every` seconds, each domain's
  owner approving it; one still running when the next is due delays the next;
- console page loads, about `--page-rate` a second, over every domain's and the network's
  HTML pages, signed in through the sign-in form (owners on the domains, the operator on the
  network).

Every HTTP call is timed on the client around the call (retries off, so a 5xx is seen, not
retried away) and filed under a route family. Printed at the end: requests and errors by
status per family, p50 and p99 latency per family, the jobs done, and for each long-lived
process (the network's and each domain's gunicorn master with its workers, each Grid worker;
a worker's training child lives for one job and is listed apart) its resident memory
(/proc/<pid>/status VmRSS) and open file descriptors (/proc/<pid>/fd) after the warm-up and
after the load stopped, with a sample every minute in between, and the growth over the second
half alone (a cache that fills up grows early and stops; a leak keeps growing). Verdicts: no
5xx, RSS growth under 10%, no fd leak (each process ends with at most `FD_SLACK` more
descriptors than it started with).

    .venv/bin/python bench/soak.py --minutes 10
    .venv/bin/python bench/soak.py --seconds 90        # a short try

Ctrl-C stops the load early, prints what was measured and stops the grid.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import cycle
from pathlib import Path
from typing import Any, TypeVar

import requests
from torch import nn

import grid_cli as grid
from grid_cli.client.node import NodeClient
from grid_cli.local.grid import GridConfig, LocalDomain, LocalGrid
from grid_cli.local.processes import ManagedProcess
from grid_common.federated_schemas import FINISHED_STATUSES

DOMAINS = 3  # a federated job without differential privacy needs three
RSS_LIMIT = 0.10
# Descriptors a process may gain without it counting as a leak: pooled connections and
# sockets opened on first use of a path the warm-up did not take.
FD_SLACK = 8
JOB_TIMEOUT_S = 600.0
SEARCHES = ["digits", "cancer", "medical", "images demo", "tabular -digits", "pixels OR tumour"]
PLAN = grid.TrainingPlan(
    loss="cross_entropy", optimizer="adam", lr=0.01, epochs=2, batch_size=64, seed=0
)
# Route families, first match wins; anything else is filed as "METHOD /path" with ids as {id}.
FAMILIES: list[tuple[str, str, re.Pattern[str]]] = [
    (name, method, re.compile(pattern))
    for name, method, pattern in [
        ("search", "GET", r"^/api/v1/search$"),
        ("job submit", "POST", r"^/api/v1/requests/jobs$"),
        ("job poll", "GET", r"^/api/v1/jobs/\d+(/events)?$"),
        ("approve", "POST", r"^/api/v1/requests/\d+/approve$"),
        ("requests list", "GET", r"^/api/v1/requests$"),
        ("job release", "POST", r"^/api/v1/jobs/\d+/release$"),
        ("job result", "GET", r"^/api/v1/jobs/\d+/result$"),
        ("federated submit", "POST", r"^/api/v1/fl/jobs$"),
        ("federated poll", "GET", r"^/api/v1/fl/jobs/\d+(/rounds)?$"),
        ("federated result", "GET", r"^/api/v1/fl/jobs/\d+/result$"),
        ("console sign-in", "POST", r"^/login$"),
        ("console page", "GET", r"^/(?!api/).*$"),
    ]
]


IDS = re.compile(r"/\d+")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
Client = TypeVar("Client", bound=NodeClient)


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def family(method: str, path: str) -> str:
    """The route family of a call, for the tables."""
    for name, wanted, pattern in FAMILIES:
        if method == wanted and pattern.match(path):
            return name
    return f"{method} {IDS.sub('/{id}', path)}"


# --- measuring calls ----------------------------------------------------------------------


@dataclass
class Recorder:
    """Every call's latency and status (0: no answer) per route family, from every thread."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    failures: Counter[str] = field(default_factory=Counter)
    done: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, name: str, seconds: float, status: int) -> None:
        with self.lock:
            self.latencies[name].append(seconds)
            self.statuses[name][status] += 1

    def count(self, what: str) -> None:
        with self.lock:
            self.done[what] += 1

    def fail(self, what: str, exc: BaseException) -> None:
        with self.lock:
            self.failures[f"{what}: {type(exc).__name__}: {str(exc)[:160]}"] += 1

    def reset(self) -> None:
        with self.lock:
            self.latencies.clear()
            self.statuses.clear()
            self.failures.clear()
            self.done.clear()


def instrument(session: requests.Session, recorder: Recorder) -> None:
    """Time every request `session` sends, filing it by route family and status."""
    send = session.request

    def timed(method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        name = family(method.upper(), requests.utils.urlparse(url).path)
        started = time.perf_counter()
        try:
            response = send(method, url, *args, **kwargs)
        except requests.RequestException:
            recorder.record(name, time.perf_counter() - started, 0)
            raise
        recorder.record(name, time.perf_counter() - started, response.status_code)
        return response

    session.request = timed  # type: ignore[method-assign,assignment]


def measured(client: Client, recorder: Recorder) -> Client:
    instrument(client.http.session, recorder)
    return client


# --- processes ----------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """Every descendant of `pid` (whichever of its threads forked it)."""
    found: list[int] = []
    for listing in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            kids = [int(p) for p in listing.read_text().split()]
        except OSError:
            continue
        for kid in kids:
            found += [kid, *children(kid)]
    return found


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def fd_count(pid: int) -> int:
    try:
        return len(list(Path(f"/proc/{pid}/fd").iterdir()))
    except OSError:
        return 0


@dataclass(frozen=True)
class Usage:
    """One long-lived process (with its gunicorn workers) and what it holds at one moment."""

    pids: tuple[int, ...]
    rss_kib: int
    fds: int


def usage(process: ManagedProcess) -> tuple[Usage, Usage]:
    """The process as it lives on (a gunicorn master with its workers; a Grid worker alone),
    and its short-lived part (a Grid worker's training child: one per job)."""
    assert process.process is not None
    main = process.process.pid
    kids = children(main)
    lasting, passing = ([main, *kids], []) if process.role != "worker" else ([main], kids)

    def total(pids: list[int]) -> Usage:
        return Usage(tuple(pids), sum(map(rss_kib, pids)), sum(map(fd_count, pids)))

    return total(lasting), total(passing)


Snapshot = dict[str, tuple[Usage, Usage]]


def snapshot(local: LocalGrid) -> Snapshot:
    return {p.name: usage(p) for p in local.processes}


def federated_requests(owner: grid.DomainClient) -> list[int]:
    """The ids of the federated requests waiting for this owner."""
    return [r.id for r in owner.requests.pending if r.info.kind == "federated"]


@dataclass(frozen=True)
class Console:
    """A signed-in console session, the domain it is on (None: the network), its pages."""

    session: requests.Session
    domain: LocalDomain | None
    pages: list[str]


# --- the load -----------------------------------------------------------------------------


@dataclass
class Soak:
    """The running grid, its measured clients, and the threads that load it until `stop`."""

    local: LocalGrid
    recorder: Recorder
    stop: threading.Event = field(default_factory=threading.Event)
    federated_ids: list[int] = field(default_factory=list)
    job_ids: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    def network_client(self) -> grid.NetworkClient:
        account = self.local.scientist_account
        client = grid.login_network(
            self.local.network_url, account.email, account.password, retries=0
        )
        return measured(client, self.recorder)

    def owner(self, d: LocalDomain) -> grid.DomainClient:
        return measured(
            grid.login(d.url, d.owner.email, d.owner.password, retries=0), self.recorder
        )

    def scientist(self, d: LocalDomain) -> grid.DomainClient:
        account = d.scientist
        return measured(
            grid.login(d.url, account.email, account.password, retries=0), self.recorder
        )

    def wait_for(self, check: Callable[[], bool], what: str, every: float = 0.5) -> None:
        """Poll `check` until true; gives up at JOB_TIMEOUT_S, or at once when told to stop."""
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while not check():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            if self.stop.wait(every):
                raise InterruptedError(f"stopped while waiting for {what}")

    # One unit of each kind of work.

    def data_centric_job(
        self, d: LocalDomain, owner: grid.DomainClient, scientist: grid.DomainClient, out: Path
    ) -> None:
        job = scientist.submit_training(mlp(), "digits", PLAN, reason="soak", progress=False)
        self.job_ids[d.name].append(job.id)
        owner.approve(job.id, "soak")

        def finished() -> bool:
            return job.refresh().status in ("completed", "failed", "cancelled", "denied")

        self.wait_for(finished, f"job {job.id} on {d.name}")
        if job.status != "completed":
            raise RuntimeError(f"job {job.id} on {d.name} {job.status}: {job.failure_reason}")
        owner.release(job.id)
        job.download_result(out / f"{d.name}-{job.id}.safetensors").unlink()
        self.recorder.count("data-centric jobs completed")

    def federated_job(
        self, net: grid.NetworkClient, owners: list[grid.DomainClient], out: Path
    ) -> None:
        hits = [h for h in net.search("digits") if h.dataset.name == "digits"]
        fl = net.federated_training(mlp(), hits, PLAN, rounds=2, reason="soak", progress=False)
        self.federated_ids.append(fl.id)
        for owner in owners:

            def asked(o: grid.DomainClient = owner) -> bool:
                return bool(federated_requests(o))

            self.wait_for(asked, "a domain to receive the federated request")
            owner.approve(federated_requests(owner)[0], "soak", release_on_completion=True)
        self.wait_for(lambda: fl.refresh().info.status in FINISHED_STATUSES, f"fl job {fl.id}")
        if fl.info.status != "completed":
            raise RuntimeError(f"federated job {fl.id} {fl.info.status}")
        net.download_federated_result(fl.id, out / f"fl-{fl.id}.safetensors").unlink()
        self.recorder.count("federated jobs completed")

    def console_sessions(self) -> list[Console]:
        """A signed-in console session on each domain (its owner) and on the network."""
        domain_pages = ["/", "/requests", "/jobs", "/datasets", "/datasets/digits", "/workers"]
        domain_pages += ["/users", "/keys", "/audit", "/jobs/{job}", "/requests/{job}"]
        consoles = [
            Console(self.console_session(d.url, d.owner.email, d.owner.password), d, domain_pages)
            for d in self.local.domains
        ]
        network_pages = ["/", "/associations", "/domains", "/search?q=digits", "/federated"]
        operator = self.local.operator_account
        session = self.console_session(self.local.network_url, operator.email, operator.password)
        return [*consoles, Console(session, None, [*network_pages, "/federated/{fl}"])]

    def page_round(self, consoles: list[Console]) -> list[tuple[requests.Session, str]]:
        """Every console page once; a job's page shows the latest job of its kind."""
        fl = self.federated_ids[-1] if self.federated_ids else 0
        loads = []
        for console in consoles:
            jobs = self.job_ids.get(console.domain.name) if console.domain else None
            job = jobs[-1] if jobs else 0
            url = console.domain.url if console.domain else self.local.network_url
            for page in console.pages:
                if ("{job}" in page and not job) or ("{fl}" in page and not fl):
                    continue
                loads.append((console.session, url + page.format(job=job, fl=fl)))
        return loads

    def console_session(self, url: str, email: str, password: str) -> requests.Session:
        session = requests.Session()
        instrument(session, self.recorder)
        form = session.get(f"{url}/login", timeout=30)
        token = CSRF.search(form.text)
        assert token is not None, f"no CSRF token on {url}/login"
        body = {"email": email, "password": password, "csrf_token": token.group(1)}
        signed_in = session.post(f"{url}/login", data=body, timeout=30, allow_redirects=False)
        assert signed_in.status_code == 302, f"console sign-in on {url}: {signed_in.status_code}"
        return session

    # The loops, one thread each.

    def steady(self, what: str, rate: float, step: Callable[[], None]) -> None:
        """Run `step` about `rate` times a second until told to stop; count what fails."""
        gap = 1 / rate
        due = time.monotonic()
        while not self.stop.is_set():
            try:
                step()
            except Exception as exc:  # counted and reported; the soak goes on
                self.recorder.fail(what, exc)
            due = max(due + gap, time.monotonic())
            self.stop.wait(due - time.monotonic())

    def searches(self, rate: float) -> None:
        net, queries = self.network_client(), cycle(SEARCHES)

        def search() -> None:
            net.search(next(queries))

        self.steady("search", rate, search)
        net.close()

    def pages(self, rate: float) -> None:
        consoles = self.console_sessions()
        loads: list[tuple[requests.Session, str]] = []

        def load() -> None:
            if not loads:
                loads.extend(self.page_round(consoles))
            session, url = loads.pop(0)
            session.get(url, timeout=30).raise_for_status()

        self.steady("console page", rate, load)

    def data_centric(self, out: Path, gap: float) -> None:
        clients = [(d, self.owner(d), self.scientist(d)) for d in self.local.domains]
        for d, owner, scientist in cycle(clients):
            if self.stop.is_set():
                break
            try:
                self.data_centric_job(d, owner, scientist, out)
            except InterruptedError:
                break
            except Exception as exc:  # counted and reported; the soak goes on
                self.recorder.fail("data-centric job", exc)
            self.stop.wait(gap)

    def federated(self, out: Path, every: float) -> None:
        net = self.network_client()
        owners = [self.owner(d) for d in self.local.domains]
        due = time.monotonic()
        while not self.stop.wait(max(0.0, due - time.monotonic())):
            due += every
            try:
                self.federated_job(net, owners, out)
            except InterruptedError:
                break
            except Exception as exc:  # counted and reported; the soak goes on
                self.recorder.fail("federated job", exc)
            if time.monotonic() > due:
                self.recorder.count("federated jobs started late (the last one ran long)")
                due = time.monotonic()


# --- the report ---------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report_calls(recorder: Recorder, seconds: float) -> int:
    """Print the call tables; returns how many answers were 5xx."""
    total = sum(sum(c.values()) for c in recorder.statuses.values())
    print(f"\nrequests: {total} in {seconds:.0f} s ({total / seconds:.1f}/s)")
    print(f"{'route family':<36}{'calls':>6}{'p50 ms':>8}{'p99 ms':>8}  statuses")
    for name in sorted(recorder.latencies):
        times = recorder.latencies[name]
        codes = ", ".join(
            f"{code or 'no answer'}: {n}" for code, n in sorted(recorder.statuses[name].items())
        )
        print(
            f"{name:<36}{len(times):>6}{statistics.median(times) * 1000:>8.0f}"
            f"{percentile(times, 0.99) * 1000:>8.0f}  {codes}"
        )
    by_status: Counter[int] = Counter()
    for counts in recorder.statuses.values():
        by_status.update({code: n for code, n in counts.items() if code >= 400 or code == 0})
    errors = ", ".join(f"{code or 'no answer'}: {n}" for code, n in sorted(by_status.items()))
    print(f"errors by status: {errors or 'none'}")
    for what, n in sorted(recorder.done.items()):
        print(f"{what}: {n}")
    for failure, n in recorder.failures.most_common():
        print(f"FAILED x{n}: {failure}")
    return sum(n for code, n in by_status.items() if code >= 500)


def report_processes(samples: list[tuple[float, Snapshot]]) -> tuple[float, int]:
    """Print memory and descriptors per process, from the first sample (after the warm-up) to
    the last (after the load stopped), and every sample between; returns the largest RSS
    growth and the largest fd gain of a long-lived process. The growth over the second half
    tells a cache that fills up (it grows early, then stops) from a leak (it keeps growing)."""
    start, middle, end = samples[0][1], samples[len(samples) // 2][1], samples[-1][1]
    print(
        f"\n{'process (gunicorn: master+workers)':<36}pids  RSS MiB start -> end   growth"
        "  2nd half  fds"
    )
    worst_growth, worst_fds = 0.0, 0
    for name, (before, _) in start.items():
        after = end[name][0]
        growth = after.rss_kib / before.rss_kib - 1 if before.rss_kib else 0.0
        late = after.rss_kib / middle[name][0].rss_kib - 1 if middle[name][0].rss_kib else 0.0
        worst_growth, worst_fds = max(worst_growth, growth), max(worst_fds, after.fds - before.fds)
        print(
            f"{name:<36}{len(after.pids):>4}  {before.rss_kib / 1024:7.1f} -> "
            f"{after.rss_kib / 1024:7.1f} {growth:+8.1%} {late:+8.1%}  {before.fds} -> {after.fds}"
        )
        if end[name][1].pids or start[name][1].pids:
            child = [shot[name][1] for shot in (start, end)]
            print(
                f"{'  its training child (one per job)':<40}  {child[0].rss_kib / 1024:7.1f} -> "
                f"{child[1].rss_kib / 1024:7.1f}                    {child[0].fds} -> "
                f"{child[1].fds}"
            )
    times = " ".join(f"{t / 60:6.1f}" for t, _ in samples)
    print(f"\nRSS MiB of each long-lived process over time\n{'minutes':<36}{times}")
    for name in start:
        series = " ".join(f"{shot[name][0].rss_kib / 1024:6.0f}" for _, shot in samples)
        print(f"{name:<36}{series}")
    fds = " ".join(f"{sum(u[0].fds for u in shot.values()):6}" for _, shot in samples)
    print(f"{'open fds, all of them':<36}{fds}")
    return worst_growth, worst_fds


# --- running it ---------------------------------------------------------------------------


def start_grid(root: Path) -> LocalGrid:
    config = GridConfig(
        data_dir=root, domains=DOMAINS, port=0, chain=False, lease_s=10, worker_poll_s=0.5
    )
    return LocalGrid(config, supervised=False).start(lambda step: print(f"  {step}", flush=True))


def warm_up(soak: Soak, out: Path) -> None:
    """One of each kind of work, so that first-use costs are not counted as growth."""
    net = soak.network_client()
    owners = [soak.owner(d) for d in soak.local.domains]
    for d, owner in zip(soak.local.domains, owners, strict=True):
        soak.data_centric_job(d, owner, soak.scientist(d), out)
    soak.federated_job(net, owners, out)
    for session, url in soak.page_round(soak.console_sessions()):
        session.get(url, timeout=30).raise_for_status()
    for query in SEARCHES:
        net.search(query)


def run(seconds: float, args: argparse.Namespace, scratch: Path) -> bool:
    """Start the grid, warm it up, load it for `seconds`, print the figures; True if all held."""
    print(f"starting a local grid in {scratch}", flush=True)
    local = start_grid(scratch / "grid")
    out = scratch / "results"
    out.mkdir()
    soak = Soak(local, Recorder())
    try:
        print("warming up: a data-centric job per domain, a federated job, every page", flush=True)
        warm_up(soak, out)
        soak.recorder.reset()
        samples = [(0.0, snapshot(local))]
        threads = [
            threading.Thread(target=soak.searches, args=(args.search_rate,), name="search"),
            threading.Thread(target=soak.pages, args=(args.page_rate,), name="pages"),
            threading.Thread(target=soak.data_centric, args=(out, args.job_gap), name="jobs"),
            threading.Thread(target=soak.federated, args=(out, args.federated_every), name="fl"),
        ]
        began = time.monotonic()
        print(f"soaking for {seconds:.0f} s (Ctrl-C stops early)", flush=True)
        for thread in threads:
            thread.daemon = True  # a thread stuck in a call must not keep the grid up
            thread.start()
        try:
            while (left := began + seconds - time.monotonic()) > 0:
                time.sleep(min(left, 60.0))
                if time.monotonic() - began >= 60 * len(samples) - 1:
                    samples.append((time.monotonic() - began, snapshot(local)))
                    print(f"  {samples[-1][0] / 60:.0f} min", flush=True)
        except KeyboardInterrupt:
            print("\ninterrupted: stopping the load", flush=True)
        soak.stop.set()
        elapsed = time.monotonic() - began
        for thread in threads:
            thread.join(timeout=60)
        samples.append((time.monotonic() - began, snapshot(local)))
        fives = report_calls(soak.recorder, elapsed)
        growth, fds = report_processes(samples)
    finally:
        print("\nstopping the grid", flush=True)
        stuck = local.stop()
        if stuck:
            print(f"processes that would not stop: {stuck}")
    held = [
        (f"5xx answers: {fives} (aim 0)", fives == 0),
        (f"largest RSS growth: {growth:+.1%} (aim under {RSS_LIMIT:.0%})", growth < RSS_LIMIT),
        (f"largest fd gain: {fds:+d} (aim at most {FD_SLACK})", fds <= FD_SLACK),
    ]
    for line, ok in held:
        print(f"{'ok  ' if ok else 'FAIL'} {line}")
    return all(ok for _, ok in held) and not soak.recorder.failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, default=10.0)
    length.add_argument("--seconds", type=float, help="instead of --minutes")
    parser.add_argument("--search-rate", type=float, default=1.0, help="searches a second")
    parser.add_argument("--page-rate", type=float, default=1.0, help="console pages a second")
    parser.add_argument("--job-gap", type=float, default=5.0, help="seconds between jobs")
    parser.add_argument("--federated-every", type=float, default=60.0, help="seconds")
    args = parser.parse_args()
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    try:
        with tempfile.TemporaryDirectory(prefix="grid-soak-") as scratch:
            held = run(seconds, args, Path(scratch))
    except KeyboardInterrupt:
        sys.exit("interrupted before the load began; the grid is stopped")
    sys.exit(0 if held else 1)


if __name__ == "__main__":
    main()
