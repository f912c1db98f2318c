"""Request ids and structured logs: one JSON object per line, each with its request's id."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter

REQUEST_ID_HEADER = "X-Request-Id"
# Letters, digits and `._:-`: an id is then safe in a header and in a log line.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_request_id: ContextVar[str | None] = ContextVar("grid_request_id", default=None)


# --- request ids ----------------------------------------------------------------


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(value: str | None) -> str:
    """The caller's id when it has a safe shape, else a fresh one."""
    if value and _REQUEST_ID.match(value):
        return value
    return new_request_id()


def current_request_id() -> str | None:
    """The id of the request this thread serves, if any."""
    return _request_id.get()


def set_request_id(rid: str | None) -> None:
    """Mark this thread as serving request `rid` (None: serving none)."""
    _request_id.set(rid)


def request_id_headers() -> dict[str, str]:
    """Headers that carry the current request id on to another node (empty outside one)."""
    rid = current_request_id()
    return {REQUEST_ID_HEADER: rid} if rid else {}


class PropagatingAdapter(HTTPAdapter):
    """A `requests` adapter that sends the current request id along with every call."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        rid = current_request_id()
        if rid and REQUEST_ID_HEADER not in request.headers:
            request.headers[REQUEST_ID_HEADER] = rid
        return super().send(request, *args, **kwargs)


# --- logs -----------------------------------------------------------------------

_RECORD_FIELDS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime"}
)
# One encoder for every line: `json.dumps` with `default=` builds a new one on each call.
_encode = json.JSONEncoder(default=str).encode


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, and any `extra=`."""

    def __init__(self, node: str = "") -> None:
        super().__init__()
        self.node = node or os.environ.get("GRID_NODE_NAME", "")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.node:
            entry["node"] = self.node
        rid = current_request_id()
        if rid:
            entry["request_id"] = rid
        entry.update(
            (key, value)
            for key, value in record.__dict__.items()
            if key not in _RECORD_FIELDS and not key.startswith("_")
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _encode(entry)


def log_format() -> str:
    """GRID_LOG_FORMAT: `json`, or `text`; unset, text on a terminal and JSON anywhere else."""
    default = "text" if sys.stderr.isatty() else "json"
    fmt = (os.environ.get("GRID_LOG_FORMAT") or default).lower()
    if fmt not in ("json", "text"):
        raise ValueError(f"GRID_LOG_FORMAT must be json or text, got {fmt!r}")
    return fmt


def log_level() -> str:
    level = os.environ.get("GRID_LOG_LEVEL", "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError(f"GRID_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
    return level


def configure_logging() -> None:
    """Send the root logger to stderr as GRID_LOG_FORMAT says, at GRID_LOG_LEVEL."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format() == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(log_level())
    # Alembic announces each of its plugins at INFO on every start; its migrations still show.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def gunicorn_logconfig() -> dict[str, Any]:
    """gunicorn's `logconfig_dict`: its own lines in the same format as the app's."""
    formatter: dict[str, Any] = (
        {"()": "grid_common.logs.JsonFormatter"}
        if log_format() == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    )
    handler = {"class": "logging.StreamHandler", "formatter": "grid", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"grid": formatter},
        "handlers": {"grid": handler},
        "root": {"level": log_level(), "handlers": ["grid"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["grid"], "propagate": False},
            # The app logs every request itself (grid.access), with its request id.
            "gunicorn.access": {"level": "WARNING", "handlers": ["grid"], "propagate": False},
        },
    }
