"""The `grid` command against a live domain, in-process through click's CliRunner."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from click.testing import Result
from sqlalchemy import text
from torch import nn

import grid_cli as grid
from domain.security import issue_access_token
from grid_common.db import make_engine
from tests.conftest import NODE_NAME, OWNER_EMAIL, OWNER_PASSWORD
from tests.grid_cli.conftest import RunGrid

DS_EMAIL = "ds@example.org"
DS_PASSWORD = "ds-password-123"


def ok_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def failed(result: Result) -> str:
    """The one-line error of a failed command (and proof that it was not a traceback)."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_owner_session_from_the_command_line(
    live_domain: str,
    run_grid: RunGrid,
    config_dir: Path,
    tmp_path: Path,
    digits_csv: Path,
    ragged_csv: Path,
    database_url: str,
) -> None:
    message = failed(run_grid("datasets", "list"))
    assert "not signed in" in message and "grid login" in message
    message = failed(run_grid("login", live_domain, "--email", OWNER_EMAIL))
    assert "--password-stdin" in message  # stdin is no terminal here, so nothing prompts
    message = failed(
        run_grid("login", live_domain, "--email", OWNER_EMAIL, "--password-stdin", input="nope\n")
    )
    assert "Wrong email or password" in message and "401" in message

    signed_in = ok_json(
        run_grid(
            "login",
            live_domain + "/",
            "--email",
            OWNER_EMAIL,
            "--password-stdin",
            "--json",
            input=f"{OWNER_PASSWORD}\n",
        )
    )
    assert signed_in == {"url": live_domain, "email": OWNER_EMAIL, "role": "owner"}
    credentials = config_dir / "credentials.json"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    stored = json.loads(credentials.read_text())
    assert stored["current"] == live_domain
    assert OWNER_PASSWORD not in credentials.read_text()

    user = ok_json(
        run_grid(
            "users", "add", DS_EMAIL, "--role", "data_scientist", "--password-stdin", "--json",
            input=f"{DS_PASSWORD}\n",
        )
    )  # fmt: skip
    assert (user["email"], user["role"]) == (DS_EMAIL, "data_scientist")
    listed = ok_json(run_grid("users", "list", "--json"))
    assert [u["email"] for u in listed] == [OWNER_EMAIL, DS_EMAIL]
    assert "ds@example.org" in run_grid("users", "list").stdout

    dataset = ok_json(
        run_grid(
            "datasets", "upload", str(digits_csv), "--name", "digits-a", "--label", "target",
            "--description", "Digit features", "--tag", "digits", "--tag", "tabular",
            "--no-progress", "--json",
        )
    )  # fmt: skip
    assert dataset["name"] == "digits-a"
    assert dataset["tags"] == ["digits", "tabular"]
    assert dataset["schema"]["row_count"] == 30
    assert dataset["mock"]["synthetic"] is True
    message = failed(run_grid("datasets", "upload", str(digits_csv), "--name", "digits-a"))
    assert "'digits-a' already exists" in message and "--name" in message
    message = failed(run_grid("datasets", "upload", str(ragged_csv), "--name", "ragged"))
    assert "line 3 has 2 fields" in message and "422" in message
    assert [d["name"] for d in ok_json(run_grid("datasets", "list", "--json"))] == ["digits-a"]
    assert "digits-a" in run_grid("datasets", "list").stdout

    # The data scientist asks from Python; the owner decides from the command line.
    ds = grid.login(live_domain, DS_EMAIL, DS_PASSWORD)
    model, plan = nn.Sequential(nn.Linear(3, 3)), {"loss": "cross_entropy"}
    first = ds.request(ds.submit_training(model, "digits-a", plan, reason="Train a classifier").id)
    second = ds.request(ds.submit_training(model, "digits-a", plan, reason="Another try").id)
    pending = ok_json(run_grid("requests", "list", "--status", "pending", "--json"))
    assert [r["id"] for r in pending] == [first.id, second.id]
    decided = ok_json(
        run_grid("requests", "approve", str(first.id), "--reason", "Looks fine", "--json")
    )
    assert (decided["status"], decided["decision_reason"]) == ("approved", "Looks fine")
    assert first.refresh().reason == "Looks fine"
    message = failed(run_grid("requests", "deny", str(second.id)))
    assert "--reason" in message
    denied = run_grid("requests", "deny", str(second.id), "--reason", "One is enough")
    assert f"Request {second.id} denied: One is enough" in denied.stdout
    assert second.refresh().status == "denied"
    assert ok_json(run_grid("requests", "list", "--status", "pending", "--json")) == []
    assert len(ok_json(run_grid("requests", "list", "--json"))) == 2

    # An expired access token is refreshed and the rotated tokens are written back.
    me = ok_json(run_grid("whoami", "--url", live_domain, "--json"))
    secret = (tmp_path / "live" / "secret_key").read_text().strip()
    expired = issue_access_token(
        secret, user_id=me["id"], role="owner", ttl_s=-60, issuer=NODE_NAME
    )
    stored["logins"][live_domain]["access_token"] = expired
    credentials.write_text(json.dumps(stored))
    assert ok_json(run_grid("whoami", "--json"))["email"] == OWNER_EMAIL
    refreshed = json.loads(credentials.read_text())["logins"][live_domain]
    assert refreshed["access_token"] != expired
    assert refreshed["refresh_token"] != stored["logins"][live_domain]["refresh_token"]
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600

    assert ok_json(run_grid("datasets", "delete", "digits-a", "--json")) == {"deleted": "digits-a"}
    message = failed(run_grid("datasets", "delete", "digits-a"))
    assert "No dataset named 'digits-a'" in message

    report = ok_json(run_grid("audit", "verify", "--json"))
    assert report["ok"] is True and report["first_broken_seq"] is None
    assert "intact" in run_grid("audit", "verify").stdout

    # Tampering with one audit entry breaks the chain there; verify names it and exits 1.
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3"))
    engine.dispose()
    broken = run_grid("audit", "verify", "--json")
    assert broken.exit_code == 1
    assert json.loads(broken.stdout)["first_broken_seq"] == 3
    human = run_grid("audit", "verify")
    assert human.exit_code == 1 and "broken at entry 3" in human.stderr

    message = failed(run_grid("whoami", "--url", "http://127.0.0.1:9"))
    assert "no stored login for http://127.0.0.1:9" in message
    assert ok_json(run_grid("logout", "--json"))["signed_out"] is True
    assert "not signed in" in failed(run_grid("whoami"))
