"""Long polls: a request waits until what its caller asks about changes, instead of the caller
asking again and again.

A node rings a `Bell` after each commit that may change the answer (`grid_common.commit_watch`);
a waiting request sleeps on it, bounded by a short re-check interval for changes committed by
another process or replica, which rings no bell here. The caller passes back the `digest` of
the answer it has as `seen`.
"""

from __future__ import annotations

import hashlib
import threading

from pydantic import BaseModel, Field

from grid_common.schemas import Strict

# The longest a caller may ask to wait: well inside every node-to-node read timeout (30 s).
MAX_WAIT_S = 10.0
# Set once this process is told to stop (`grid_common.gunicorn_conf`): waiting requests answer
# at their next look, so a graceful stop does not sit out their waits.
STOPPING = threading.Event()


class ChangeQuery(Strict):
    """A long poll's terms: answer once the answer differs from `seen`, or after `wait` s."""

    wait: float = Field(default=0, ge=0, le=MAX_WAIT_S, description="Seconds to wait at most.")
    seen: str = Field(
        default="",
        pattern=r"^([0-9a-f]{64})?$",
        description="`digest` of the answer the caller has; empty: answer at once.",
    )


class Bell:
    """Rung on a change; waiters sleep until the next ring (each process has its own)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._rings = 0
        self.waiting = 0  # requests waiting now (tests poll it)

    def rings(self) -> int:
        """How often the bell rang so far: take it before looking, pass it to `wait`."""
        with self._condition:
            return self._rings

    def ring(self) -> None:
        with self._condition:
            self._rings += 1
            self._condition.notify_all()

    def wait(self, seen: int, timeout_s: float) -> None:
        """Sleep until a ring after `seen` rings, or for `timeout_s`."""
        with self._condition:
            self.waiting += 1
            try:
                self._condition.wait_for(lambda: self._rings != seen, timeout_s)
            finally:
                self.waiting -= 1


def digest(answer: BaseModel) -> str:
    """What a caller passes back as `seen`: the sha256 of an answer's JSON."""
    return hashlib.sha256(answer.model_dump_json().encode()).hexdigest()
