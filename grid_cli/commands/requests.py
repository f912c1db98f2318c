"""`grid requests …`: access and job requests, and their decisions."""

from __future__ import annotations

import json
from typing import Any, cast, get_args

import click

from grid_cli.commands.options import json_option, url_option
from grid_cli.commands.output import field_table, print_json, print_table, when
from grid_cli.commands.session import fix_on, open_client
from grid_common.schemas import JobLimits, RequestStatus

STATUSES = list(get_args(RequestStatus))


@click.group()
def requests() -> None:
    """Access and job requests, and their decisions."""


@requests.command("list")
@click.option("--status", type=click.Choice(STATUSES), help="Only requests with this status.")
@url_option
@json_option
def requests_list(status: str | None, url: str | None, as_json: bool) -> None:
    """List requests: all of them for reviewers, your own otherwise."""
    found = open_client(url).list_requests(cast(RequestStatus | None, status))
    if as_json:
        print_json([r.info for r in found])
        return
    print_table(
        "Requests",
        ["id", "kind", "status", "requester", "datasets", "why", "decision"],
        (
            [
                r.id,
                r.kind,
                r.status,
                r.requester,
                ", ".join(r.datasets),
                r.request_reason,
                r.reason or "",
            ]
            for r in found
        ),
    )


@requests.command("show")
@click.argument("request_id", type=int)
@url_option
@json_option
def requests_show(request_id: int, url: str | None, as_json: bool) -> None:
    """Show one request with its decision (reviewers: any; others: their own)."""
    with fix_on(404, "see the ids you may read with `grid requests list`"):
        request = open_client(url).request(request_id)
    info = request.info
    if as_json:
        print_json(info)
        return
    field_table(
        f"Request {info.id}",
        {
            "kind": info.kind,
            "status": info.status + (" (auto-approved)" if info.auto_approved else ""),
            "requester": info.requester,
            "datasets": ", ".join(info.datasets),
            "why": info.reason,
            "decision": info.decision_reason,
            "decided by": info.decided_by,
            "decided at": when(info.decided_at),
            "filed": when(info.created_at),
            "plan": json.dumps(info.plan) if info.plan else None,
            "peer domains": info.peers,
            "live metrics": info.live_metrics,
        },
    )


@requests.command("approve")
@click.argument("request_id", type=int)
@click.option("--reason", default="", help="Why (the requester sees it).")
@click.option("--cpu-seconds", type=int, help="Jobs: CPU time one attempt may use.")
@click.option("--memory-mb", type=int, help="Jobs: memory one attempt may use.")
@click.option("--wall-seconds", type=int, help="Jobs: wall-clock time one attempt may take.")
@click.option(
    "--release-on-completion", is_flag=True, help="Jobs: release the result as soon as it is in."
)
@url_option
@json_option
def requests_approve(
    request_id: int,
    reason: str,
    cpu_seconds: int | None,
    memory_mb: int | None,
    wall_seconds: int | None,
    release_on_completion: bool,
    url: str | None,
    as_json: bool,
) -> None:
    """Approve a pending request (a job's limits default to the domain's settings)."""
    client = open_client(url)
    limits = None
    asked = {"cpu_seconds": cpu_seconds, "memory_mb": memory_mb, "wall_seconds": wall_seconds}
    if any(v is not None for v in asked.values()):
        defaults = client.settings.job_limits.model_dump()
        limits = JobLimits(**{k: defaults[k] if v is None else v for k, v in asked.items()})
    decision = client.approve(
        request_id, reason=reason, limits=limits, release_on_completion=release_on_completion
    )
    _print_decision(decision, as_json)


@requests.command("deny")
@click.argument("request_id", type=int)
@click.option("--reason", required=True, help="Why (the requester sees it).")
@url_option
@json_option
def requests_deny(request_id: int, reason: str, url: str | None, as_json: bool) -> None:
    """Deny a pending request."""
    _print_decision(open_client(url).deny(request_id, reason=reason), as_json)


def _print_decision(request: Any, as_json: bool) -> None:
    if as_json:
        print_json(request.info)
    else:
        why = f": {request.reason}" if request.reason else "."
        click.echo(f"Request {request.id} {request.status}{why}")
