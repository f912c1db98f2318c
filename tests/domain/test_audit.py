"""The audit log is a hash chain: every action lands in it, and tampering is named."""

from __future__ import annotations

import itertools

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, update

from domain import audit
from domain.models import AuditEntry
from tests.concurrency import run_concurrently
from tests.domain.uploads import file_job, upload


def entries(client: FlaskClient, headers, **filters) -> list[dict]:
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    return client.get(f"/api/v1/audit?{query}", headers=headers["owner"]).json["items"]


def test_actions_are_recorded_with_actor_and_chained(
    client: FlaskClient, headers, model_files
) -> None:
    upload(client, headers["admin"])
    file_job(client, headers["data_scientist"], model_files, {"loss": "mse"})
    client.get("/api/v1/datasets/digits-a/mock", headers=headers["data_scientist"])
    log = entries(client, headers)
    actions = [(e["actor"], e["action"]) for e in log]
    assert ("admin@example.org", "datasets.uploaded") in actions
    assert ("data_scientist@example.org", "requests.filed") in actions
    assert ("data_scientist@example.org", "datasets.mock_read") in actions
    for previous, entry in itertools.pairwise(log):
        assert entry["prev_hash"] == previous["hash"]
    only_admin = entries(client, headers, actor="admin@example.org")
    assert {e["actor"] for e in only_admin} == {"admin@example.org"}


def test_verify_names_the_first_tampered_entry(app: Flask, client: FlaskClient, headers) -> None:
    for name in ("a", "b", "c"):
        upload(client, headers["owner"], name)
    assert client.get("/api/v1/audit/verify", headers=headers["owner"]).json["ok"] is True
    target = entries(client, headers, action="datasets.uploaded")[1]["seq"]
    with app.extensions["database"].sessionmaker() as session, session.begin():
        session.execute(
            update(AuditEntry).where(AuditEntry.seq == target).values(actor="someone-else")
        )
    report = client.get("/api/v1/audit/verify", headers=headers["compliance_officer"]).json
    assert report["ok"] is False
    assert report["first_broken_seq"] == target
    assert "hash" in report["problem"]


def test_verify_notices_removed_entries(app: Flask, client: FlaskClient, headers) -> None:
    upload(client, headers["owner"])
    last = entries(client, headers)[-1]["seq"]
    with app.extensions["database"].sessionmaker() as session, session.begin():
        session.execute(delete(AuditEntry).where(AuditEntry.seq == last))
    report = client.get("/api/v1/audit/verify", headers=headers["owner"]).json
    assert report["ok"] is False and report["first_broken_seq"] == last


def test_concurrent_appends_never_fork_the_chain(app: Flask) -> None:
    sessionmaker = app.extensions["database"].sessionmaker

    def append_many(worker: int) -> None:
        for i in range(10):
            with sessionmaker() as session, session.begin():
                audit.append(session, actor=f"w{worker}", action="test.concurrent", target=str(i))

    assert run_concurrently(append_many, range(4)) == 0
    with sessionmaker() as session:
        report = audit.verify_chain(session)
    assert report.ok, report
    assert report.entries >= 40
