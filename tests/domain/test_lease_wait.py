"""The lease long poll: a worker waiting for work gets a job the moment one is approved, only a
worker may wait, and a worker that hung up is handed nothing."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from domain import lease_wait
from domain.models import Worker
from grid_common import long_poll
from tests.conftest import eventually
from tests.domain.conftest import model_files  # noqa: F401  (the fixture)
from tests.domain.test_jobs import approved_job, datasets  # noqa: F401  (a fixture)

LEASE = "/api/v1/worker/lease"


def _waiting_lease(client: FlaskClient, worker: dict[str, str], wait_s: float) -> dict[str, Any]:
    """Start a lease request that waits up to `wait_s` in a thread; its answer lands in the dict."""
    answer: dict[str, Any] = {}

    def ask() -> None:
        response = client.post(f"{LEASE}?wait={wait_s:g}", json={"host": "t"}, headers=worker)
        answer.update(status=response.status_code, body=response.json)

    answer["thread"] = threading.Thread(target=ask, daemon=True)
    answer["thread"].start()
    return answer


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_job_approved_while_a_worker_waits_is_handed_out_before_the_wait_ends(
    app: Flask,
    client: FlaskClient,
    headers: dict[str, dict[str, str]],
    datasets: None,  # noqa: F811
    model_files: tuple[bytes, bytes],  # noqa: F811
) -> None:
    waiting_before = lease_wait.BELL.waiting
    pending = _waiting_lease(client, headers["worker"], 600)
    eventually(lambda: lease_wait.BELL.waiting > waiting_before, "the worker to wait for a job")
    job_id = approved_job(client, headers, model_files)
    # Long before the 600 s the worker asked to wait, let alone the domain's own limit.
    eventually(lambda: not pending["thread"].is_alive(), "the waiting lease to be answered", 60)
    assert pending["status"] == 200 and pending["body"]["job_id"] == job_id

    # Nothing left: the domain waits no longer than its own limit, then says so with a 204.
    app.config["GRID"].lease_wait_s = 0.2
    capped = _waiting_lease(client, headers["worker"], 600)
    eventually(lambda: not capped["thread"].is_alive(), "the capped wait to end", 60)
    assert capped["status"] == 204


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_only_a_worker_may_wait_for_a_lease_and_the_wait_is_bounded(
    client: FlaskClient, headers: dict[str, dict[str, str]]
) -> None:
    for role in ("owner", "data_scientist"):
        refused = client.post(f"{LEASE}?wait=1", json={"host": "t"}, headers=headers[role])
        assert refused.status_code == 403, (role, refused.json)
    assert client.post(f"{LEASE}?wait=1", json={"host": "t"}).status_code == 401
    for wait in ("-1", "601", "soon"):
        bad = client.post(f"{LEASE}?wait={wait}", json={"host": "t"}, headers=headers["worker"])
        assert bad.status_code == 422, (wait, bad.json)


def test_a_caller_that_hung_up_is_gone_and_one_still_waiting_is_not() -> None:
    ours, theirs = socket.socketpair()
    with ours:
        environ = {"gunicorn.socket": ours}
        assert not lease_wait.client_gone(environ)
        assert not lease_wait.client_gone({})  # not under gunicorn: never known to be gone
        theirs.close()
        assert lease_wait.client_gone(environ)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_worker_waiting_for_a_job_longer_than_a_lease_is_still_online(
    app: Flask, client: FlaskClient, headers: dict[str, dict[str, str]]
) -> None:
    grid = app.config["GRID"]

    def status_after(quiet_s: float) -> str:
        with app.extensions["database"].sessionmaker() as session:
            heard = datetime.now(UTC) - timedelta(seconds=quiet_s)
            session.execute(update(Worker).values(last_heartbeat_at=heard))
            session.commit()
        items = client.get("/api/v1/workers", headers=headers["owner"]).json["items"]
        return str(items[0]["status"])

    # Its last word was a lease request that may wait up to GRID_LEASE_WAIT_S for a job.
    assert status_after(grid.job_lease_seconds + grid.lease_wait_s - 5) == "online"
    assert status_after(grid.job_lease_seconds + grid.lease_wait_s + 5) == "offline"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_server_told_to_stop_ends_the_waits_at_once(
    client: FlaskClient, headers: dict[str, dict[str, str]]
) -> None:
    long_poll.STOPPING.set()  # as gunicorn_conf does on SIGTERM
    try:
        pending = _waiting_lease(client, headers["worker"], 600)
        eventually(lambda: not pending["thread"].is_alive(), "the wait to end", 30)
        assert pending["status"] == 204
    finally:
        long_poll.STOPPING.clear()
