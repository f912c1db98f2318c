"""`grid network …`, `grid associations …` and `grid domain info` against live nodes."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient

import grid_cli as grid
from grid_cli.commands.app import main
from grid_common import he
from grid_common.analytics.compute import Release, from_wire, local_sums, release, to_wire
from grid_common.analytics.plan import AnalysisPlan
from grid_common.federated_schemas import ParticipantState
from grid_common.identity import identity_path, load_or_create_identity
from network import NetworkConfig
from registry.keys import load_or_create_account
from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD
from tests.grid_cli.conftest import DIGITS_CSV
from tests.network.conftest import (
    NETWORK_NAME,
    OPERATOR_EMAIL,
    OPERATOR_PASSWORD,
    LiveNode,
    Signer,
)
from tests.network.test_federated import PASSWORD, account, member, send
from tests.network.test_live import eventually


@pytest.fixture
def run(tmp_path: Path):
    runner = CliRunner()
    env: dict[str, str | None] = {
        "GRID_CONFIG_DIR": str(tmp_path / "config"),
        "GRID_URL": None,
        "GRID_PASSWORD": None,
        "GRID_DATA_DIR": None,
    }

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(main, list(args), input=input, env=env, catch_exceptions=False)

    return invoke


def ok_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def one_line_error(result: Result) -> str:
    assert result.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_info_prints_id_and_public_keys_never_private_ones(run, tmp_path: Path) -> None:
    message = one_line_error(run("network", "info", "--data-dir", str(tmp_path / "none")))
    assert "start the node once" in message
    identity = load_or_create_identity(tmp_path / "node")
    for kind in ("network", "domain"):
        shown = ok_json(run(kind, "info", "--data-dir", str(tmp_path / "node"), "--json"))
        assert shown == {
            "data_dir": str((tmp_path / "node").resolve()),
            **identity.public_fields(),
            "eth_address": "none yet",
        }
        table = run(kind, "info", "--data-dir", str(tmp_path / "node"))
        assert identity.node_id in table.stdout
    account = load_or_create_account(tmp_path / "node")
    shown = ok_json(run("domain", "info", "--data-dir", str(tmp_path / "node"), "--json"))
    assert shown["eth_address"] == account.address
    secret = json.loads(identity_path(tmp_path / "node").read_text())["signing_seed"]
    assert secret not in table.stdout
    assert stat.S_IMODE(identity_path(tmp_path / "node").stat().st_mode) == 0o600


def test_owner_joins_and_operator_decides_from_the_shell(
    run, live_network: LiveNode, live_member: LiveNode, tmp_path: Path
) -> None:
    csv = tmp_path / "digits.csv"
    csv.write_text(DIGITS_CSV)
    owner = grid.login(live_member.url, OWNER_EMAIL, OWNER_PASSWORD)
    owner.upload_dataset("digits-a", csv, description="handwritten digits", progress=False)
    ok_json(run("login", live_member.url, "--email", OWNER_EMAIL, "--password-stdin", "--json",
                input=f"{OWNER_PASSWORD}\n"))  # fmt: skip
    joined = ok_json(run("network", "join", live_network.url, "--json"))
    assert joined["status"] == "pending"
    assert joined["domain_url"] == live_member.url
    again = ok_json(run("network", "memberships", "--json"))
    assert [m["network_id"] for m in again] == [joined["network_id"]]

    signed_in = ok_json(
        run("login", live_network.url, "--email", OPERATOR_EMAIL, "--password-stdin", "--json",
            input=f"{OPERATOR_PASSWORD}\n")
    )  # fmt: skip
    assert signed_in["role"] == "operator"
    pending = ok_json(run("associations", "list", "--status", "pending", "--json"))
    assert [a["name"] for a in pending] == ["hospital-a"]
    association = pending[0]["id"]
    assert "pending" in run("associations", "list").stdout
    message = one_line_error(run("associations", "reject", str(association)))
    assert "--reason" in message
    approved = ok_json(run("associations", "approve", str(association), "--reason", "ok", "--json"))
    assert approved["status"] == "approved"
    message = one_line_error(run("associations", "reject", str(association), "--reason", "no"))
    assert "409" in message and "pending" in message

    net = grid.connect(live_network.url)
    eventually(lambda: net.search("digits"), "the domain's first push")
    found = ok_json(run("network", "search", live_network.url, "handwritten", "--json"))
    assert [(h["domain"]["name"], h["dataset"]) for h in found] == [("hospital-a", "digits-a")]
    domains = ok_json(run("network", "domains", live_network.url, "--json"))
    assert [d["name"] for d in domains] == ["hospital-a"]
    malformed = one_line_error(run("network", "search", live_network.url, '"open'))
    assert "Malformed search query" in malformed and "400" in malformed

    removed = ok_json(run("associations", "remove", str(association), "--json"))
    assert removed == {"removed": association}
    assert ok_json(run("network", "search", live_network.url, "handwritten", "--json")) == []
    left = ok_json(
        run("network", "leave", joined["network_id"], "--url", live_member.url, "--json")
    )
    assert left == {"network_id": joined["network_id"], "left": True}
    assert ok_json(run("network", "memberships", "--url", live_member.url, "--json")) == []


def test_network_start_runs_threaded_gunicorn_or_the_dev_server(
    run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    launched: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr(os, "execvpe", lambda f, args, env: launched.append((f, args, env)))
    node_dir = str(tmp_path / "net")
    result = run("network", "start", "--name", "research-net", "--port", "8000",
                 "--data-dir", node_dir)  # fmt: skip
    assert result.exit_code == 0, result.output
    [(program, args, env)] = launched
    assert program == sys.executable
    assert args[1:] == [
        "-m", "gunicorn", "--preload", "--workers", "2",
        "--config", "python:grid_common.gunicorn_conf", "--threads", "8",
        "--bind", "127.0.0.1:8000", "network.wsgi:app",
    ]  # fmt: skip
    assert env["GRID_NODE_NAME"] == "research-net"
    assert env["GRID_DATA_DIR"] == str((tmp_path / "net").resolve())

    served: list[Flask] = []
    monkeypatch.setattr(Flask, "run", lambda app, **kwargs: served.append(app))
    monkeypatch.setenv("GRID_BACKGROUND", "false")
    monkeypatch.setenv("GRID_NODE_NAME", "")  # the dev server sets it here; undone after the test
    result = run("network", "start", "--dev", "--name", "dev-net", "--port", "8000",
                 "--data-dir", node_dir)  # fmt: skip
    assert result.exit_code == 0, result.output
    [app] = served
    assert app.name == "network" and app.config["GRID"].name == "dev-net"
    assert ok_json(run("network", "info", "--data-dir", node_dir, "--json"))["node_id"]


# --- grid fl analyze | list | show | download --------------------------------------------------


@pytest.fixture
def twin_network(
    network_app: Flask, network_config: NetworkConfig, network_database_url: str, tmp_path: Path
) -> Iterator[LiveNode]:
    """The in-process network (`network`) served live as well: one database and data dir, so
    the CLI sees the jobs that the test's in-process domains take part in."""
    node = LiveNode(
        "network",
        {
            "GRID_DATA_DIR": str(network_config.data_dir),
            "GRID_DATABASE_URL": network_database_url,
            "GRID_NODE_NAME": NETWORK_NAME,
            "GRID_BACKGROUND": "false",
        },
        tmp_path / "twin-network.log",
        workers=1,
    )
    yield node
    node.stop()


def table_lines(result: Result) -> list[str]:
    """Stdout's lines, table rows as `cell │ cell` with the borders and padding gone."""
    assert result.exit_code == 0, result.output
    rows = (line.replace("┃", "│").strip("│ ") for line in result.stdout.splitlines())
    return [" ".join(row.split()) for row in rows]


def domain_rows(index: int) -> pd.DataFrame:
    """The private rows of the index-th domain's `records`."""
    values = np.arange(30) + 7 * index
    return pd.DataFrame({"f0": values % 8, "f1": values % 5, "target": values % 3})


def take_part(job_id: int, plan: AnalysisPlan, signers: list[Signer], work: Path) -> bytes:
    """What the domains' workers do: approve, send plain sums, attest the release, upload it."""
    path = f"/api/v1/fl/jobs/{job_id}"
    for signer in signers:
        decided = signer.call("POST", f"{path}/decision", {"approved": True, "min_group_size": 5})
        assert decided.status_code == 200, decided.json
    state = ParticipantState.model_validate(signers[0].call("GET", f"{path}/state").json)
    layout = he.UpdateLayout("none", plan.layout.size, state.slots)
    update = work / "update.bin"
    for index, signer in enumerate(signers):
        vector, _ = local_sums(domain_rows(index), plan)
        he.write_update(to_wire(plan, vector), he.codec_for("none"), layout, update)
        sent = send(signer, "PUT", f"{path}/rounds/1/update?samples=30", update.read_bytes())
        assert sent.status_code == 200, sent.json
    aggregate = signers[0].call("GET", f"{path}/rounds/1/aggregate")
    assert aggregate.status_code == 200, aggregate.get_data(as_text=True)
    update.write_bytes(aggregate.data)
    total = from_wire(plan, he.read_update(update, he.codec_for("none"), layout))
    release(plan, total, min_group_size=5).write(update)
    final = update.read_bytes()
    digest = hashlib.sha256(final).hexdigest()
    for signer in signers:
        attested = signer.call("POST", f"{path}/attestation", {"model_hash": digest})
        assert attested.status_code == 200, attested.json
    uploaded = send(signers[0], "PUT", f"{path}/result", final)
    assert uploaded.status_code == 200, uploaded.json
    for signer in signers[1:]:  # every owner releases it, not only the one who uploaded it
        released = signer.call("POST", f"{path}/release", {"model_hash": digest})
        assert released.status_code == 200, released.json
    assert ParticipantState.model_validate(released.json).status == "completed"
    return final


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_scientist_runs_an_analysis_from_the_shell(
    run,
    network: FlaskClient,
    operator: dict[str, str],
    make_signer: Callable[[], Signer],
    twin_network: LiveNode,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # tables print whole
    names = ("hospital-a", "clinic-b", "lab-c")
    signers = [member(network, operator, make_signer, name) for name in names]
    account(network, operator, "scientist@example.org")
    ok_json(run("login", twin_network.url, "--email", "scientist@example.org",
                "--password-stdin", "--json", input=PASSWORD))  # fmt: skip
    ask = ("fl", "analyze", *(f for name in names for f in ("--dataset", f"{name}:records")))
    message = one_line_error(run(*ask, "--stat", "hist:height:0:1:2"))
    assert "height" in message and "422 incompatible_datasets" in message

    # Waiting past --timeout leaves the analysis running: the note and the error name it.
    waited = run(*ask, "--stat", "count", "--timeout", "0.2", "--no-progress")
    assert waited.exit_code == 1
    note, message = waited.stderr.strip().splitlines()
    assert note.startswith("Submitted analysis 1 to hospital-a, clinic-b, lab-c; waiting")
    assert "still pending_approval; it goes on: follow it with `grid fl show 1`" in message
    assert ok_json(run("fl", "cancel", "1", "--json"))["status"] == "cancelled"

    submitted = ok_json(
        run(*ask, "--stat", "count", "--stat", "mean", "--stat", "hist:f0:0:8:4",
            "--column", "f0", "--column", "f1", "--secure-aggregation", "none",
            "--no-wait", "--json")
    )  # fmt: skip
    job = str(submitted["id"])
    assert (submitted["kind"], submitted["status"], submitted["rounds"]) == (
        "analytics", "pending_approval", 1,
    )  # fmt: skip
    listed = table_lines(run("fl", "list"))
    assert any(line.startswith(f"{job} │ analytics │ pending_approval │") for line in listed)
    assert any(line.startswith("1 │ analytics │ cancelled │") for line in listed)
    assert "0/1" in " ".join(listed)
    message = one_line_error(run("fl", "download", job, "-o", str(tmp_path / "early")))
    assert f"analysis {job} has no result to download yet" in message

    plan = AnalysisPlan.model_validate(submitted["plan"])
    final = take_part(int(job), plan, signers, tmp_path)
    shown = table_lines(run("fl", "show", job))
    assert f"Analysis {job}" in shown and "status │ completed" in shown
    assert "rounds │ 1/1" in shown and "computes │ statistics count, mean, hist:f0:0:8:4" in shown
    assert "features │ 2: f0, f1" in shown and "label │ none" in shown
    assert "round │ status │ domains │ rows" in shown
    assert "1 │ closed │ hospital-a, clinic-b, lab-c │ 90" in shown
    assert f"{job} │ analytics │ completed │ scientist@example.org │ 1/1 │" in " ".join(
        table_lines(run("fl", "list"))
    )

    saved = ok_json(run("fl", "download", job, "-o", str(tmp_path / "a.safetensors"), "--json"))
    assert saved == {
        "job": int(job),
        "kind": "analytics",
        "path": str(tmp_path / "a.safetensors"),
        "sha256": hashlib.sha256(final).hexdigest(),
    }
    downloaded = Release.read(tmp_path / "a.safetensors")
    assert float(downloaded.tensors["count"]) == 90
    both = pd.concat([domain_rows(i) for i in range(len(names))])
    assert downloaded.tensors["mean"] == pytest.approx(list(both[["f0", "f1"]].mean()))
