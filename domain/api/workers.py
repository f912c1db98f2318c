"""Workers as the owner manages them: register (token shown once), list with status, revoke."""

from __future__ import annotations

from flask import Blueprint

from domain import workers
from domain.auth import current_user
from domain.permissions import Permission
from grid_common.api import route
from grid_common.db import db_session
from grid_common.schemas import WorkerCreate, WorkerList, WorkerOut

bp = Blueprint("workers", __name__, url_prefix="/api/v1/workers")


@route(
    bp,
    "",
    permission=Permission.MANAGE_WORKERS,
    summary="Workers with their status, last heartbeat and current job",
    response=WorkerList,
)
def list_workers() -> WorkerList:
    return workers.list_workers(db_session())


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
    return workers.register_worker(db_session(), current_user(), body)


@route(
    bp,
    "/<int:worker_id>",
    methods=["DELETE"],
    permission=Permission.MANAGE_WORKERS,
    summary="Revoke a worker's token; its job goes back to the queue when the lease runs out",
    status=204,
)
def revoke_worker(worker_id: int) -> None:
    workers.revoke_worker(db_session(), worker_id)
