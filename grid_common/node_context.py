"""What both node apps keep on the running Flask app: the blob store and the node identity.

Each app's `create_app` puts them in `app.extensions`; these accessors read them back from any
module. The configuration differs per app, so each app's own `context` module adds `config()`.
"""

from __future__ import annotations

from flask import current_app

from grid_common.blobstore import BlobStore
from grid_common.identity import NodeIdentity


def blobs() -> BlobStore:
    """This node's content-addressed blob store (datasets, models, ciphertexts, results)."""
    store: BlobStore = current_app.extensions["blobs"]
    return store


def node_identity() -> NodeIdentity:
    """This node's identity: its id and its signing and encryption keys."""
    identity: NodeIdentity = current_app.extensions["identity"]
    return identity
