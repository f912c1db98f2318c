"""`grid workers …`: the owner's view of the workers that train next to the data."""

from __future__ import annotations

import click

from grid_cli.commands.options import json_option, url_option
from grid_cli.commands.output import print_json, print_table, when
from grid_cli.commands.session import open_client


@click.group()
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
            [w.id, w.name, w.status, w.host, w.current_job or "", when(w.last_heartbeat_at)]
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
