"""`grid associations …`: domains asking to join your network, and those that did."""

from __future__ import annotations

from typing import cast, get_args

import click

from grid_cli.commands.options import json_option, url_option
from grid_cli.commands.output import field_table, print_json, print_table, when
from grid_cli.commands.session import fix_on, open_network
from grid_common.network_schemas import AssociationOut, AssociationStatus

STATUSES = list(get_args(AssociationStatus))


@click.group()
def associations() -> None:
    """Domains asking to join your network, and those that did (operators)."""


@associations.command("list")
@click.option("--status", type=click.Choice(STATUSES), help="Only this status.")
@url_option
@json_option
def associations_list(status: str | None, url: str | None, as_json: bool) -> None:
    """List association requests and associated domains."""
    items = open_network(url).associations(cast(AssociationStatus | None, status))
    if as_json:
        print_json(items)
        return
    print_table(
        "Associations",
        ["id", "domain", "status", "online", "datasets", "requested", "url"],
        (
            [
                a.id,
                a.name,
                a.status,
                a.online,
                a.dataset_count,
                f"{a.requested_at:%Y-%m-%d %H:%M}",
                a.url,
            ]
            for a in items
        ),
    )


@associations.command("show")
@click.argument("association_id", type=int)
@url_option
@json_option
def associations_show(association_id: int, url: str | None, as_json: bool) -> None:
    """Show one association: the domain, its keys, health and the decision (operators)."""
    with fix_on(404, "see the ids with `grid associations list`"):
        item = open_network(url).association(association_id)
    if as_json:
        print_json(item)
        return
    field_table(
        f"Association {item.id}",
        {
            "domain": item.name,
            "domain id": item.domain_id,
            "url": item.url,
            "status": item.status,
            "online": item.online,
            "last seen": when(item.last_seen),
            "datasets": item.dataset_count,
            "requested": when(item.requested_at),
            "decided": when(item.decided_at),
            "decided by": item.decided_by,
            "why": item.decision_reason,
            "signing key": item.signing_key,
            "encryption key": item.encryption_key,
        },
    )


@associations.command("approve")
@click.argument("association_id", type=int)
@click.option("--reason", default="", help="Why (the domain sees it).")
@url_option
@json_option
def associations_approve(association_id: int, reason: str, url: str | None, as_json: bool) -> None:
    """Approve a domain's request to join."""
    _print_association(open_network(url).approve(association_id, reason=reason), as_json)


@associations.command("reject")
@click.argument("association_id", type=int)
@click.option("--reason", required=True, help="Why (the domain sees it).")
@url_option
@json_option
def associations_reject(association_id: int, reason: str, url: str | None, as_json: bool) -> None:
    """Reject a domain's request to join."""
    _print_association(open_network(url).reject(association_id, reason=reason), as_json)


@associations.command("remove")
@click.argument("association_id", type=int)
@url_option
@json_option
def associations_remove(association_id: int, url: str | None, as_json: bool) -> None:
    """Remove an associated domain: no more routing to it, its datasets leave the index."""
    open_network(url).remove_domain(association_id)
    if as_json:
        print_json({"removed": association_id})
    else:
        click.echo(f"Removed association {association_id}.")


def _print_association(item: AssociationOut, as_json: bool) -> None:
    if as_json:
        print_json(item)
    else:
        why = f": {item.decision_reason}" if item.decision_reason else "."
        click.echo(f"Association {item.id} ({item.name}) {item.status}{why}")
