"""A network's nudge: a signed "look now" that makes this domain sync with that network at once.

Networks nudge a domain when they have news for it (a federated invitation, its association
approved), so it need not wait for its next sync (`GRID_NETWORK_SYNC_S`). The nudge carries
nothing this domain acts on: the sync it triggers fetches invitations over this domain's own
signed calls and checks each invitation's signature, exactly as the periodic loop does. So the
worst a replayed nudge can do is cause one more sync, and nudges' nonces are kept in memory,
per process, rather than in the database.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.models import NetworkMembership
from grid_common.errors import Forbidden
from grid_common.signing import SignedCaller

NUDGE_PATH = "/api/v1/networks/nudge"


class MemoryNonceStore:
    """Nonces of verified calls seen by this process until they expire (a `NonceStore`).

    Only a verified call spends a nonce, so only a member network can add entries, and each
    lives no longer than the signature window.
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], datetime] = {}
        self._lock = threading.Lock()

    def remember(self, node_id: str, nonce: str, expires_at: datetime) -> bool:
        now = datetime.now(UTC)
        with self._lock:
            self._seen = {key: at for key, at in self._seen.items() if at >= now}
            if (node_id, nonce) in self._seen:
                return False
            self._seen[(node_id, nonce)] = expires_at
        return True


def accept_nudge(session: Session, caller: SignedCaller) -> None:
    """Sync with the calling network now, if this domain is its approved member; commits.

    The membership is marked due and this process's sync loop woken; the loop claims it as it
    claims any due membership, so several processes never sync it twice at once.
    """
    membership = session.scalar(
        select(NetworkMembership).where(NetworkMembership.network_id == caller.node_id)
    )
    if (
        membership is None
        or membership.status not in ("pending", "approved")
        or membership.signing_key != caller.signing_key
    ):
        raise Forbidden("Only a network this domain joined or asked to join may nudge it.")
    membership.next_sync_at = datetime.now(UTC)
    session.commit()
    current_app.extensions["background"].wake()
