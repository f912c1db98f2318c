"""`grid audit …`: the domain's hash-chained audit log."""

from __future__ import annotations

import json
from typing import Any

import click

from grid_cli.commands.options import json_option, url_option
from grid_cli.commands.output import print_json, print_table
from grid_cli.commands.session import open_client


@click.group()
def audit() -> None:
    """The domain's hash-chained audit log."""


@audit.command("verify")
@url_option
@json_option
def audit_verify(url: str | None, as_json: bool) -> None:
    """Recompute the audit chain; exit status 1 names the first broken entry."""
    report = open_client(url).verify_audit()
    if as_json:
        print_json(report)
    elif report.ok:
        click.echo(f"Audit log intact: {report.entries} entries, head {report.head_hash[:16]}…")
    else:
        click.echo(
            f"Audit log broken at entry {report.first_broken_seq}: {report.problem} "
            f"({report.entries} entries before it are intact).",
            err=True,
        )
    if not report.ok:
        click.get_current_context().exit(1)


@audit.command("list")
@click.option("--actor", help="Only entries of this actor (an email, or a worker).")
@click.option("--action", help="Only actions starting with this, e.g. `users.` or `datasets.`.")
@click.option("--after", type=click.IntRange(0), default=0, help="Entries after this number.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@url_option
@json_option
def audit_list(
    actor: str | None, action: str | None, after: int, limit: int, url: str | None, as_json: bool
) -> None:
    """List audit entries in order (owner, admin and compliance officer)."""
    entries = open_client(url).audit_log(actor=actor, action=action, after=after, limit=limit)
    if as_json:
        print_json(entries)
        return
    print_table(
        "Audit log",
        ["#", "at", "actor", "action", "target", "address", "details"],
        (
            [
                e.seq,
                e.at[:19].replace("T", " "),
                e.actor,
                e.action,
                e.target,
                e.address,
                _compact(e.details),
            ]
            for e in entries
        ),
        overflow="fold",
        whole=("#", "action"),
    )


def _compact(details: dict[str, Any], width: int = 60) -> str:
    text = json.dumps(details, separators=(",", ":"), default=str) if details else ""
    return text if len(text) <= width else text[: width - 1] + "…"
