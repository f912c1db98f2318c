"""The lease long poll: a worker's lease request waits, up to a limit, until a job is runnable.

A worker asks with `wait`; the domain looks for a runnable job, and while there is none it ends
its transaction (SQLite's write lock is not held while waiting) and sleeps on this process's
bell. Any commit in this process that added a job rings the bell, so a job approved here is
handed out at once; a job queued by another gunicorn process or replica, or a lease that ran
out, is found by the re-check every `RECHECK_S`. The wait ends early with the job, or at its
deadline with nothing (204), or as soon as the worker hung up: a worker that stopped while
waiting must not be handed a job it will never run.

Each waiting worker holds one of the server's threads for up to `GRID_LEASE_WAIT_S`, which is
why `grid domain start` runs gunicorn's threaded workers (see docs/jobs.md).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from domain import jobs
from domain.models import Job
from grid_common.commit_watch import watch_commits
from grid_common.long_poll import STOPPING, Bell

# How often a waiting lease looks at the database, for what no bell of this process announces.
RECHECK_S = 1.0
BELL = Bell()


def watch(sessions: sessionmaker[Session]) -> None:
    """Ring the bell after each commit of `sessions` that added a job."""
    watch_commits(sessions, BELL, (Job,), changed=False)


def client_gone(environ: Mapping[str, Any]) -> bool:
    """Whether the caller of this request closed its connection (known under gunicorn only)."""
    sock = environ.get("gunicorn.socket")
    if sock is None:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False  # open, nothing sent: the caller is still waiting
    except OSError:
        return True


def lease_waiting(
    session: Session,
    worker_id: int,
    worker_name: str,
    lease_s: int,
    wait_s: float,
    gone: Callable[[], bool] = lambda: False,
) -> Job | None:
    """`jobs.lease_next_job`, waiting up to `wait_s` for a runnable job while the caller is
    there (`gone()` is False); the caller commits."""
    deadline = time.monotonic() + wait_s
    while True:
        seen = BELL.rings()
        job = jobs.lease_next_job(session, worker_id, worker_name, lease_s)
        left = deadline - time.monotonic()
        if job is not None or left <= 0:
            return job
        session.commit()  # no transaction (nor SQLite's write lock) held while waiting
        BELL.wait(seen, min(RECHECK_S, left))
        if gone() or STOPPING.is_set():
            return None
