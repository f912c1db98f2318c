"""What `grid domain info` and `grid network info` share: the data dir and a node's identity."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from grid_common.identity import IdentityError, load_identity


def node_info_fields(data_dir: Path) -> dict[str, str]:
    """What `grid domain info` / `grid network info` print, field by field."""
    try:
        identity = load_identity(data_dir)
    except IdentityError as exc:
        raise click.ClickException(str(exc)) from None
    from registry.keys import KEY_ENV, key_path, node_address

    has_eth_key = bool(os.environ.get(KEY_ENV)) or key_path(data_dir).exists()
    return {
        "data_dir": str(data_dir.resolve()),
        **identity.public_fields(),
        # Made on the first start with a chain configured, or by `grid registry address`.
        "eth_address": node_address(data_dir) if has_eth_key else "none yet",
    }


def data_dir_option(default: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--data-dir`: the node's data dir, defaulting to where `grid up` puts that kind of node."""
    return click.option(
        "--data-dir",
        envvar="GRID_DATA_DIR",
        default=default,
        show_default=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="The node's data dir (where its keys are).",
    )
