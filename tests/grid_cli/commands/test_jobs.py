"""`grid workers|jobs|results|budgets` and job approvals from the shell, against a live domain."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import requests
import torch
from safetensors.torch import save as save_safetensors
from torch import nn

import grid_cli as grid
from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD
from tests.grid_cli.commands.test_session import failed, ok_json
from tests.grid_cli.conftest import RunGrid

DS_EMAIL = "ds@example.org"
DS_PASSWORD = "ds-password-123"
PLAN = grid.TrainingPlan(loss="cross_entropy", epochs=2, batch_size=8)


@pytest.fixture
def scientist(live_domain: str, digits_csv: Path) -> grid.DomainClient:
    owner = grid.login(live_domain, OWNER_EMAIL, OWNER_PASSWORD)
    owner.upload_dataset("digits-a", digits_csv, label="target", progress=False)
    owner.create_user(DS_EMAIL, DS_PASSWORD)
    return grid.login(live_domain, DS_EMAIL, DS_PASSWORD)


def sign_in(run_grid: RunGrid, url: str) -> None:
    login = run_grid("login", url, "--email", OWNER_EMAIL, "--password-stdin", input=OWNER_PASSWORD)
    assert login.exit_code == 0, login.output


def act_as_worker(url: str, token: str, job_id: int) -> None:
    """What `grid worker start` does, reduced to its calls: lease, then deliver a result."""
    auth = {"Authorization": f"Bearer {token}"}
    leased = requests.post(f"{url}/api/v1/worker/lease", json={}, headers=auth, timeout=10)
    assert leased.json()["job_id"] == job_id
    weights = save_safetensors({"0.weight": torch.zeros(3, 3), "0.bias": torch.zeros(3)})
    delivered = requests.put(
        f"{url}/api/v1/worker/jobs/{job_id}/attempts/1/result",
        data={"metrics": json.dumps({"loss": 0.3})},
        files={"weights": ("weights.safetensors", io.BytesIO(weights))},
        headers=auth,
        timeout=10,
    )
    assert delivered.status_code == 200, delivered.text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_owner_runs_workers_jobs_results_and_budgets_from_the_shell(
    live_domain: str, run_grid: RunGrid, scientist: grid.DomainClient
) -> None:
    sign_in(run_grid, live_domain)
    added = ok_json(run_grid("workers", "add", "w1", "--json"))
    assert added["token"].startswith("gridw_")
    text = run_grid("workers", "add", "w2")
    assert "shown only now" in text.stdout and "grid worker start" in text.stdout
    listed = ok_json(run_grid("workers", "list", "--json"))
    assert [(w["name"], w["status"]) for w in listed] == [("w1", "offline"), ("w2", "offline")]

    job = scientist.submit_training(nn.Sequential(nn.Linear(3, 3)), "digits-a", PLAN, reason="cli")
    approved = run_grid(
        "requests", "approve", str(job.id), "--memory-mb", "512", "--release-on-completion"
    )
    assert approved.exit_code == 0, approved.output
    shown = ok_json(run_grid("jobs", "list", "--json"))
    assert shown[0]["status"] == "queued"
    assert shown[0]["limits"] == {"cpu_seconds": 3600, "memory_mb": 512, "wall_seconds": 3600}
    assert shown[0]["release_on_completion"] is True

    act_as_worker(live_domain, added["token"], job.id)
    logs = run_grid("jobs", "logs", str(job.id))
    assert "attempt 1 started on w1" in logs.stdout and "job completed" in logs.stdout
    assert job.refresh().info.result_status == "released"
    message = failed(run_grid("jobs", "cancel", str(job.id)))
    assert "already completed" in message

    assert ok_json(run_grid("workers", "revoke", str(added["id"]), "--json"))["revoked"]
    listed = ok_json(run_grid("workers", "list", "--json"))
    assert listed[0]["status"] == "revoked"

    ok_json(run_grid("budgets", "set", "digits-a", "2.5", "--json"))
    mine = run_grid("budgets", "set", "digits-a", "1", "--data-scientist", DS_EMAIL, "--json")
    budgets = ok_json(mine)["budgets"]
    assert [(b["data_scientist"], b["left"]) for b in budgets] == [(None, 2.5), (DS_EMAIL, 1.0)]
    table = run_grid("budgets", "show", "digits-a")
    assert "everyone" in table.stdout and DS_EMAIL in table.stdout


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_held_results_are_released_from_the_shell(
    live_domain: str, run_grid: RunGrid, scientist: grid.DomainClient
) -> None:
    sign_in(run_grid, live_domain)
    token = ok_json(run_grid("workers", "add", "w1", "--json"))["token"]
    job = scientist.submit_training(nn.Sequential(nn.Linear(3, 3)), "digits-a", PLAN, reason="cli")
    message = failed(run_grid("results", "release", str(job.id)))
    assert "not been approved" in message
    run_grid("requests", "approve", str(job.id))
    message = failed(run_grid("results", "release", str(job.id)))
    assert "no result to release" in message

    act_as_worker(live_domain, token, job.id)
    with pytest.raises(grid.GridError, match="held until"):
        job.result()
    released = ok_json(run_grid("results", "release", str(job.id), "--json"))
    assert released["result_status"] == "released"
    assert job.result().state_dict()["0.weight"].abs().sum() == 0

    cancelled = scientist.submit_training(
        nn.Sequential(nn.Linear(3, 3)), "digits-a", PLAN, reason="cli"
    )
    run_grid("requests", "approve", str(cancelled.id))
    assert ok_json(run_grid("jobs", "cancel", str(cancelled.id), "--json"))["status"] == "cancelled"
