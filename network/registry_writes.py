"""The network's registry writes: its registration and the associations of its domains.

With a chain configured the network has its own Ethereum key (made once in its data dir),
registers itself as a network and records on chain each domain it approves or that stops
being associated, through its durable outbox. Without one these calls do nothing and the
network works as before.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app
from sqlalchemy.orm import Session

from grid_common.db import Database
from network.config import NetworkConfig
from network.models import Association, RegistryOutboxEntry, RegistrySenderLease
from registry.node import EXTENSION, NodeRegistry, off_message

log = logging.getLogger(__name__)
OFF_MESSAGE = off_message("this network and the associations of its domains")


def init_app(app: Flask, config: NetworkConfig, database: Database) -> NodeRegistry | None:
    """Turn registry writes on when a chain is configured; otherwise say clearly that they
    are off. The network's Ethereum key is made in its data dir on first start."""
    if not (config.chain_rpc_url and config.registry_address):
        log.warning(OFF_MESSAGE)
        app.extensions[EXTENSION] = None
        return None
    node = NodeRegistry(
        "network",
        data_dir=config.data_dir,
        rpc_url=config.chain_rpc_url,
        registry_address=config.registry_address,
        sessions=database.sessionmaker,
        entry_model=RegistryOutboxEntry,
        lease_model=RegistrySenderLease,
    )
    node.attach(app, database.sessionmaker, background=config.background)
    return node


def current_registry() -> NodeRegistry | None:
    """This app's registry side, or None when registry writes are off."""
    found: NodeRegistry | None = current_app.extensions.get(EXTENSION)
    return found


def enqueue_association(session: Session, item: Association, associated: bool) -> None:
    """Record in the caller's transaction that the domain of `item` is (or no longer is)
    associated with this network; nothing when writes are off or the domain gave no address
    when joining (it has none on chain)."""
    reg = current_registry()
    if reg is None or item.eth_address is None:
        return
    reg.outbox.set_association(session, item.eth_address, associated)
