"""PostgreSQL restarted while a job runs: the domain answers 503 meanwhile and carries on after.

Real processes throughout: a gunicorn domain, a `grid worker start` process, and a private
PostgreSQL server that really stops and starts again (the shared test server stays untouched).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

import grid_cli as grid
from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD, free_port
from tests.console.conftest import csrf_of
from tests.postgres_server import PostgresServer
from tests.worker.live import PLAN, StartWorker, mlp, wait_until

# Long enough for the job to be mid-training when the database goes away.
LONG_PLAN = PLAN.model_copy(update={"epochs": 60})


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer(free_port())
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def database_url(private_postgres: PostgresServer) -> str:
    """The live domain's database: on the private server this test may restart."""
    return private_postgres.url()


@pytest.fixture
def live_domain_env() -> dict[str, str]:
    # A lease far longer than the outage: the attempt that runs keeps its lease throughout.
    return {"GRID_JOB_LEASE_SECONDS": "60"}


def test_postgres_restarts_while_a_job_runs_and_the_job_completes(
    private_postgres: PostgresServer,
    live_domain: str,
    owner: grid.DomainClient,
    scientist: grid.DomainClient,
    start_worker: StartWorker,
) -> None:
    start_worker("w1")
    job = scientist.submit_training(mlp(), dataset="digits-a", plan=LONG_PLAN, reason="digits")
    owner.approve(job.id, reason="fine")
    wait_until(lambda: job.status == "running", "running")
    console = requests.Session()  # the owner's console, signed in while the database is up
    token = csrf_of(console.get(f"{live_domain}/login", timeout=30).text)
    form = {"email": OWNER_EMAIL, "password": OWNER_PASSWORD, "csrf_token": token}
    signed_in = console.post(f"{live_domain}/login", data=form, allow_redirects=False, timeout=30)
    assert signed_in.status_code == 302, signed_in.text

    private_postgres.stop()
    auth = {"Authorization": scientist.http.session.headers["Authorization"]}
    down = requests.get(f"{live_domain}/api/v1/jobs/{job.id}", headers=auth, timeout=30)
    assert down.status_code == 503, down.text
    assert down.headers["Content-Type"] == "application/json"
    assert "Retry-After" in down.headers
    error = down.json()["error"]
    assert error["code"] == "database_unavailable"
    # Nothing of the server's internals reaches the client: no driver text, host or port.
    page = console.get(f"{live_domain}/", timeout=30)
    assert page.status_code == 503, page.text  # the console says so too, as a page
    assert "database is unavailable" in page.text and "Retry-After" in page.headers
    for internal in ("psycopg", "sqlalchemy", "127.0.0.1", str(private_postgres.port)):
        assert internal not in down.text.lower()
        assert internal not in page.text.lower()

    private_postgres.start()
    job.wait(timeout=300, progress=False)
    assert job.info.status == "completed"
    assert job.info.attempt == 1  # the running attempt finished; nothing was run again
    assert requests.get(f"{live_domain}/readyz", timeout=30).status_code == 200
