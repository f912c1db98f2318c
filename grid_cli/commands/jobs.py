"""`grid workers|worker|jobs|results|budgets`: run workers, follow jobs, release results."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, cast, get_args

import click

from grid_cli.client.jobs import FINISHED
from grid_cli.commands.app import json_option, main, open_client, url_option
from grid_cli.commands.output import print_json, print_table
from grid_common.logs import configure_logging
from grid_common.schemas import JobStatus

JOB_STATUSES = list(get_args(JobStatus))


# --- workers (the owner's view) -----------------------------------------------


@main.group()
def workers() -> None:
    """Workers that train next to the data: register, list, revoke."""


@workers.command("add")
@click.argument("name")
@url_option
@json_option
def workers_add(name: str, url: str | None, as_json: bool) -> None:
    """Register a worker and print its token (shown once; start it with `grid worker start`)."""
    client = open_client(url)
    worker = client.add_worker(name)
    if as_json:
        print_json(worker)
        return
    click.echo(f"Worker {worker.name} registered (id {worker.id}). Its token, shown only now:")
    click.echo(worker.token)
    click.echo(f"Start it with: GRID_WORKER_TOKEN=<token> grid worker start --domain {client.url}")


@workers.command("list")
@url_option
@json_option
def workers_list(url: str | None, as_json: bool) -> None:
    """Workers with status, last heartbeat and current job."""
    found = open_client(url).workers
    if as_json:
        print_json(found)
        return
    print_table(
        "Workers",
        ["id", "name", "status", "host", "job", "last heartbeat"],
        (
            [w.id, w.name, w.status, w.host, w.current_job or "", _when(w.last_heartbeat_at)]
            for w in found
        ),
    )


@workers.command("revoke")
@click.argument("worker_id", type=int)
@url_option
@json_option
def workers_revoke(worker_id: int, url: str | None, as_json: bool) -> None:
    """Revoke a worker's token; a job it held goes back to the queue when its lease runs out."""
    open_client(url).revoke_worker(worker_id)
    if as_json:
        print_json({"id": worker_id, "revoked": True})
    else:
        click.echo(f"Worker {worker_id} revoked.")


# --- one worker process -------------------------------------------------------


@main.group()
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
@click.option("--poll-interval", type=float, default=2.0, show_default=True, help="Seconds.")
@click.option("--device", default="cpu", show_default=True, help="cpu, or cuda for a GPU.")
def worker_start(
    domain_url: str, token: str, work_dir: Path, poll_interval: float, device: str
) -> None:
    """Lease jobs from the domain and train them, until interrupted (Ctrl-C or SIGTERM)."""
    from worker.domain_api import DomainWorkerApi
    from worker.runner import Worker, WorkerOptions, WorkerRevoked

    configure_logging()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    api = DomainWorkerApi(domain_url, token)
    options = WorkerOptions(work_dir=work_dir, poll_interval_s=poll_interval, device=device)
    click.echo(f"Worker {os.getpid()} taking jobs from {api.url}", err=True)
    try:
        Worker(api, options).run(stop)
    except WorkerRevoked as exc:
        raise click.ClickException(f"{exc}; register it again with `grid workers add`") from None


# --- jobs ---------------------------------------------------------------------


@main.group()
def jobs() -> None:
    """Jobs: list, show one, follow the logs, cancel."""


@jobs.command("list")
@click.option("--status", type=click.Choice(JOB_STATUSES), help="Only jobs with this status.")
@url_option
@json_option
def jobs_list(status: str | None, url: str | None, as_json: bool) -> None:
    """Jobs: all of them for reviewers, your own otherwise."""
    found = open_client(url).list_jobs(cast(JobStatus | None, status))
    if as_json:
        print_json([j.info for j in found])
        return
    print_table(
        "Jobs",
        ["id", "status", "requester", "datasets", "attempt", "worker", "result", "why it ended"],
        (
            [
                j.id,
                j.info.status,
                j.info.requester,
                ", ".join(j.info.datasets),
                j.info.attempt,
                j.info.worker or "",
                j.info.result_status,
                j.info.failure_reason or "",
            ]
            for j in found
        ),
    )


@jobs.command("logs")
@click.argument("job_id", type=int)
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the job ends.")
@url_option
@json_option
def jobs_logs(job_id: int, follow: bool, url: str | None, as_json: bool) -> None:
    """Print a job's log lines and progress points."""
    client = open_client(url)
    after = 0
    while True:
        events = client.job_events(job_id, after=after)
        for event in events:
            if as_json:
                click.echo(event.model_dump_json())
            else:
                click.echo(_event_line(event.kind, event.attempt, event.at, event.data))
        after = events[-1].id if events else after
        if not follow or (not events and client.job_info(job_id).status in FINISHED):
            return
        if not events:
            time.sleep(1.0)


@jobs.command("cancel")
@click.argument("job_id", type=int)
@url_option
@json_option
def jobs_cancel(job_id: int, url: str | None, as_json: bool) -> None:
    """Cancel a job; a running one stops within a heartbeat."""
    info = open_client(url).cancel_job(job_id)
    if as_json:
        print_json(info)
    else:
        click.echo(
            f"Job {job_id}: {info.status}" + (" (stopping)" if info.status == "running" else "")
        )


# --- results ------------------------------------------------------------------


@main.group()
def results() -> None:
    """Results of jobs: release them to their data scientists, download them."""


@results.command("release")
@click.argument("job_id", type=int)
@url_option
@json_option
def results_release(job_id: int, url: str | None, as_json: bool) -> None:
    """Release a held result to the job's data scientist."""
    info = open_client(url).release(job_id)
    if as_json:
        print_json(info)
    else:
        click.echo(f"Job {job_id}: result {info.result_status}.")


# --- privacy budgets ------------------------------------------------------------


@main.group()
def budgets() -> None:
    """Privacy budgets (epsilon) per dataset and per data scientist."""


@budgets.command("set")
@click.argument("dataset")
@click.argument("epsilon", type=float)
@click.option("--data-scientist", help="Whose budget (email); default: the dataset's, for all.")
@click.option(
    "--network",
    help="With --data-scientist: a network's data scientist (the network's name as joined).",
)
@url_option
@json_option
def budgets_set(
    dataset: str,
    epsilon: float,
    data_scientist: str | None,
    network: str | None,
    url: str | None,
    as_json: bool,
) -> None:
    """Cap the epsilon DP jobs may spend on a dataset; jobs on it must then train with DP."""
    client = open_client(url)
    budget = client.set_privacy_budget(
        dataset, epsilon, data_scientist=data_scientist, network=network
    )
    _print_budget(budget, as_json)


@budgets.command("show")
@click.argument("dataset")
@url_option
@json_option
def budgets_show(dataset: str, url: str | None, as_json: bool) -> None:
    """Budgets on a dataset with what is spent and left."""
    _print_budget(open_client(url).privacy_budget(dataset), as_json)


def _print_budget(budget: Any, as_json: bool) -> None:
    if as_json:
        print_json(budget)
        return
    print_table(
        f"Privacy budget of {budget.dataset} (spent in all: {budget.spent:g})",
        ["whose", "epsilon", "spent", "left"],
        ([_whose(b), f"{b.epsilon:g}", f"{b.spent:g}", f"{b.left:g}"] for b in budget.budgets),
    )


def _whose(line: Any) -> str:
    if line.network is not None:
        return f"{line.data_scientist} via network {line.network}"
    return str(line.data_scientist or "everyone")


def _when(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value else ""


def _event_line(kind: str, attempt: int, at: Any, data: dict[str, Any]) -> str:
    if kind == "log":
        return f"{at:%H:%M:%S} [{attempt}] {data.get('message', '')}"
    figures = " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in data.items()
    )
    return f"{at:%H:%M:%S} [{attempt}] progress {figures}"
