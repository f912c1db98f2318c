"""Workers as the owner manages them: registering one (its token shown once), listing each with
its state, revoking a token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.audit import record
from domain.auth import Principal
from domain.context import config
from domain.models import Job, Worker
from domain.security import new_worker_token, token_digest
from grid_common.errors import Conflict, NotFound
from grid_common.schemas import WorkerCreate, WorkerList, WorkerOut, WorkerStatus


def heard_within() -> timedelta:
    """How long an idle, live worker may go unheard: a lease request that waits for a job (up
    to GRID_LEASE_WAIT_S) is its heartbeat, and the next follows it at once."""
    return timedelta(seconds=config().job_lease_seconds + config().lease_wait_s)


def _status(worker: Worker, current_job: int | None, now: datetime) -> WorkerStatus:
    if worker.revoked_at is not None:
        return "revoked"
    if current_job is not None:
        return "busy"
    quiet_for = heard_within()
    if worker.last_heartbeat_at is not None and now - worker.last_heartbeat_at <= quiet_for:
        return "online"
    return "offline"


def _out(worker: Worker, current_job: int | None, token: str | None = None) -> WorkerOut:
    return WorkerOut(
        id=worker.id,
        name=worker.name,
        prefix=worker.token_prefix,
        status=_status(worker, current_job, datetime.now(UTC)),
        host=worker.host,
        current_job=current_job,
        last_heartbeat_at=worker.last_heartbeat_at,
        created_at=worker.created_at,
        token=token,
    )


def list_workers(session: Session) -> WorkerList:
    """Every worker with its state, last heartbeat and the job it holds a live lease on."""
    now = datetime.now(UTC)
    held = session.execute(
        select(Job.worker_id, Job.id).where(Job.status == "running", Job.lease_expires_at > now)
    )
    current = {worker_id: job_id for worker_id, job_id in held}
    workers = session.scalars(select(Worker).order_by(Worker.id))
    return WorkerList(items=[_out(w, current.get(w.id)) for w in workers])


def register_worker(session: Session, user: Principal, body: WorkerCreate) -> WorkerOut:
    """Register a worker for `user`; the answer holds its token, shown this once. Commits."""
    if session.scalar(select(Worker.id).where(Worker.name == body.name)) is not None:
        raise Conflict(f"A worker named {body.name!r} exists; pick another name.")
    token = new_worker_token()
    worker = Worker(
        name=body.name,
        token_digest=token_digest(token),
        token_prefix=token[:12],
        created_by=user.id,
    )
    session.add(worker)
    record(session, "workers.registered", body.name)
    session.commit()
    return _out(worker, None, token)


def revoke_worker(session: Session, worker_id: int) -> None:
    """Revoke a worker's token; its job goes back to the queue when the lease runs out. Commits."""
    worker = session.get(Worker, worker_id)
    if worker is None:
        raise NotFound(f"No worker with id {worker_id}.")
    if worker.revoked_at is None:
        worker.revoked_at = datetime.now(UTC)
        record(session, "workers.revoked", worker.name)
        session.commit()
