"""The network console: the operator's web pages, served by the network at `/`."""

from __future__ import annotations

from flask import Flask

from grid_common.console import init_console
from network.console import federated_jobs, pages
from network.console.common import bp

# The module registers its pages on the blueprint when imported.
PAGES = (pages, federated_jobs)


def init_app(app: Flask) -> None:
    # Nodes on one host share cookies across ports: the node's id keeps each one's apart.
    node_id = app.extensions["identity"].node_id
    init_console(app, cookie_name=f"grid_network_{node_id[:12]}", title="Grid network console")
    app.register_blueprint(bp)
