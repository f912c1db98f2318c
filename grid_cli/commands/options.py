"""Options that many `grid` commands share, written once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, get_args

import click

from grid_common.schemas import RoleName

Command = TypeVar("Command", bound=Callable[..., Any])
ROLES = list(get_args(RoleName))


def url_option(command: Command) -> Command:
    """`--url`: which stored login a command uses."""
    return click.option(
        "--url",
        envvar="GRID_URL",
        help="Which stored login to use (default: the most recent `grid login`).",
    )(command)


def json_option(command: Command) -> Command:
    """`--json`: machine-readable output for scripts."""
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(
        command
    )


def output_option(what: str) -> Callable[[Command], Command]:
    """`--output`: where a download is saved."""
    return click.option(
        "--output",
        "--out",
        "-o",
        type=click.Path(dir_okay=False, writable=True, path_type=Path),
        help=f"Where to save {what}.",
    )
