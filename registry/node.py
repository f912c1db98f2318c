"""What every node that writes to the registry has: its key, client, outbox and sender.

A domain and a network each open one `NodeRegistry` at start when a chain is configured: the
node's Ethereum key is made once in its data dir, its registration (its role and the sha256
of its Ed25519 public key) is queued unless already queued, and the sender thread sends the
node's outbox. What a node writes beyond that is its own (a domain's jobs and anchors, a
network's associations).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from eth_utils import is_address
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from grid_common.hashes import ed25519_key_hash
from grid_common.identity import load_or_create_identity
from registry.client import RegistryClient
from registry.keys import load_or_create_account
from registry.outbox import Outbox, OutboxEntryMixin, SenderLeaseMixin
from registry.sender import OutboxSender

log = logging.getLogger(__name__)

Role = Literal["domain", "network"]
EXTENSION = "registry"


def off_message(what: str) -> str:
    """What a node logs and reports when no chain is configured; `what` names its writes."""
    return (
        "registry writes are off: set GRID_CHAIN_RPC_URL and GRID_REGISTRY_ADDRESS to record "
        f"{what} on chain"
    )


class NodeRegistry:
    """The registry side of one node app: its address, outbox and sender."""

    def __init__(
        self,
        role: Role,
        *,
        data_dir: Path,
        rpc_url: str,
        registry_address: str,
        sessions: sessionmaker[Session],
        entry_model: type[OutboxEntryMixin],
        lease_model: type[SenderLeaseMixin],
    ) -> None:
        if not is_address(registry_address):
            raise ValueError(
                f"GRID_REGISTRY_ADDRESS must be a 0x-prefixed contract address, "
                f"got {registry_address!r}"
            )
        account = load_or_create_account(data_dir)
        identity = load_or_create_identity(data_dir)
        client = RegistryClient(rpc_url, registry_address, account, transport_retries=False)
        self.role = role
        self.address = str(account.address)
        self.registry_address = client.address
        self.key_hash = "0x" + ed25519_key_hash(bytes(identity.signing_key.verify_key))
        self.entry_model: Any = entry_model
        self.sender = OutboxSender(sessions, entry_model, lease_model, client)
        self.outbox = Outbox(entry_model, notify=self.sender.wake)

    def ensure_registered(self, session: Session) -> bool:
        """Enqueue this node's registration unless one with the same key is already queued."""
        last = self.outbox.last(session, "register")
        if (
            last is not None
            and last.status != "failed"
            and last.args.get("key_hash") == self.key_hash
        ):
            return False
        self.outbox.register(session, self.role, self.key_hash)
        return True

    def attach(self, app: Flask, sessions: sessionmaker[Session], *, background: bool) -> None:
        """Queue the registration, make this the app's `registry` extension, and send from
        each serving process; the sender stops with the app's background."""
        with sessions() as session, session.begin():
            self.ensure_registered(session)
        app.extensions[EXTENSION] = self
        # Started from a request, never at import: a pre-forking server's workers each get a
        # thread of their own, and the outbox lease lets only one of them send at a time. An
        # app without background work starts none.
        if background:
            app.before_request(self.start_sender)
        app.extensions["background"].on_stop(self.sender.stop)
        log.info(
            "registry writes on: %s address %s, registry %s",
            self.role,
            self.address,
            self.registry_address,
        )

    def start_sender(self) -> None:
        """Start sending in this process; cheap to call on every request (once per process)."""
        self.sender.start()

    def status(self, session: Session) -> dict[str, Any]:
        """What the node tells its operators: on, its address, outbox counts, last failure."""
        last_failed = session.scalars(
            select(self.entry_model)
            .where(self.entry_model.status == "failed")
            .order_by(self.entry_model.id.desc())
            .limit(1)
        ).first()
        return {
            "enabled": True,
            "message": self.sender.last_error or "registry writes on",
            "node_address": self.address,
            "registry_address": self.registry_address,
            "outbox": self.outbox.counts(session),
            "last_failure": None
            if last_failed is None
            else {"id": last_failed.id, "op": last_failed.op, "error": last_failed.last_error},
        }
