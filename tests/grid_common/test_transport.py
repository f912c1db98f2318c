"""The shared transport: who a session says it is, and the progress an upload body reports."""

from __future__ import annotations

from pathlib import Path

from grid_cli.client.node import NodeClient
from grid_common.transport import multipart_body, user_agent
from worker.domain_api import DomainWorkerApi


def test_the_sdk_and_the_worker_each_present_themselves() -> None:
    sdk = NodeClient("http://127.0.0.1:1").http.session.headers["User-Agent"]
    worker = DomainWorkerApi("http://127.0.0.1:1", "token").http.session.headers["User-Agent"]
    assert (sdk, worker) == (user_agent("grid-cli"), user_agent("grid-worker"))
    assert worker.startswith("grid-worker")


def test_an_upload_body_reports_its_progress_to_the_callers_callback(tmp_path: Path) -> None:
    data = tmp_path / "weights.safetensors"
    data.write_bytes(b"x" * 100_000)
    seen: list[tuple[int, int]] = []
    with multipart_body(
        [("metrics", "{}")], [("weights", data)], on_progress=lambda *p: seen.append(p)
    ) as body:
        assert seen == [(0, body.len)]
        while body.read(8192):
            pass
    assert seen[-1] == (body.len, body.len) and len(seen) > 2
