"""Attack: a data scientist reads a job's metrics and row counts before the owner releases it.

Leak path 3 (results before release). The domain runs in-process on SQLite and PostgreSQL; a
worker's reports are planted with distinctive figures, and the data scientist reads every route
that shows a job: the JSON API, the event feed `grid jobs logs --follow` reads, and the
console's job pages.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from domain import federated
from tests.conftest import PASSWORD
from tests.console.conftest import sign_in
from tests.domain.conftest import model_files  # noqa: F401
from tests.domain.test_jobs import DP_PLAN, PLAN, approved_job, datasets, deliver, lease  # noqa: F401

PLANTED_LOSS = 0.918273645
PLANTED_ROWS = 73519
PLANTED = (str(PLANTED_LOSS), str(PLANTED_ROWS), f"{PLANTED_ROWS:,}")
DS_EMAIL = "data_scientist@example.org"


def report_training(client: FlaskClient, worker: dict[str, str], job_id: int) -> None:
    """What a worker streams of a job: step and epoch points, a log line with the row count."""
    events = [
        {"kind": "log", "data": {"message": "loaded model: 14 parameters"}},
        {
            "kind": "log",
            "data": {"message": f"training on {PLANTED_ROWS:,} rows", "private": True},
        },
        {
            "kind": "progress",
            "data": {
                "phase": "step",
                "epoch": 1,
                "epochs": 2,
                "step": PLANTED_ROWS,
                "steps_per_epoch": PLANTED_ROWS,
                "loss": PLANTED_LOSS,
            },
        },
        {
            "kind": "progress",
            "data": {
                "phase": "epoch",
                "epoch": 1,
                "epochs": 2,
                "step": PLANTED_ROWS,
                "steps_per_epoch": PLANTED_ROWS,
                "loss": PLANTED_LOSS,
                "accuracy": PLANTED_LOSS,
                "val_loss": PLANTED_LOSS,
            },
        },
    ]
    sent = client.post(
        f"/api/v1/worker/jobs/{job_id}/events",
        json={"attempt": 1, "events": events},
        headers=worker,
    )
    assert sent.status_code == 204, sent.json


def finish(client: FlaskClient, worker: dict[str, str], job_id: int) -> None:
    metrics = {"loss": PLANTED_LOSS, "samples": PLANTED_ROWS, "steps": PLANTED_ROWS, "epochs": 2}
    done = deliver(client, worker, job_id, 1, metrics)
    assert done.status_code == 200, done.json


def what_the_scientist_reads(app: Flask, client: FlaskClient, headers, job_id: int) -> str:
    """Every route that shows the job to its data scientist, as one text."""
    ds = headers["data_scientist"]
    reads = [
        client.get(f"/api/v1/jobs/{job_id}", headers=ds).get_data(as_text=True),
        client.get("/api/v1/jobs", headers=ds).get_data(as_text=True),
        client.get(f"/api/v1/jobs/{job_id}/events", headers=ds).get_data(as_text=True),
        client.get(f"/api/v1/jobs/{job_id}/events?kind=progress", headers=ds).get_data(
            as_text=True
        ),
        client.get(f"/api/v1/requests/{job_id}", headers=ds).get_data(as_text=True),
    ]
    console = app.test_client()
    sign_in(console, DS_EMAIL, PASSWORD)
    for page in (f"/jobs/{job_id}", f"/jobs/{job_id}/progress", "/jobs"):
        shown = console.get(page)
        assert shown.status_code == 200, page
        reads.append(shown.get_data(as_text=True))
    return "\n".join(reads)


def assert_nothing_planted(text: str) -> None:
    for value in PLANTED:
        assert value not in text


def test_a_dp_jobs_metrics_and_row_counts_reach_its_data_scientist_only_after_release(
    app: Flask,
    client: FlaskClient,
    headers,
    datasets,  # noqa: F811
    model_files,  # noqa: F811
) -> None:
    job_id = approved_job(client, headers, model_files, DP_PLAN)
    assert lease(client, headers["worker"]) is not None
    report_training(client, headers["worker"], job_id)

    running = what_the_scientist_reads(app, client, headers, job_id)
    assert_nothing_planted(running)
    shown = client.get(f"/api/v1/jobs/{job_id}", headers=headers["data_scientist"]).json
    assert shown["metrics_withheld"] is True
    events = client.get(f"/api/v1/jobs/{job_id}/events", headers=headers["data_scientist"]).json
    points = [e["data"] for e in events["items"] if e["kind"] == "progress"]
    assert points == [{"phase": "epoch", "epoch": 1, "epochs": 2}]  # where it stands, no more
    # Paging past withheld events still reaches every shown one.
    paged: list[dict[str, Any]] = []
    while page := client.get(
        f"/api/v1/jobs/{job_id}/events?limit=1&after={paged[-1]['id'] if paged else 0}",
        headers=headers["data_scientist"],
    ).json["items"]:
        paged += page
    assert paged == events["items"]

    # The owner sees everything, live.
    owner_events = client.get(f"/api/v1/jobs/{job_id}/events", headers=headers["owner"])
    assert str(PLANTED_LOSS) in owner_events.get_data(as_text=True)
    assert f"{PLANTED_ROWS:,}" in owner_events.get_data(as_text=True)

    finish(client, headers["worker"], job_id)
    held = what_the_scientist_reads(app, client, headers, job_id)
    assert_nothing_planted(held)
    owner_view = client.get(f"/api/v1/jobs/{job_id}", headers=headers["owner"]).json
    assert owner_view["metrics"]["samples"] == PLANTED_ROWS

    released = client.post(f"/api/v1/jobs/{job_id}/release", headers=headers["owner"])
    assert released.status_code == 200
    after = client.get(f"/api/v1/jobs/{job_id}", headers=headers["data_scientist"]).json
    assert after["metrics_withheld"] is False
    assert after["metrics"]["loss"] == PLANTED_LOSS
    assert "samples" not in after["metrics"] and "steps" not in after["metrics"]
    events = client.get(f"/api/v1/jobs/{job_id}/events", headers=headers["data_scientist"]).json
    epoch = next(e["data"] for e in events["items"] if e["data"].get("phase") == "epoch")
    assert epoch["loss"] == PLANTED_LOSS and "steps_per_epoch" not in epoch
    # Under DP an exact row count never reaches the data scientist, released or not.
    assert str(PLANTED_ROWS) not in json.dumps(events) and f"{PLANTED_ROWS:,}" not in json.dumps(
        events
    )


def set_live_metrics(client: FlaskClient, headers, value: bool) -> None:
    current = client.get("/api/v1/settings", headers=headers["owner"]).json
    changed = client.put(
        "/api/v1/settings", json={**current, "live_metrics": value}, headers=headers["owner"]
    )
    assert changed.status_code == 200, changed.json
    assert changed.json["live_metrics"] is value


def test_an_owner_who_turns_live_metrics_off_withholds_them_without_dp_until_release(
    app: Flask,
    client: FlaskClient,
    headers,
    datasets,  # noqa: F811
    model_files,  # noqa: F811
) -> None:
    set_live_metrics(client, headers, False)
    job_id = approved_job(client, headers, model_files, PLAN)
    # Fixed at approval: turning the setting back on does not expose this job.
    set_live_metrics(client, headers, True)
    assert lease(client, headers["worker"]) is not None
    report_training(client, headers["worker"], job_id)
    finish(client, headers["worker"], job_id)

    assert_nothing_planted(what_the_scientist_reads(app, client, headers, job_id))
    owner_view = client.get(f"/api/v1/jobs/{job_id}", headers=headers["owner"]).json
    assert owner_view["live_metrics"] is False and owner_view["metrics"]["loss"] == PLANTED_LOSS

    client.post(f"/api/v1/jobs/{job_id}/release", headers=headers["owner"])
    after = what_the_scientist_reads(app, client, headers, job_id)
    for value in PLANTED:  # without DP the release shows everything, counts included
        assert value in after


def test_live_metrics_stay_on_by_default_and_the_request_page_says_so(
    app: Flask,
    client: FlaskClient,
    headers,
    datasets,  # noqa: F811
    model_files,  # noqa: F811
) -> None:
    assert client.get("/api/v1/settings", headers=headers["owner"]).json["live_metrics"] is True
    job_id = approved_job(client, headers, model_files, PLAN)
    assert lease(client, headers["worker"]) is not None
    report_training(client, headers["worker"], job_id)
    running = client.get(f"/api/v1/jobs/{job_id}/events", headers=headers["data_scientist"])
    assert str(PLANTED_LOSS) in running.get_data(as_text=True)

    shown = client.get(f"/api/v1/requests/{job_id}", headers=headers["owner"]).json
    assert "shown to the data scientist live" in shown["live_metrics"]
    console = app.test_client()
    sign_in(console, "owner@example.org", "owner-password")
    page = console.get(f"/requests/{job_id}").get_data(as_text=True)
    assert 'data-testid="live-metrics"' in page and "shown to the data scientist live" in page


def test_a_federated_round_sends_the_network_no_metrics_the_owner_withholds(
    client: FlaskClient,
    headers,
    datasets,  # noqa: F811
    model_files,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under DP the domain forwards a round's row weight, never its local loss or accuracy."""
    sent: list[dict[str, Any]] = []
    now = datetime.now(UTC).isoformat()
    round_out = {
        **{"number": 1, "status": "open", "opened_at": now, "deadline": now, "closed_at": None},
        **{"reporters": [], "samples": 0, "metrics": {}, "aggregate_hash": None},
    }

    def send_update(network: object, number: int, update: object, query: dict[str, Any]) -> Any:
        sent.append(query)
        return round_out

    # The network's side is not under test: what the domain hands it is.
    monkeypatch.setattr(federated, "network_for_job", lambda session, job_id: None)
    monkeypatch.setattr(federated, "send_update", send_update)
    for plan in (DP_PLAN, PLAN):
        job_id = approved_job(client, headers, model_files, plan)
        assert lease(client, headers["worker"]) is not None
        query = f"attempt=1&samples={PLANTED_ROWS}&loss={PLANTED_LOSS}&accuracy=0.5"
        answer = client.put(
            f"/api/v1/worker/jobs/{job_id}/federated/rounds/1/update?{query}",
            data=b"ciphertext",
            headers=headers["worker"],
        )
        assert answer.status_code == 200, answer.json
        deliver(client, headers["worker"], job_id, 1)
    dp_round, plain_round = sent
    assert dp_round == {"samples": PLANTED_ROWS}
    assert plain_round == {"samples": PLANTED_ROWS, "loss": PLANTED_LOSS, "accuracy": 0.5}
