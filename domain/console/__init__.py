"""The domain console: the data owner's web pages, served by the domain at `/`."""

from __future__ import annotations

from flask import Flask

from domain.console import accounts, audit, datasets, home, jobs, requests
from domain.console.common import bp
from grid_common.console import init_console

# Each module registers its pages on the blueprint when imported.
PAGES = (accounts, audit, datasets, home, jobs, requests)


def init_app(app: Flask) -> None:
    # Nodes on one host share cookies across ports: the node's id keeps each one's apart.
    node_id = app.extensions["identity"].node_id
    init_console(app, cookie_name=f"grid_domain_{node_id[:12]}", title="Grid domain console")
    app.register_blueprint(bp)
