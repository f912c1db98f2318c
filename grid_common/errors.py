"""API errors and the handlers that turn every failure into a JSON error body."""

from __future__ import annotations

import errno
import logging
from typing import Any

from flask import Flask, Response, jsonify
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error a client should see: HTTP status, a stable code and a human message."""

    status = 400
    code = "bad_request"

    def __init__(
        self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = headers or {}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class Unprocessable(ApiError):
    status, code = 422, "invalid"


class TooManyRequests(ApiError):
    status, code = 429, "too_many_requests"


class ServiceUnavailable(ApiError):
    status, code = 503, "unavailable"


class InsufficientStorage(ApiError):
    status, code = 507, "insufficient_storage"


# Seconds a client waits before trying again while the node's database is away.
DATABASE_RETRY_AFTER_S = 2


def fault_error(exc: BaseException) -> ApiError | None:
    """The client's error for a fault of the node's own database or disk; None for any other.

    The message names the fault, never its cause: driver messages carry hosts, ports and
    user names, so they stay in the node's log.
    """
    if isinstance(exc, OperationalError | DisconnectionError | PoolTimeout):
        return ServiceUnavailable(
            "The node's database is unavailable; try again shortly.",
            code="database_unavailable",
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
        )
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage(
            "The node has no disk space left to store this; nothing was kept. "
            "Try again once its operator has freed space."
        )
    return None


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    body: dict[str, Any] = {"code": code, "message": message, **extra}
    response = jsonify(error=body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def register_error_handlers(app: Flask, *, max_upload_hint: str = "") -> None:
    """Make every error leaving the app a JSON body `{"error": {"code", "message"}}`."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"Request body exceeds the upload limit of {limit} bytes." + max_upload_hint
        elif status == 404:
            message = "No such endpoint. The API lives under /api/v1; see /api/v1/openapi.json."
        # The exception's own headers stay (a 405's Allow lists the methods the URL takes).
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return error_response(status, _HTTP_CODES.get(status, "http_error"), message, headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        fault = fault_error(exc)
        if fault is not None:
            log.error("%s: %s", fault.code, exc)
            return _api_error(fault)
        log.exception("unhandled error")
        return error_response(500, "internal", "Internal server error; see the node's log.")
