"""Launching a domain (`grid domain start`) with gunicorn or Flask's development server."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from grid_cli.commands.app import main
from grid_cli.local.launch import DomainLaunch


def test_domain_start_execs_gunicorn_with_the_node_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    launched: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr(os, "execvpe", lambda f, args, env: launched.append((f, args, env)))
    monkeypatch.setenv("GRID_DATABASE_URL", "postgresql+psycopg://db/grid")
    node_dir = str(tmp_path / "node")
    result = CliRunner().invoke(
        main,
        ["domain", "start", "--name", "hospital-a", "--port", "8001", "--data-dir", node_dir,
         "--workers", "3"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [(program, args, env)] = launched
    assert program == sys.executable
    # --threads: workers waiting for a job each hold one.
    assert args[1:] == [
        "-m", "gunicorn", "--preload", "--workers", "3",
        "--config", "python:grid_common.gunicorn_conf", "--threads", "8",
        "--bind", "127.0.0.1:8001", "domain.wsgi:app",
    ]  # fmt: skip
    assert env["GRID_NODE_NAME"] == "hospital-a"
    assert env["GRID_DATA_DIR"] == str((tmp_path / "node").resolve())
    assert env["GRID_DATABASE_URL"] == "postgresql+psycopg://db/grid"

    bad_port = CliRunner().invoke(main, ["domain", "start", "--name", "a", "--port", "0"])
    assert bad_port.exit_code == 2
    assert len(bad_port.stderr.strip().splitlines()) == 1


def test_domain_start_dev_runs_flask_on_create_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flask import Flask

    served: list[tuple[Flask, dict[str, Any]]] = []
    monkeypatch.setattr(Flask, "run", lambda app, **kwargs: served.append((app, kwargs)))
    # Set first so that monkeypatch restores them after the launcher overwrites them.
    monkeypatch.setenv("GRID_NODE_NAME", "before")
    monkeypatch.setenv("GRID_DATA_DIR", "before")
    monkeypatch.delenv("GRID_DATABASE_URL", raising=False)
    dev_dir = str(tmp_path / "dev")
    result = CliRunner().invoke(
        main,
        ["domain", "start", "--dev", "--name", "dev-node", "--port", "8123", "--data-dir", dev_dir],
    )
    assert result.exit_code == 0, result.output
    [(app, kwargs)] = served
    assert app.config["GRID"].name == "dev-node"
    assert (tmp_path / "dev" / "domain.db").exists()
    assert kwargs == {"host": "127.0.0.1", "port": 8123, "debug": False, "use_reloader": False}
    launch = DomainLaunch(name="n", port=1, data_dir=tmp_path)
    assert launch.environment({})["GRID_DATA_DIR"] == str(tmp_path.resolve())
