"""The running domain app's configuration, blob store and node identity, from any module.

One accessor each, so services and blueprints alike read what `domain.app.create_app` put on
the Flask app, without importing a blueprint module to get it.
"""

from __future__ import annotations

from flask import current_app

from domain.config import DomainConfig
from grid_common.node_context import blobs, node_identity

__all__ = ["blobs", "config", "node_identity"]


def config() -> DomainConfig:
    """This domain's configuration."""
    cfg: DomainConfig = current_app.config["GRID"]
    return cfg
