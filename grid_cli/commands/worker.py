"""`grid worker start`: one worker process; the only command module that imports the worker."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import click

from grid_cli.local.launch import WORKER_MODULES, NodeExtraMissing, require_node_extra
from grid_common.logs import configure_logging


@click.group()
def worker() -> None:
    """Run a worker process."""


@worker.command("start")
@click.option("--domain", "domain_url", required=True, envvar="GRID_DOMAIN_URL", help="Its domain.")
@click.option(
    "--token", envvar="GRID_WORKER_TOKEN", required=True, help="From `grid workers add` (env var)."
)
@click.option(
    "--work-dir",
    type=click.Path(path_type=Path),
    default=Path(".grid/worker"),
    show_default=True,
    envvar="GRID_WORKER_DIR",
    help="Where inputs are fetched to (datasets are cached by digest).",
)
@click.option(
    "--poll-interval",
    type=float,
    default=2.0,
    show_default=True,
    help="Seconds between lease requests the domain answers at once (it holds each one up to "
    "GRID_LEASE_WAIT_S for a job, so new work starts without waiting for this).",
)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    envvar="GRID_WORKER_DEVICE",
    help="Where training runs: cpu, cuda (a GPU; refused if none answers), cuda:N, or auto.",
)
def worker_start(
    domain_url: str, token: str, work_dir: Path, poll_interval: float, device: str
) -> None:
    """Lease jobs from the domain and train them, until interrupted (Ctrl-C or SIGTERM)."""
    try:
        require_node_extra("A worker", WORKER_MODULES)
    except NodeExtraMissing as exc:
        raise click.ClickException(str(exc)) from None
    # Loaded here only: the rest of `grid` never pulls in the worker and its training stack.
    from worker.device import DeviceError, resolve_device
    from worker.domain_api import DomainWorkerApi
    from worker.runner import Worker, WorkerOptions, WorkerRevoked

    try:
        device = resolve_device(device)
    except DeviceError as exc:
        raise click.ClickException(str(exc)) from None

    configure_logging()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    api = DomainWorkerApi(domain_url, token)
    options = WorkerOptions(work_dir=work_dir, poll_interval_s=poll_interval, device=device)
    click.echo(f"Worker {os.getpid()} taking jobs from {api.url} on {device}", err=True)
    try:
        Worker(api, options).run(stop)
    except WorkerRevoked as exc:
        raise click.ClickException(f"{exc}; register it again with `grid workers add`") from None
