"""The shared transport: who a session says it is, upload progress, kept-alive connections."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from grid_cli.client.node import NodeClient
from grid_common.transport import HttpSession, multipart_body, user_agent
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


_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        body += conn.recv(65536)
    return head


@pytest.fixture
def closing_keepalive_server() -> Iterator[str]:
    """A node that answers the first request on a connection and closes it on the second.

    That is what a request meets when it goes out on a kept-alive connection just as the node
    closes it for being idle: the node never answers it.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)

    def serve(conn: socket.socket) -> None:
        with conn:
            if _read_request(conn):
                conn.sendall(_OK)
                _read_request(conn)  # the reused connection's next request: closed, unanswered

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def test_a_post_after_idle_time_never_goes_out_on_a_connection_the_node_may_be_closing(
    closing_keepalive_server: str,
) -> None:
    http = HttpSession(closing_keepalive_server, product="grid-test")
    http.stale_after_s = 0.0  # every call counts as after an idle spell, without waiting one
    http.request("GET", "/first")
    assert http.request("POST", "/submit", json={"n": 1}).json() == {}
    assert http.request("POST", "/submit", json={"n": 2}).json() == {}
