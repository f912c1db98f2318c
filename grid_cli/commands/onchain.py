"""What `grid chain` and `grid registry` share: the chain's errors that a user can fix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from grid_cli.commands.output import print_json


def registry_errors() -> tuple[type[BaseException], ...]:
    """The errors a chain or registry command turns into one line (imported late: the chain
    client is only loaded by the commands that use it)."""
    from registry.chain import ChainError
    from registry.errors import RegistryError

    return (RegistryError, ChainError, LookupError, ValueError, PermissionError)


def show_proof(prove: Callable[[], Any], as_json: bool) -> None:
    """Run `prove()` (a registry proof: `as_json`, `render`, `ok`), print what it checked, and
    exit with status 1 when any check fails; a chain error is one line."""
    try:
        proof = prove()
    except registry_errors() as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        print_json(proof.as_json())
    else:
        click.echo(proof.render())
    if not proof.ok:
        click.get_current_context().exit(1)
