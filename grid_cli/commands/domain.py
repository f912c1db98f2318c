"""`grid domain …`: run a domain node, and show its identity."""

from __future__ import annotations

from pathlib import Path

import click

from grid_cli.commands.node_info import data_dir_option, node_info_fields
from grid_cli.commands.options import json_option
from grid_cli.commands.output import print_fields
from grid_cli.commands.serve import serve_node
from grid_cli.local.launch import DomainLaunch


@click.group()
def domain() -> None:
    """Run a domain node."""


@domain.command("start")
@click.option("--name", required=True, help="The node's name (its tokens' issuer).")
@click.option("--port", required=True, type=click.IntRange(1, 65535))
@click.option(
    "--data-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Database (SQLite by default), blobs and the signing key live here.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--threads",
    default=8,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Threads per gunicorn worker: each worker waiting for a job (a long poll, up to "
    "GRID_LEASE_WAIT_S) holds one. With 1, set GRID_LEASE_WAIT_S=0.",
)
@click.option("--dev", is_flag=True, help="Flask's development server instead of gunicorn.")
def domain_start(
    name: str, port: int, data_dir: Path, host: str, workers: int, threads: int, dev: bool
) -> None:
    """Serve a domain (GRID_DATABASE_URL, GRID_OWNER_EMAIL/PASSWORD come from the environment)."""
    launch = DomainLaunch(
        name=name, port=port, data_dir=data_dir, host=host, workers=workers, threads=threads
    )
    serve_node(launch, dev=dev)


@domain.command("info")
@data_dir_option(".grid/domain")
@json_option
def domain_info(data_dir: Path, as_json: bool) -> None:
    """Print the domain's node id and public keys (read from its data dir)."""
    print_fields("Domain", node_info_fields(data_dir), as_json)
