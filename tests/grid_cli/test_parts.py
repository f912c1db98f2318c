"""The client's parts without a server: HTTP errors, credentials, mocks, uploads, the launcher."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from click.testing import CliRunner

from grid_cli.client.mocks import mock_from_sample
from grid_cli.commands.app import main
from grid_cli.commands.credentials import CredentialsError, CredentialStore, StoredLogin
from grid_cli.commands.output import describe_error
from grid_cli.local.launch import DomainLaunch
from grid_common.schemas import MockSample
from grid_common.transport import (
    IDEMPOTENT_METHODS,
    GridError,
    HttpSession,
    error_from_response,
    multipart_body,
)
from tests.conftest import free_port


def response(status: int, body: bytes, content_type: str = "application/json") -> Any:
    made = requests.Response()
    made.status_code, made._content = status, body
    made.headers["Content-Type"] = content_type
    made.url, made.reason = "http://node/api/v1/x", "Reason"
    return made


def test_errors_come_from_the_json_body_or_say_what_came_back() -> None:
    body = json.dumps({"error": {"code": "duplicate_name", "message": "Name taken."}}).encode()
    error = error_from_response(response(409, body))
    assert (error.status, error.code, str(error)) == (409, "duplicate_name", "Name taken.")
    assert "duplicate_name" in repr(error)

    proxy = error_from_response(response(502, b"<html>Bad   gateway</html>", "text/html"))
    assert (proxy.status, proxy.code) == (502, "http_error")
    assert str(proxy) == "HTTP 502 Reason from http://node/api/v1/x: <html>Bad gateway</html>"

    assert describe_error(error) == "Name taken. (HTTP 409 duplicate_name); pick another " + (
        "--name, or delete the old one with `grid datasets delete`"
    )
    expired = GridError(401, "unauthorized", "Refresh token was already used; sign in again.")
    assert "`grid login http://n --email EMAIL`" in describe_error(expired, url="http://n")


def test_every_call_has_a_timeout_and_only_idempotent_calls_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    http = HttpSession("http://127.0.0.1:1/", timeout=(1.0, 2.0))
    assert http.base_url == "http://127.0.0.1:1"
    retry = http.session.get_adapter("http://x").max_retries  # type: ignore[attr-defined]
    assert set(retry.allowed_methods) == IDEMPOTENT_METHODS == {"GET", "HEAD", "PUT", "DELETE"}

    seen: list[dict[str, Any]] = []

    def fake_request(method: str, url: str, **kwargs: Any) -> Any:
        seen.append({"method": method, "url": url, **kwargs})
        return response(200, b"{}")

    monkeypatch.setattr(http.session, "request", fake_request)
    http.request("GET", "/healthz")
    http.request("POST", "/api/v1/x", json={}, timeout=(1.0, 30.0))
    assert [(s["url"], s["timeout"]) for s in seen] == [
        ("http://127.0.0.1:1/healthz", (1.0, 2.0)),
        ("http://127.0.0.1:1/api/v1/x", (1.0, 30.0)),
    ]

    with pytest.raises(GridError, match="not a node URL"):
        HttpSession("127.0.0.1:8001")


def test_an_unreachable_node_is_a_grid_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(GridError, match=f"cannot reach {url}") as unreachable:
        HttpSession(url, retries=0).request("GET", "/healthz")
    assert (unreachable.value.status, unreachable.value.code) == (0, "unreachable")


def test_credentials_file_is_private_and_remembers_the_last_login(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "grid")
    with pytest.raises(CredentialsError, match="grid login"):
        store.get()
    store.save(StoredLogin("http://a:1", "a@example.org", "access-a", "refresh-a"))
    store.save(StoredLogin("http://b:2", "b@example.org", "access-b", "refresh-b"))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    assert store.get().url == "http://b:2"
    assert store.get("http://a:1/").email == "a@example.org"
    with pytest.raises(CredentialsError, match="no stored login for http://c:3"):
        store.get("http://c:3")

    store.update_tokens("http://a:1", "access-2", "refresh-2")
    assert store.get().url == "http://b:2"  # refreshing a token does not switch logins
    assert store.get("http://a:1").refresh_token == "refresh-2"
    store.remove("http://b:2")
    assert store.get().url == "http://a:1"
    assert list(store.directory.iterdir()) == [store.path]  # no temporary files left over

    store.path.write_text("{not json")
    with pytest.raises(CredentialsError, match="delete it"):
        store.get()


def test_mocks_become_dataframes_and_numpy_arrays() -> None:
    table = mock_from_sample(
        MockSample(
            kind="table",
            synthetic=True,
            columns={
                "age": [30, 40],
                "score": [0.5, None],
                "name": ["a", "b"],
                "ok": [True, False],
            },
            dtypes={"age": "int64", "score": "float64", "name": "string", "ok": "bool"},
        )
    )
    assert not isinstance(table, dict)
    assert list(table.columns) == ["age", "score", "name", "ok"]
    assert [str(t) for t in table.dtypes[["age", "score", "ok"]]] == ["int64", "float64", "bool"]
    assert np.isnan(table["score"][1])

    arrays = mock_from_sample(
        MockSample(
            kind="arrays",
            synthetic=True,
            arrays={"x": [[1.0, None], [2.0, 3.0]], "y": [1, 2]},
            dtypes={"x": "float32", "y": "uint8"},
        )
    )
    assert isinstance(arrays, dict)
    assert arrays["x"].dtype == np.float32 and np.isnan(arrays["x"][0, 1])
    assert arrays["y"].dtype == np.uint8


def test_upload_body_repeats_tags_and_sends_only_file_names(tmp_path: Path) -> None:
    data = tmp_path / "digits_a.csv"
    data.write_text("a,b\n1,2\n")
    fields = [("name", "digits"), ("tags", "x"), ("tags", "y")]
    with multipart_body(fields, [("file", data)]) as body:
        assert body.content_type.startswith("multipart/form-data; boundary=")
        text = body.to_string().decode()
    assert text.count('name="tags"') == 2
    assert 'name="file"; filename="digits_a.csv"' in text
    assert str(tmp_path) not in text


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
    assert args[1:] == [
        "-m", "gunicorn", "--preload", "--workers", "3",
        "--config", "python:grid_common.gunicorn_conf", "--bind", "127.0.0.1:8001",
        "domain.wsgi:app",
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
