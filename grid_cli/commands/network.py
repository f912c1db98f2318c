"""`grid network …`: run a network node, join and leave networks as a domain owner, find
domains and datasets, and manage a network's accounts."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import cast, get_args

import click

from grid_cli.client.network import NetworkClient
from grid_cli.commands.node_info import data_dir_option, node_info_fields
from grid_cli.commands.options import json_option, url_option
from grid_cli.commands.output import print_fields, print_json, print_table
from grid_cli.commands.serve import serve_node
from grid_cli.commands.session import open_client, open_network, read_password
from grid_cli.local.launch import DomainLaunch
from grid_common.network_schemas import NetworkRole


@click.group()
def network() -> None:
    """Run a network node, or (as a domain owner) join and leave networks."""


@network.command("start")
@click.option("--name", required=True, help="The network's name (its tokens' issuer).")
@click.option("--port", required=True, type=click.IntRange(1, 65535))
@click.option(
    "--data-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Database (SQLite by default), keys and the token secret live here.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--threads",
    default=8,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Threads per worker: each routed transfer holds one while it streams.",
)
@click.option("--dev", is_flag=True, help="Flask's development server instead of gunicorn.")
def network_start(
    name: str, port: int, data_dir: Path, host: str, workers: int, threads: int, dev: bool
) -> None:
    """Serve a network (GRID_DATABASE_URL, GRID_OPERATOR_EMAIL/PASSWORD from the environment)."""
    launch = DomainLaunch(
        name=name,
        port=port,
        data_dir=data_dir,
        host=host,
        workers=workers,
        threads=threads,
        node="network",
    )
    serve_node(launch, dev=dev)


@network.command("info")
@data_dir_option(".grid/network")
@json_option
def network_info(data_dir: Path, as_json: bool) -> None:
    """Print the network's node id and public keys (read from its data dir)."""
    print_fields("Network", node_info_fields(data_dir), as_json)


@network.command("join")
@click.argument("network_url")
@click.option(
    "--domain-url",
    help="How the network reaches this domain (default: GRID_PUBLIC_URL of the domain, else "
    "the URL you signed in to).",
)
@url_option
@json_option
def network_join(network_url: str, domain_url: str | None, url: str | None, as_json: bool) -> None:
    """Ask a network to take your domain in (run as the domain's owner)."""
    membership = open_client(url).join_network(network_url, domain_url=domain_url)
    if as_json:
        print_json(membership)
    else:
        click.echo(
            f"Asked {membership.name} ({membership.url}) to take this domain in: "
            f"{membership.status}. Network id {membership.network_id}."
        )


@network.command("leave")
@click.argument("network_id")
@url_option
@json_option
def network_leave(network_id: str, url: str | None, as_json: bool) -> None:
    """Leave a network (run as the domain's owner)."""
    pending = open_client(url).leave_network(network_id)
    if as_json:
        print_json(pending or {"network_id": network_id, "left": True})
    elif pending is None:
        click.echo(f"Left network {network_id}.")
    else:
        click.echo(
            f"The network cannot be told yet ({pending.last_error}); the domain keeps trying."
        )


@network.command("memberships")
@url_option
@json_option
def network_memberships(url: str | None, as_json: bool) -> None:
    """Networks your domain belongs to or asked to join."""
    memberships = open_client(url).networks
    if as_json:
        print_json(memberships)
        return
    print_table(
        "Networks",
        ["network id", "name", "url", "status", "last push", "problem"],
        (
            [
                m.network_id,
                m.name,
                m.url,
                m.status,
                f"{m.last_push_at:%Y-%m-%d %H:%M:%S}" if m.last_push_at else "",
                m.last_error or "",
            ]
            for m in memberships
        ),
    )


@network.command("domains")
@click.argument("network_url")
@json_option
def network_domains(network_url: str, as_json: bool) -> None:
    """The domains of a network (no sign-in needed)."""
    domains = NetworkClient(network_url).domains
    if as_json:
        print_json([dataclasses.asdict(d) for d in domains])
        return
    print_table(
        "Domains",
        ["id", "name", "url", "online", "datasets"],
        ([d.id, d.name, d.url, d.online, d.dataset_count] for d in domains),
    )


@network.command("search")
@click.argument("network_url")
@click.argument("query", default="")
@click.option("--tag", "tags", multiple=True, help="Only datasets with this tag; repeatable.")
@click.option("--column", "columns", multiple=True, help="Only schemas with this column.")
@click.option("--domain", help="Only this domain (id or name).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100))
@json_option
def network_search(
    network_url: str,
    query: str,
    tags: tuple[str, ...],
    columns: tuple[str, ...],
    domain: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Search a network's datasets: words, "phrases", OR, -word (no sign-in needed)."""
    hits = NetworkClient(network_url).search(
        query, tags=tags, columns=columns, domain=domain, limit=limit
    )
    if as_json:
        print_json(
            [
                {
                    "domain": {"id": h.domain.id, "name": h.domain.name, "url": h.domain.url},
                    "dataset": h.dataset.name,
                    "score": h.score,
                    "tags": h.dataset.tags,
                    "rows": h.dataset.row_count,
                }
                for h in hits
            ]
        )
        return
    print_table(
        "Datasets",
        ["score", "domain", "dataset", "rows", "tags", "description"],
        (
            [
                f"{h.score:.3g}",
                h.domain.name,
                h.dataset.name,
                h.dataset.row_count,
                ", ".join(h.dataset.tags),
                h.dataset.description[:60],
            ]
            for h in hits
        ),
    )


@network.group("accounts")
def network_accounts() -> None:
    """Operators and data scientists of your network (operators)."""


@network_accounts.command("add")
@click.argument("email")
@click.option(
    "--role",
    type=click.Choice(list(get_args(NetworkRole))),
    default="data_scientist",
    show_default=True,
    help="data_scientist: may search and run federated jobs; operator: runs the network.",
)
@click.option("--password-stdin", is_flag=True, help="Read the new password from stdin.")
@url_option
@json_option
def network_accounts_add(
    email: str, role: str, password_stdin: bool, url: str | None, as_json: bool
) -> None:
    """Add an account (password: stdin, $GRID_NEW_PASSWORD, or a prompt on a terminal)."""
    password = read_password(
        password_stdin, env="GRID_NEW_PASSWORD", what="new password", confirm=True
    )
    account = open_network(url).create_account(email, password, role=cast(NetworkRole, role))
    if as_json:
        print_json(account)
    else:
        click.echo(f"Created {account.email} ({account.role}), id {account.id}.")


@network_accounts.command("list")
@url_option
@json_option
def network_accounts_list(url: str | None, as_json: bool) -> None:
    """List the network's accounts."""
    accounts = open_network(url).accounts()
    if as_json:
        print_json(accounts)
        return
    print_table(
        "Accounts",
        ["id", "email", "role", "active", "created"],
        ([a.id, a.email, a.role, a.is_active, f"{a.created_at:%Y-%m-%d %H:%M}"] for a in accounts),
    )
