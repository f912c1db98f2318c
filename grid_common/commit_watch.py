"""Ringing a long poll's bell after the commits that may change what waiting requests ask about."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from grid_common.long_poll import Bell


def watch_commits(
    sessions: sessionmaker[Session], bell: Bell, models: tuple[type, ...], *, changed: bool
) -> None:
    """Ring `bell` after each commit that added rows of `models` (and, with `changed`, changed
    any)."""
    flag = f"grid_ring_{id(bell)}"

    def note(session: Session, _context: Any) -> None:
        touched = list(session.new) + (list(session.dirty) if changed else [])
        if any(isinstance(item, models) for item in touched):
            session.info[flag] = True

    def ring(session: Session) -> None:
        if session.info.pop(flag, False):
            bell.ring()

    def forget(session: Session) -> None:
        session.info.pop(flag, None)

    event.listen(sessions, "after_flush", note)
    event.listen(sessions, "after_commit", ring)
    event.listen(sessions, "after_rollback", forget)
