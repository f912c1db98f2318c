"""`grid jobs …`: list jobs, show one, follow its logs, cancel it."""

from __future__ import annotations

import json
import time
from typing import Any, cast, get_args

import click

from grid_cli.client.jobs import FINISHED
from grid_cli.commands.options import json_option, url_option
from grid_cli.commands.output import field_table, print_json, print_table, when
from grid_cli.commands.session import fix_on, open_client
from grid_common.schemas import JobOut, JobStatus

JOB_STATUSES = list(get_args(JobStatus))


@click.group()
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


@jobs.command("show")
@click.argument("job_id", type=int)
@url_option
@json_option
def jobs_show(job_id: int, url: str | None, as_json: bool) -> None:
    """Show one job: status, limits, metrics, result and its hashes."""
    with fix_on(404, "see the ids you may read with `grid jobs list`"):
        info = open_client(url).job_info(job_id)
    if as_json:
        print_json(info)
        return
    limits = info.limits
    field_table(
        f"Job {info.id}",
        {
            "kind": info.kind,
            "status": info.status + (" (cancelling)" if info.cancel_requested else ""),
            "requester": info.requester,
            "datasets": ", ".join(info.datasets),
            "why": info.reason,
            "attempt": f"{info.attempt} of {info.max_attempts}",
            "worker": info.worker,
            "limits": (
                f"{limits.cpu_seconds} cpu s, {limits.memory_mb} MB, {limits.wall_seconds} s"
                if limits
                else None
            ),
            "metrics": json.dumps(info.metrics) if info.metrics else None,
            "epsilon spent": _spent(info),
            "why it ended": info.failure_reason,
            "result": info.result_status,
            "filed": when(info.created_at),
            "started": when(info.started_at),
            "finished": when(info.finished_at),
            "released": when(info.released_at),
            "spec sha256": info.spec_hash,
            "result sha256": info.result_hash,
            "registry job id": info.registry_job_id,
        },
    )


def _spent(info: JobOut) -> str | None:
    """A DP job's spend as its accountant counted it, against what was approved."""
    dp = (info.plan or {}).get("dp") if info.kind != "analytics" else None
    if info.epsilon_spent is None:
        return None
    approved = f" of {dp['epsilon']:g} approved (delta {dp['delta']:g})" if dp else ""
    return f"{info.epsilon_spent:.4g}{approved}"


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


def _event_line(kind: str, attempt: int, at: Any, data: dict[str, Any]) -> str:
    if kind == "log":
        return f"{at:%H:%M:%S} [{attempt}] {data.get('message', '')}"
    figures = " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in data.items()
    )
    return f"{at:%H:%M:%S} [{attempt}] progress {figures}"
