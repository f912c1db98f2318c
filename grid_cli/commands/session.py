"""How a command reaches a node: stored logins, passwords, clients, and errors that name a fix."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from grid_cli.client.domain import DomainClient
from grid_cli.client.network import NetworkClient
from grid_cli.commands.credentials import CredentialStore
from grid_cli.commands.output import describe_error
from grid_common.schemas import TokenPair
from grid_common.transport import GridError


def read_password(from_stdin: bool, *, env: str | None, what: str, confirm: bool = False) -> str:
    """A password from stdin, else the environment, else a hidden prompt on a terminal only."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.ClickException(
                f"--password-stdin read an empty line: pipe the {what} in, "
                'e.g. printf "%s\\n" "$PASSWORD" | grid ...'
            )
        return password
    if env and os.environ.get(env):
        return os.environ[env]
    if sys.stdin.isatty():
        return str(click.prompt(what.capitalize(), hide_input=True, confirmation_prompt=confirm))
    source = f", or set {env}" if env else ""
    raise click.ClickException(
        f"no {what} given and stdin is not a terminal: pass --password-stdin and pipe it in{source}"
    )


def open_client(url: str | None) -> DomainClient:
    """A client for a stored login; tokens the node rotates are written back at once."""
    store = CredentialStore()
    stored = store.get(url)
    click.get_current_context().meta["grid.url"] = stored.url

    def keep(tokens: TokenPair) -> None:
        store.update_tokens(stored.url, tokens.access_token, tokens.refresh_token)

    return DomainClient(
        stored.url,
        access_token=stored.access_token,
        refresh_token=stored.refresh_token,
        on_tokens=keep,
    )


def open_network(url: str | None) -> NetworkClient:
    """An operator's client for a network signed in with `grid login`."""
    stored = open_client(url)
    stored.close()
    return NetworkClient(
        stored.url,
        access_token=stored.access_token,
        refresh_token=stored.refresh_token,
        on_tokens=stored.on_tokens,
    )


def public_client(url: str) -> DomainClient:
    """A client without credentials, for the calls a node answers to anyone."""
    client = DomainClient(url)
    click.get_current_context().meta["grid.url"] = client.url
    return client


@contextmanager
def fix_on(status: int, fix: str) -> Iterator[None]:
    """Name the fix for one status of the node's answer, where the command knows it best."""
    try:
        yield
    except GridError as exc:
        if exc.status != status:
            raise
        url = click.get_current_context().meta.get("grid.url")
        raise click.ClickException(describe_error(exc, url=url, fix=fix)) from None
