"""`grid keys …`: your API keys, long-lived credentials for scripts."""

from __future__ import annotations

import click

from grid_cli.commands.options import json_option, url_option
from grid_cli.commands.output import print_json, print_table, when
from grid_cli.commands.session import fix_on, open_client


@click.group()
def keys() -> None:
    """Your API keys: long-lived credentials for scripts, acting as your account."""


@keys.command("list")
@url_option
@json_option
def keys_list(url: str | None, as_json: bool) -> None:
    """List your API keys (their secrets are never shown again)."""
    found = open_client(url).api_keys
    if as_json:
        print_json(found)
        return
    print_table(
        "API keys",
        ["id", "name", "prefix", "created", "last used", "revoked"],
        (
            [k.id, k.name, k.prefix, when(k.created_at), when(k.last_used_at), k.revoked]
            for k in found
        ),
    )


@keys.command("create")
@click.argument("name")
@url_option
@json_option
def keys_create(name: str, url: str | None, as_json: bool) -> None:
    """Create an API key and print it (shown once)."""
    client = open_client(url)
    key = client.create_api_key(name)
    if as_json:
        print_json(key)
        return
    click.echo(f"API key {key.name} created (id {key.id}). The key, shown only now:")
    click.echo(key.key)
    click.echo(
        f"Use it as `Authorization: Bearer <key>`, or grid.connect({client.url!r}, api_key=<key>)."
    )


@keys.command("revoke")
@click.argument("key_id", type=int)
@url_option
@json_option
def keys_revoke(key_id: int, url: str | None, as_json: bool) -> None:
    """Revoke one of your API keys; calls with it fail from now on."""
    with fix_on(404, "see your keys' ids with `grid keys list`"):
        open_client(url).revoke_api_key(key_id)
    if as_json:
        print_json({"id": key_id, "revoked": True})
    else:
        click.echo(f"API key {key_id} revoked.")
