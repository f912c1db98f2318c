"""JSON log lines, request ids and the logging settings a node reads from its environment."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from grid_common import logs
from grid_common.signing import signed_session


@pytest.fixture
def request_id() -> Iterator[str]:
    logs.set_request_id("rid-under-test")
    yield "rid-under-test"
    logs.set_request_id(None)


def formatted(record_logger: str, *args: object, **kwargs: object) -> dict:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter(node="node-a"))
    logger = logging.getLogger(record_logger)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(*args, **kwargs)  # type: ignore[arg-type]
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    line = stream.getvalue()
    assert line.count("\n") == 1
    parsed: dict = json.loads(line)
    return parsed


def test_a_line_has_time_level_message_node_request_id_and_extras(request_id: str) -> None:
    line = formatted("grid.test", "hello %s", "world", extra={"job_id": 7})
    assert line["message"] == "hello world"
    assert line["level"] == "warning"
    assert line["logger"] == "grid.test"
    assert line["node"] == "node-a"
    assert line["request_id"] == request_id
    assert line["job_id"] == 7
    assert line["time"].endswith("+00:00")


def test_a_line_outside_a_request_has_no_request_id() -> None:
    assert "request_id" not in formatted("grid.test", "background work")


def test_an_exception_stays_one_line() -> None:
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        line = formatted("grid.test", "failed", exc_info=True)
    assert "RuntimeError: boom" in line["exception"]


@pytest.mark.parametrize("good", ["a", "0f" * 16, "trace-1.2:3_x", "x" * 128])
def test_a_well_formed_request_id_is_kept(good: str) -> None:
    assert logs.accept_request_id(good) == good


@pytest.mark.parametrize("bad", [None, "", " ", "x" * 129, "_lead", "a b", "a\nb", "é", "a;b"])
def test_a_malformed_request_id_is_replaced(bad: str | None) -> None:
    made = logs.accept_request_id(bad)
    assert made != bad and len(made) == 32 and logs.accept_request_id(made) == made


def test_signed_calls_carry_the_current_request_id(request_id: str) -> None:
    seen: list[str | None] = []

    class Echo(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("X-Request-Id"))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/"
        with signed_session() as session:
            session.get(url, timeout=5)
            logs.set_request_id(None)
            session.get(url, timeout=5)
    finally:
        server.shutdown()
        thread.join(timeout=10)
    assert seen == [request_id, None]


@pytest.mark.parametrize(
    ("name", "value"), [("GRID_LOG_FORMAT", "xml"), ("GRID_LOG_LEVEL", "LOUD")]
)
def test_bad_logging_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        logs.gunicorn_logconfig()


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_gunicorn_takes_the_same_format(monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    monkeypatch.setenv("GRID_LOG_FORMAT", fmt)
    config = logs.gunicorn_logconfig()
    formatter = config["formatters"]["grid"]
    assert ("()" in formatter) == (fmt == "json")
    assert config["loggers"]["gunicorn.access"]["level"] == "WARNING"
    assert config["disable_existing_loggers"] is False
