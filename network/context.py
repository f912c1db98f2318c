"""The running network app's configuration, blob store and node identity, from any module.

One accessor each, so services and blueprints alike read what `network.app.create_app` put on
the Flask app, without importing a blueprint module to get it.
"""

from __future__ import annotations

from flask import current_app

from grid_common.blobstore import BlobStore
from grid_common.identity import NodeIdentity
from network.config import NetworkConfig


def config() -> NetworkConfig:
    """This network's configuration."""
    cfg: NetworkConfig = current_app.config["GRID"]
    return cfg


def blobs() -> BlobStore:
    """This network's content-addressed blob store (models, ciphertexts, results)."""
    store: BlobStore = current_app.extensions["blobs"]
    return store


def node_identity() -> NodeIdentity:
    """This network's node identity: its id and its signing and encryption keys."""
    identity: NodeIdentity = current_app.extensions["identity"]
    return identity
