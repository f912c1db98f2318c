"""A worker cut off from its domain for longer than the lease: another worker takes the job up,
exactly one result is accepted, and the cut-off worker's late delivery is refused."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, text

import grid_cli as grid
from tests.conftest import free_port
from tests.proxy import Forwarder
from tests.worker.live import PLAN, StartWorker, mlp, wait_until

pytestmark = pytest.mark.timeout(600)


def _log(tmp_path: Path, name: str) -> str:
    return (tmp_path / f"{name}.log").read_text(errors="replace")


def _failed_deliveries(tmp_path: Path) -> int:
    return _log(tmp_path, "w1").count("attempt 1: report failed, retrying")


def test_a_worker_cut_off_past_its_lease_loses_the_job_and_its_late_result_is_refused(
    live_domain: str,
    database_url: str,
    owner: grid.DomainClient,
    scientist: grid.DomainClient,
    start_worker: StartWorker,
    tmp_path: Path,
) -> None:
    # w1 reaches the domain only through a proxy: stopping the proxy makes the domain
    # unreachable for w1 alone, while w1 itself goes on training (a network partition).
    proxy = Forwarder(int(urlsplit(live_domain).port or 0), free_port())
    proxy.start()
    try:
        longer = PLAN.model_copy(update={"epochs": 20, "batch_size": 8})
        job = scientist.submit_training(mlp(), dataset="digits-a", plan=longer, reason="longer")
        owner.approve(job.id)
        start_worker("w1", domain=proxy.url)
        wait_until(lambda: bool(job.refresh().history), "training on w1")
        assert (job.info.attempt, job.info.worker) == (1, "w1")

        proxy.stop()
        start_worker("w2")
        # The lease (3 s here) runs out without w1's heartbeats and w2 leases attempt 2.
        job.wait(timeout=240, progress=False)
        assert (job.info.status, job.info.attempt, job.info.worker) == ("completed", 2, "w2")
        # w1 finished its attempt meanwhile and keeps its result while it cannot deliver it,
        # however often it tries: the outage outlasts any fixed number of tries.
        wait_until(
            lambda: _failed_deliveries(tmp_path) >= 6 or "gave up" in _log(tmp_path, "w1"),
            "w1 to try again and again to deliver attempt 1 while its domain is unreachable",
            deadline_s=240,
        )
        assert "gave up reporting" not in _log(tmp_path, "w1")

        proxy.start()  # the domain is back for w1
        wait_until(
            lambda: "report refused" in _log(tmp_path, "w1"),
            "w1's late delivery to be answered",
            deadline_s=120,
        )
    finally:
        proxy.stop()

    refused = [line for line in _log(tmp_path, "w1").splitlines() if "report refused" in line]
    assert len(refused) == 1 and "already has its result, from attempt 2" in refused[0], refused
    assert "attempt 1: completed" not in _log(tmp_path, "w1")

    engine = create_engine(database_url)
    with engine.connect() as db:
        stored = db.execute(
            text("SELECT result_attempt, worker_id, status FROM jobs WHERE id = :id"),
            {"id": job.id},
        ).one()
        w2 = db.execute(text("SELECT id FROM workers WHERE name = 'w2'")).scalar_one()
    engine.dispose()
    assert tuple(stored) == (2, w2, "completed")
    completions = owner.audit_log(action="jobs.completed", limit=1000)
    assert [(e.target, e.actor) for e in completions] == [(f"job:{job.id}", "worker:w2")]
    assert job.metrics["epochs"] == longer.epochs
