"""The participant state long poll: a domain's worker asks where its federated job stands and,
while nothing changed since its last answer, the network holds the request until something does
(a round closes or opens, keys arrive, the job ends) or the wait runs out.

Commits in this process that touch a job, its rounds, participants or updates ring the bell;
changes committed by another process or replica are seen at the next re-check (`RECHECK_S`).
Each waiting request holds a server thread, so at most `GRID_STATE_WAITERS` wait at once per
process; past that a request is answered at once and its worker polls as before.
"""

from __future__ import annotations

import time

from sqlalchemy.orm import Session, sessionmaker

from grid_common.commit_watch import watch_commits
from grid_common.federated_schemas import ParticipantState
from grid_common.long_poll import STOPPING, Bell, ChangeQuery, digest
from network import federated
from network.context import config
from network.models import FederatedJob, FederatedParticipant, FederatedRound, FederatedUpdate

RECHECK_S = 0.25
BELL = Bell()


def watch(sessions: sessionmaker[Session]) -> None:
    """Ring the bell after each commit of `sessions` that may change a participant's state."""
    models = (FederatedJob, FederatedRound, FederatedParticipant, FederatedUpdate)
    watch_commits(sessions, BELL, models, changed=True)


def state_waiting(
    session: Session, job: FederatedJob, participant: FederatedParticipant, query: ChangeQuery
) -> ParticipantState:
    """The participant's state, once it differs from `query.seen` or `query.wait` ran out."""
    deadline = time.monotonic() + query.wait
    while True:
        rings = BELL.rings()
        state = federated.participant_state(session, job, participant)
        left = deadline - time.monotonic()
        if (
            left <= 0
            or digest(state) != query.seen
            or BELL.waiting >= config().state_waiters
            or STOPPING.is_set()
        ):
            return state
        session.rollback()  # end the read snapshot: the next look sees what others committed
        BELL.wait(rings, min(RECHECK_S, left))
