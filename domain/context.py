"""The running domain app's configuration, blob store and node identity, from any module.

One accessor each, so services and blueprints alike read what `domain.app.create_app` put on
the Flask app, without importing a blueprint module to get it.
"""

from __future__ import annotations

from flask import current_app

from domain.config import DomainConfig
from grid_common.blobstore import BlobStore
from grid_common.identity import NodeIdentity


def config() -> DomainConfig:
    """This domain's configuration."""
    cfg: DomainConfig = current_app.config["GRID"]
    return cfg


def blobs() -> BlobStore:
    """This domain's content-addressed blob store (datasets, models, results)."""
    store: BlobStore = current_app.extensions["blobs"]
    return store


def node_identity() -> NodeIdentity:
    """This domain's node identity: its id and its signing and encryption keys."""
    identity: NodeIdentity = current_app.extensions["identity"]
    return identity
