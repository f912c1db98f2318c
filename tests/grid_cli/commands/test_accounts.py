"""`grid network accounts …` and `grid fl …` from the shell against a live network."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from grid_cli.commands.app import main
from tests.grid_cli.commands.test_network import ok_json, one_line_error
from tests.network.conftest import OPERATOR_EMAIL, OPERATOR_PASSWORD, LiveNode

Run = Callable[..., Result]

DS_EMAIL = "ds@lab.example"
DS_PASSWORD = "a-long-ds-password"


@pytest.fixture
def run(tmp_path: Path) -> Run:
    """`grid …` in-process, with its own credential store and none of the caller's GRID_*."""
    runner = CliRunner()
    env: dict[str, str | None] = {
        "GRID_CONFIG_DIR": str(tmp_path / "config"),
        "GRID_URL": None,
        "GRID_PASSWORD": None,
        "GRID_NEW_PASSWORD": None,
    }

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(main, list(args), input=input, env=env, catch_exceptions=False)

    return invoke


def _login(run: Run, url: str, email: str, password: str) -> None:
    ok_json(run("login", url, "--email", email, "--password-stdin", "--json", input=password))


def test_operator_adds_and_lists_accounts_and_scientists_see_their_jobs(
    run: Run,
    live_network: LiveNode,
) -> None:
    _login(run, live_network.url, OPERATOR_EMAIL, OPERATOR_PASSWORD)
    message = one_line_error(run("network", "accounts", "add", DS_EMAIL))
    assert "--password-stdin" in message and "GRID_NEW_PASSWORD" in message  # never prompts

    added = ok_json(
        run("network", "accounts", "add", DS_EMAIL, "--password-stdin", "--json", input=DS_PASSWORD)
    )
    assert (added["email"], added["role"]) == (DS_EMAIL, "data_scientist")
    listed = ok_json(run("network", "accounts", "list", "--json"))
    assert {(a["email"], a["role"]) for a in listed} == {
        (OPERATOR_EMAIL, "operator"),
        (DS_EMAIL, "data_scientist"),
    }
    assert DS_EMAIL in run("network", "accounts", "list").stdout
    assert ok_json(run("fl", "list", "--json")) == []

    _login(run, live_network.url, DS_EMAIL, DS_PASSWORD)
    assert ok_json(run("fl", "list", "--json")) == []
    assert "permission" in one_line_error(run("network", "accounts", "list"))


@pytest.mark.parametrize("command", [("show", "7"), ("cancel", "7"), ("download", "7")])
def test_fl_commands_on_an_unknown_job_say_so_in_one_line(
    run: Run,
    live_network: LiveNode,
    command: tuple[str, ...],
) -> None:
    _login(run, live_network.url, OPERATOR_EMAIL, OPERATOR_PASSWORD)
    assert "7" in one_line_error(run("fl", *command))
