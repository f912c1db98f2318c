"""Owner, admin and operator commands (`settings`, `users update|invite`, `signup`, `setup`,
`keys`, `audit list`, `… show`, downloads) against live nodes, through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch import nn

import grid_cli as grid
from grid_common.schemas import Settings
from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD
from tests.grid_cli.commands.test_jobs import (
    DS_EMAIL,
    DS_PASSWORD,
    PLAN,
    act_as_worker,
    scientist,
    sign_in,
)
from tests.grid_cli.commands.test_session import failed, ok_json
from tests.grid_cli.conftest import DIGITS_CSV, RunGrid
from tests.network.conftest import (
    OPERATOR_EMAIL,
    OPERATOR_PASSWORD,
    LiveNode,
    live_network,
    network_database_url,
    network_sqlite_template,
)

__all__ = ["live_network", "network_database_url", "network_sqlite_template", "scientist"]

NEW_EMAIL = "new@example.org"
NEW_PASSWORD = "new-password-123"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("users", "update", "3"), "nothing to change: pass --role, --deactivate or --activate"),
        (("users", "invite", "a@example.org", "--role", "king"), "'king' is not one of"),
        (("settings", "set"), "nothing to change: pass --file"),
        (("settings", "set", "--min-group-size", "0"), "0 is not in the range x>=1"),
        (("settings", "rules", "add", "--release-on-completion"), "a rule needs a condition"),
        (("audit", "list", "--limit", "0"), "0 is not in the range 1<=x<=1000"),
        (("setup", "http://127.0.0.1:9", "--email", "a@example.org"), "pass --password-stdin"),
    ],
)
def test_bad_usage_is_one_line_naming_the_fix(
    run_grid: RunGrid, args: tuple[str, ...], expected: str
) -> None:
    message = failed(run_grid(*args))
    assert expected in message
    assert "--help" in message or "--password-stdin" in message


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_owner_manages_settings_from_the_shell(
    live_domain: str, run_grid: RunGrid, tmp_path: Path
) -> None:
    sign_in(run_grid, live_domain)
    assert ok_json(run_grid("settings", "show", "--json")) == Settings().model_dump(mode="json")

    changed = ok_json(
        run_grid("settings", "set", "--allow-signup", "--memory-mb", "2048", "--json")
    )
    assert changed["allow_signup"] is True
    assert changed["job_limits"] == {"cpu_seconds": 3600, "memory_mb": 2048, "wall_seconds": 3600}
    assert changed["min_group_size"] == Settings().min_group_size
    grouped = ok_json(run_grid("settings", "set", "--min-group-size", "25", "--json"))
    assert grouped == {**changed, "min_group_size": 25}
    staked = ok_json(run_grid("settings", "set", "--stake", "0.01ether", "--json"))
    assert staked == {**grouped, "stake_wei": 10**16}
    refused = run_grid("settings", "set", "--stake", "0.01")
    assert refused.exit_code == 2 and "0.05 ether" in refused.output
    ruled = ok_json(
        run_grid(
            *("settings", "rules", "add", "--dataset-tag", "public", "--kind", "federated"),
            *("--secure-aggregation", "ckks", "--max-epsilon", "2", "--max-rounds", "5"),
            *("--min-peers", "3", "--json"),
        )
    )
    assert ruled["auto_approval"] == [
        {
            "data_scientist": None,
            "dataset_tag": "public",
            "kind": "federated",
            "max_epochs": None,
            "secure_aggregation": "ckks",
            "max_epsilon": 2.0,
            "max_rounds": 5,
            "min_peers": 3,
            "release_on_completion": False,
        }
    ]
    table = run_grid("settings", "show").stdout
    assert "public" in table and "2048" in table
    assert any(
        line.split() == ["│", "min_group_size", "│", "25", "│"] for line in table.splitlines()
    )

    # What `show --json` prints, edited, goes back with `set --file`; flags apply on top.
    document = json.loads(run_grid("settings", "show", "--json").stdout)
    document["job_limits"]["wall_seconds"] = 60
    edited = tmp_path / "settings.json"
    edited.write_text(json.dumps(document))
    applied = ok_json(
        run_grid("settings", "set", "--file", str(edited), "--no-allow-signup", "--json")
    )
    assert applied["job_limits"]["wall_seconds"] == 60
    assert applied["allow_signup"] is False
    assert len(applied["auto_approval"]) == 1
    assert ok_json(run_grid("settings", "rules", "remove", "1", "--json"))["auto_approval"] == []

    not_json = tmp_path / "broken.json"
    not_json.write_text("{allow_signup: yes")
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"auto_approvals": []}))
    for args, fragments in [
        (("--memory-mb", "10"), ["job_limits.memory_mb", "greater than or equal to 64"]),
        (("--min-group-size", "2000000"), ["min_group_size", "less than or equal to 1000000"]),
        (("--file", str(not_json)), ["is not JSON", "grid settings show --json"]),
        (("--file", str(unknown)), ["auto_approvals", "grid settings show --json"]),
        (("--file", str(tmp_path / "none.json")), ["No such file or directory", "--help"]),
    ]:
        message = failed(run_grid("settings", "set", *args))
        assert all(f in message for f in fragments), message
    message = failed(run_grid("settings", "rules", "remove", "3"))
    assert "no rule number 3: there are 0" in message and "grid settings show" in message
    kept = ok_json(run_grid("settings", "show", "--json"))
    assert (kept["job_limits"]["memory_mb"], kept["min_group_size"]) == (2048, 25)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_owner_manages_accounts_keys_and_reads_the_audit_log_from_the_shell(
    live_domain: str, run_grid: RunGrid
) -> None:
    sign_in(run_grid, live_domain)
    invite = ok_json(run_grid("users", "invite", NEW_EMAIL, "--role", "admin", "--json"))
    assert (invite["email"], invite["role"]) == (NEW_EMAIL, "admin")
    told = run_grid("users", "invite", "other@example.org").stdout
    assert "shown only now" in told and f"grid signup {live_domain}" in told
    message = failed(run_grid("users", "invite", "not-an-email"))
    assert "422" in message and "email" in message

    signup = ("signup", live_domain, "--email", NEW_EMAIL, "--invite-token", invite["token"])
    created = ok_json(run_grid(*signup, "--password-stdin", "--json", input=f"{NEW_PASSWORD}\n"))
    assert (created["email"], created["role"]) == (NEW_EMAIL, "admin")
    message = failed(run_grid(*signup, "--password-stdin", input=f"{NEW_PASSWORD}\n"))
    assert "invalid, used or expired" in message and "grid users invite" in message

    user_id = str(created["id"])
    updated = ok_json(
        run_grid("users", "update", user_id, "--role", "compliance_officer", "--json")
    )
    assert updated["role"] == "compliance_officer"
    assert (
        ok_json(run_grid("users", "update", user_id, "--deactivate", "--json"))["is_active"]
        is False
    )
    with pytest.raises(grid.GridError):
        grid.login(live_domain, NEW_EMAIL, NEW_PASSWORD)
    shown = run_grid("users", "update", user_id, "--activate").stdout
    assert f"User {user_id} {NEW_EMAIL}: compliance_officer, active." in shown
    assert grid.login(live_domain, NEW_EMAIL, NEW_PASSWORD).me.role == "compliance_officer"
    me = str(ok_json(run_grid("whoami", "--json"))["id"])
    message = failed(run_grid("users", "update", me, "--role", "admin"))
    assert "cannot change your own role" in message and "403" in message
    message = failed(run_grid("users", "update", "999", "--deactivate"))
    assert "No user with id 999" in message and "grid users list" in message

    key = ok_json(run_grid("keys", "create", "ci", "--json"))
    assert key["key"].startswith("grid_")
    with grid.connect(live_domain, api_key=key["key"]) as scripted:
        assert scripted.me.email == OWNER_EMAIL
    listed = ok_json(run_grid("keys", "list", "--json"))
    assert [(k["name"], k["revoked"], k["key"]) for k in listed] == [("ci", False, None)]
    table = run_grid("keys", "list").stdout
    assert "ci" in table and key["key"] not in table
    revoked = ok_json(run_grid("keys", "revoke", str(key["id"]), "--json"))
    assert revoked == {"id": key["id"], "revoked": True}
    with pytest.raises(grid.GridError):
        grid.connect(live_domain, api_key=key["key"])
    message = failed(run_grid("keys", "revoke", "999"))
    assert "no API key with id 999" in message and "grid keys list" in message

    actions = [
        e["action"] for e in ok_json(run_grid("audit", "list", "--action", "users.", "--json"))
    ]
    assert actions.count("users.invited") == 2 and actions.count("users.updated") == 3
    assert "users.signed_up" in actions and all(a.startswith("users.") for a in actions)
    theirs = ok_json(run_grid("audit", "list", "--actor", NEW_EMAIL, "--json"))
    assert theirs and {e["actor"] for e in theirs} == {NEW_EMAIL}
    first = ok_json(run_grid("audit", "list", "--limit", "1", "--json"))
    assert [e["seq"] for e in first] == [1]
    after = ok_json(run_grid("audit", "list", "--after", "1", "--limit", "1", "--json"))
    assert [e["seq"] for e in after] == [2]
    table = run_grid("audit", "list", "--action", "api_keys.", "--actor", OWNER_EMAIL).stdout
    assert "api_keys.revoked" in table


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_requests_jobs_datasets_and_results_are_shown_and_downloaded_from_the_shell(
    live_domain: str, run_grid: RunGrid, scientist: grid.DomainClient, tmp_path: Path
) -> None:
    sign_in(run_grid, live_domain)
    asked = scientist.submit_training(
        nn.Sequential(nn.Linear(3, 3)), "digits-a", PLAN, reason="check labels"
    )
    filed = ok_json(run_grid("requests", "show", str(asked.id), "--json"))
    assert (filed["kind"], filed["status"], filed["requester"]) == ("job", "pending", DS_EMAIL)
    assert "check labels" in run_grid("requests", "show", str(asked.id)).stdout
    message = failed(run_grid("requests", "show", "999"))
    assert "No request with id 999" in message and "grid requests list" in message

    shown = ok_json(run_grid("datasets", "show", "digits-a", "--json"))
    assert (shown["schema"]["row_count"], shown["label"]) == (30, "target")
    assert "target" in run_grid("datasets", "show", "digits-a").stdout
    saved = ok_json(
        run_grid("datasets", "download", "digits-a", "--out", str(tmp_path / "c.csv"), "--json")
    )
    assert saved == {
        "dataset": "digits-a",
        "path": str(tmp_path / "c.csv"),
        "bytes": len(DIGITS_CSV),
    }
    assert (tmp_path / "c.csv").read_text() == DIGITS_CSV
    message = failed(run_grid("datasets", "show", "nope"))
    assert "No dataset named 'nope'" in message and "grid datasets list" in message

    job = scientist.submit_training(nn.Sequential(nn.Linear(3, 3)), "digits-a", PLAN, reason="cli")
    assert run_grid("requests", "approve", str(job.id)).exit_code == 0
    act_as_worker(live_domain, ok_json(run_grid("workers", "add", "w1", "--json"))["token"], job.id)
    info = ok_json(run_grid("jobs", "show", str(job.id), "--json"))
    assert (info["status"], info["result_status"], info["metrics"]) == (
        "completed",
        "held",
        {"loss": 0.3},
    )
    assert "held" in run_grid("jobs", "show", str(job.id)).stdout
    message = failed(run_grid("jobs", "show", "999"))
    assert "No job with id 999" in message and "grid jobs list" in message
    held = ok_json(
        run_grid("results", "download", str(job.id), "-o", str(tmp_path / "o.st"), "--json")
    )

    ok_json(run_grid("budgets", "set", "digits-a", "2.5", "--json"))
    assert ok_json(run_grid("budgets", "clear", "digits-a", "--json"))["budgets"] == []
    message = failed(run_grid("budgets", "clear", "digits-a", "--data-scientist", "x@example.org"))
    assert "No account with email 'x@example.org'" in message and "grid users list" in message

    # The data scientist gets the result only once the owner released it.
    ok_json(run_grid("login", live_domain, "--email", DS_EMAIL, "--password-stdin", "--json",
                     input=f"{DS_PASSWORD}\n"))  # fmt: skip
    target = tmp_path / "ds.safetensors"
    message = failed(run_grid("results", "download", str(job.id), "--output", str(target)))
    assert "held until" in message and "grid results release" in message
    assert sorted(tmp_path.glob("ds.safetensors*")) == []
    grid.login(live_domain, OWNER_EMAIL, OWNER_PASSWORD).release(job.id)
    got = ok_json(run_grid("results", "download", str(job.id), "--out", str(target), "--json"))
    assert got["sha256"] == held["sha256"] == job.refresh().info.result_hash
    assert run_grid("results", "download", str(job.id), "-o", str(target)).stdout.startswith(
        f"Saved {target}"
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_new_domain_is_set_up_and_its_association_shown_from_the_shell(
    run_grid: RunGrid, live_network: LiveNode, database_url: str, tmp_path: Path
) -> None:
    bare = LiveNode(
        "domain",
        {
            "GRID_DATA_DIR": str(tmp_path / "bare"),
            "GRID_DATABASE_URL": database_url,
            "GRID_NODE_NAME": "hospital-b",
        },
        tmp_path / "bare.log",
    )
    try:
        owner = ok_json(
            run_grid("setup", bare.url, "--email", OWNER_EMAIL, "--password-stdin", "--json",
                     input=f"{OWNER_PASSWORD}\n")
        )  # fmt: skip
        assert (owner["url"], owner["email"], owner["role"]) == (bare.url, OWNER_EMAIL, "owner")
        for url, what in [(bare.url, "owner"), (live_network.url, "operator")]:
            message = failed(
                run_grid("setup", url, "--email", "x@example.org", "--password-stdin",
                         input="another-password\n")
            )  # fmt: skip
            assert f"already has an {what}" in message and "grid login" in message

        sign_in(run_grid, bare.url)
        joined = ok_json(run_grid("network", "join", live_network.url, "--json"))
        login = ("login", live_network.url, "--email", OPERATOR_EMAIL, "--password-stdin")
        assert run_grid(*login, input=f"{OPERATOR_PASSWORD}\n").exit_code == 0
        [pending] = ok_json(run_grid("associations", "list", "--json"))
        shown = ok_json(run_grid("associations", "show", str(pending["id"]), "--json"))
        assert shown == pending
        assert (shown["name"], shown["url"], shown["status"]) == (
            "hospital-b",
            joined["domain_url"],
            "pending",
        )
        assert "hospital-b" in run_grid("associations", "show", str(pending["id"])).stdout
        message = failed(run_grid("associations", "show", "999"))
        assert "No association with id 999" in message and "grid associations list" in message
    finally:
        bare.stop()
