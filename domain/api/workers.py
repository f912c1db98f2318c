"""Workers as the owner manages them: register (token shown once), list with status, revoke."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Blueprint
from sqlalchemy import select

from domain.audit import record
from domain.auth import current_user
from domain.context import config
from domain.models import Job, Worker
from domain.permissions import Permission
from domain.security import new_worker_token, token_digest
from grid_common.api import route
from grid_common.db import db_session
from grid_common.errors import Conflict, NotFound
from grid_common.schemas import WorkerCreate, WorkerList, WorkerOut, WorkerStatus

bp = Blueprint("workers", __name__, url_prefix="/api/v1/workers")


def _status(worker: Worker, current_job: int | None, now: datetime) -> WorkerStatus:
    if worker.revoked_at is not None:
        return "revoked"
    if current_job is not None:
        return "busy"
    quiet_for = timedelta(seconds=config().job_lease_seconds)
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


@route(
    bp,
    "",
    permission=Permission.MANAGE_WORKERS,
    summary="Workers with their status, last heartbeat and current job",
    response=WorkerList,
)
def list_workers() -> WorkerList:
    session = db_session()
    now = datetime.now(UTC)
    held = session.execute(
        select(Job.worker_id, Job.id).where(Job.status == "running", Job.lease_expires_at > now)
    )
    current = {worker_id: job_id for worker_id, job_id in held}
    workers = session.scalars(select(Worker).order_by(Worker.id))
    return WorkerList(items=[_out(w, current.get(w.id)) for w in workers])


@route(
    bp,
    "",
    methods=["POST"],
    permission=Permission.MANAGE_WORKERS,
    summary="Register a worker; its token is shown once",
    body=WorkerCreate,
    response=WorkerOut,
    status=201,
)
def register_worker(body: WorkerCreate) -> WorkerOut:
    session = db_session()
    if session.scalar(select(Worker.id).where(Worker.name == body.name)) is not None:
        raise Conflict(f"A worker named {body.name!r} exists; pick another name.")
    token = new_worker_token()
    worker = Worker(
        name=body.name,
        token_digest=token_digest(token),
        token_prefix=token[:12],
        created_by=current_user().id,
    )
    session.add(worker)
    record(session, "workers.registered", body.name)
    session.commit()
    return _out(worker, None, token)


@route(
    bp,
    "/<int:worker_id>",
    methods=["DELETE"],
    permission=Permission.MANAGE_WORKERS,
    summary="Revoke a worker's token; its job goes back to the queue when the lease runs out",
    status=204,
)
def revoke_worker(worker_id: int) -> None:
    session = db_session()
    worker = session.get(Worker, worker_id)
    if worker is None:
        raise NotFound(f"No worker with id {worker_id}.")
    if worker.revoked_at is None:
        worker.revoked_at = datetime.now(UTC)
        record(session, "workers.revoked", worker.name)
        session.commit()
