"""Serving a node from `grid domain start` and `grid network start`, with the CLI's errors."""

from __future__ import annotations

import click

from grid_cli.local.launch import DomainLaunch, NodeExtraMissing, exec_gunicorn, run_dev_server


def serve_node(launch: DomainLaunch, *, dev: bool) -> None:
    """Serve the node in this process (gunicorn, or Flask's server with `dev`) until it stops."""
    try:
        if dev:
            run_dev_server(launch)
        else:
            exec_gunicorn(launch)
    except NodeExtraMissing as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(
            f"cannot start the {launch.node} on {launch.host}:{launch.port}: {exc}; "
            "pick another --port or --host"
        ) from None
