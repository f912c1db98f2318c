"""The running network app's configuration, blob store and node identity, from any module.

One accessor each, so services and blueprints alike read what `network.app.create_app` put on
the Flask app, without importing a blueprint module to get it.
"""

from __future__ import annotations

from flask import current_app

from grid_common.node_context import blobs, node_identity
from network.config import NetworkConfig

__all__ = ["blobs", "config", "node_identity"]


def config() -> NetworkConfig:
    """This network's configuration."""
    cfg: NetworkConfig = current_app.config["GRID"]
    return cfg
