"""The client's parts without a server: HTTP errors, timeouts and retries, mocks, upload bodies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from grid_cli.client.mocks import mock_from_sample
from grid_cli.commands.output import describe_error
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
