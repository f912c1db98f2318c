"""Nudging domains: a signed "look now" call, so a domain syncs as soon as the network has news
for it (a federated invitation, its association approved) rather than at its next sync.

Best effort and off the request path: the calls run in a daemon thread, with short timeouts. A
nudge carries nothing the domain trusts; it only makes the domain run its sync now, which
fetches and checks what is new. A domain that is down learns the news on its own sync loop
(`GRID_NETWORK_SYNC_S`), as before nudges existed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

import requests
from sqlalchemy import select
from sqlalchemy.orm import Session

from grid_common.identity import NodeIdentity
from grid_common.logs import request_id_headers
from grid_common.signing import NodeAuth, signed_session
from network.context import node_identity
from network.models import Association, FederatedParticipant

log = logging.getLogger(__name__)
# The domain's route (domain.network_nudges.NUDGE_PATH); nodes import no other node's package.
NUDGE_PATH = "/api/v1/networks/nudge"
# Short: a nudge that does not arrive at once is worth nothing more than the sync loop.
TIMEOUT: tuple[float, float] = (2.0, 5.0)


def nudge(domains: Iterable[tuple[str, str]]) -> threading.Thread:
    """Nudge each `(domain_id, url)` in a thread of its own; returns the thread (tests join it)."""
    targets = list(domains)
    identity, headers = node_identity(), request_id_headers()
    thread = threading.Thread(
        target=_nudge_all, args=(identity, targets, headers), name="grid-nudge", daemon=True
    )
    thread.start()
    return thread


def nudge_participants(session: Session, job_id: int) -> threading.Thread:
    """Nudge every approved domain invited to federated job `job_id` (it has an invitation)."""
    rows = session.execute(
        select(Association.domain_id, Association.url)
        .join(FederatedParticipant, FederatedParticipant.association_id == Association.id)
        .where(FederatedParticipant.job_id == job_id, Association.status == "approved")
    ).all()
    return nudge((row.domain_id, row.url) for row in rows)


def _nudge_all(
    identity: NodeIdentity, targets: list[tuple[str, str]], headers: dict[str, str]
) -> None:
    workers = [
        threading.Thread(target=_nudge_one, args=(identity, target, headers), daemon=True)
        for target in targets
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def _nudge_one(identity: NodeIdentity, target: tuple[str, str], headers: dict[str, str]) -> None:
    domain_id, url = target
    try:
        with signed_session() as session:
            response = session.post(
                f"{url}{NUDGE_PATH}",
                headers=headers,
                auth=NodeAuth(identity, domain_id),
                timeout=TIMEOUT,
            )
    except requests.RequestException as exc:
        log.info("nudge to domain %s at %s failed (%s)", domain_id, url, type(exc).__name__)
        return
    if response.status_code != 204:
        log.info("domain %s refused a nudge: HTTP %s", domain_id, response.status_code)
