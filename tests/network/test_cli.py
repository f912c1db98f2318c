"""`grid network …`, `grid associations …` and `grid domain info` against live nodes."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask

import grid_cli as grid
from grid_cli.cli import main
from grid_common.identity import identity_path, load_or_create_identity
from registry.keys import load_or_create_account
from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD
from tests.grid_cli.conftest import DIGITS_CSV
from tests.network.conftest import OPERATOR_EMAIL, OPERATOR_PASSWORD, LiveNode
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
