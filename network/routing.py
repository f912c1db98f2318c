"""Routing: `/api/v1/domains/<domain_id>/<path>` forwarded to the domain, streamed both ways.

The data scientist's own `Authorization` header goes through untouched and nothing else is
added to it: the network holds no credential of its own at a domain, so it can only carry
calls, never make them in someone's name. Bodies flow in chunks in both directions, so a
transfer of any size costs the network the same memory.

A routed answer is served on the network's own origin, where its operators' console session
lives, and the domain answering may be malicious. So only listed headers cross in either
direction: never the browser's `Cookie` out, never the domain's `Set-Cookie` (or any other
header that acts on the origin) back. Pages are refused outright (routing is for the API), and
every answer is sandboxed (`Content-Security-Policy: sandbox`, `nosniff`): a browser that opens
one runs no script of it and gives it no access to the origin's cookies or storage.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import urllib3
from flask import Blueprint, Response, current_app, request
from sqlalchemy import select
from urllib3.exceptions import HTTPError, NewConnectionError, TimeoutError

from grid_common.api import PUBLIC, route
from grid_common.db import db_session
from grid_common.errors import ApiError, NotFound
from grid_common.logs import request_id_headers
from network.auth import client_address
from network.context import config
from network.models import Association

CHUNK = 64 * 1024
# What a call carries to the domain: its one credential, `Authorization`, and what describes its
# body or negotiates the answer. Anything else a browser or client sends (`Cookie`, `Origin`,
# `Referer`, proxy credentials, hop-by-hop headers) stays here; `Content-Length`,
# `X-Forwarded-For` and the request id are set by this hop.
_FORWARDED = frozenset(
    {
        "authorization",
        "accept",
        "accept-encoding",
        "accept-language",
        "content-type",
        "content-encoding",
        "user-agent",
        "range",
        "if-range",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
    }
)
# What an answer carries back: what describes its body and how to cache or retry it. Never
# `Set-Cookie`, `Clear-Site-Data`, `Location`, CORS, reporting (`NEL`, `Report-To`) or policy
# headers, which would act on the network's origin in the domain's name.
_RELAYED = frozenset(
    {
        "content-type",
        "content-encoding",
        "content-disposition",
        "content-range",
        "accept-ranges",
        "cache-control",
        "expires",
        "etag",
        "last-modified",
        "vary",
        "retry-after",
        "www-authenticate",
    }
)
# Every routed answer, the network's own errors included, is an inert document to a browser.
SANDBOX_HEADERS = {"Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"}
PREFIX = "/api/v1/domains"

bp = Blueprint("routing", __name__, url_prefix=PREFIX)


class BadGateway(ApiError):
    status, code = 502, "domain_unreachable"


class GatewayTimeout(ApiError):
    status, code = 504, "domain_timeout"


class UnsupportedContent(ApiError):
    status, code = 502, "unsupported_content"


def _is_page(content_type: str) -> bool:
    """Whether a browser could render this media type as a document with scripts in it."""
    media = content_type.partition(";")[0].strip().lower()
    return media in ("text/html", "text/xml", "application/xml", "text/xsl") or media.endswith(
        "+xml"
    )


class _Pools:
    """One connection pool manager per process: pools must not cross a fork."""

    def __init__(self) -> None:
        self._pid = -1
        self._manager: urllib3.PoolManager | None = None

    def get(self) -> urllib3.PoolManager:
        if self._manager is None or self._pid != os.getpid():
            self._manager = urllib3.PoolManager(num_pools=256, maxsize=16, block=False)
            self._pid = os.getpid()
        return self._manager


_pools = _Pools()


class _DomainUrls:
    """Where approved domains live, remembered for a moment: most routed calls then cost the
    network no database round trip. A removed domain stops being routed within `TTL_S` in
    other processes (at once in the one that removed it)."""

    TTL_S = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._urls: dict[str, tuple[str, float]] = {}

    def get(self, domain_id: str) -> str | None:
        now = time.monotonic()
        with self._lock:
            cached = self._urls.get(domain_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        url = db_session().scalar(
            select(Association.url).where(
                Association.domain_id == domain_id, Association.status == "approved"
            )
        )
        db_session().close()  # a long transfer must not hold a database connection
        with self._lock:
            if url is None:
                self._urls.pop(domain_id, None)
            else:
                self._urls[domain_id] = (url, now + self.TTL_S)
        return url

    def forget(self, domain_id: str) -> None:
        with self._lock:
            self._urls.pop(domain_id, None)


domain_urls = _DomainUrls()


def _upstream_target(domain_id: str, rest: str) -> str:
    """The path and query to ask the domain for, as the client wrote them (still encoded)."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or ""
    if raw.startswith(("http://", "https://")):
        parts = urlsplit(raw)
        raw = parts.path + (f"?{parts.query}" if parts.query else "")
    prefix = f"{request.script_root}{PREFIX}/{domain_id}/"
    if raw.startswith(prefix):
        return "/" + raw[len(prefix) :]
    query = request.query_string.decode("latin-1")
    return "/" + quote(rest, safe="/:@!$&'()*+,;=-._~") + (f"?{query}" if query else "")


def _request_body() -> tuple[Iterator[bytes] | None, dict[str, str], bool]:
    """The incoming body as chunks, the length header to send, and whether to chunk it."""
    length = request.content_length
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if not length and not chunked:
        return None, {}, False
    stream = request.stream

    def chunks() -> Iterator[bytes]:
        while chunk := stream.read(CHUNK):
            yield chunk

    if length:
        return chunks(), {"Content-Length": str(length)}, False
    return chunks(), {}, True


def _forward_headers() -> dict[str, str]:
    headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED}
    # The caller as this network knows it (GRID_TRUSTED_PROXIES applies); what the caller wrote
    # into its own X-Forwarded-For is unverified, so it is not passed on as if it were.
    headers["X-Forwarded-For"] = client_address()
    headers.update(request_id_headers())  # this hop's id, which replaces a malformed one
    return headers


@bp.after_request
def _sandbox(response: Response) -> Response:
    response.headers.update(SANDBOX_HEADERS)
    return response


@route(
    bp,
    "/<domain_id>/<path:rest>",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    permission=PUBLIC,
    summary="Reach an associated domain's API through the network: the rest of the path, the "
    "body and the caller's Authorization header go to the domain (cookies never do); a page "
    "is refused (502 unsupported_content) and every answer is sandboxed",
    response_kind="binary",
)
def forward(domain_id: str, rest: str) -> Response:
    url = domain_urls.get(domain_id)
    if url is None:
        raise NotFound(f"No associated domain with id {domain_id!r}; see /api/v1/domains.")
    cfg = config()
    body, length_header, chunked = _request_body()
    try:
        upstream = _pools.get().urlopen(
            request.method,
            url + _upstream_target(domain_id, rest),
            body=body,
            headers={**_forward_headers(), **length_header},
            chunked=chunked,
            preload_content=False,
            decode_content=False,
            redirect=False,
            retries=False,
            timeout=urllib3.Timeout(
                connect=cfg.route_connect_timeout_s, read=cfg.route_read_timeout_s
            ),
        )
    except TimeoutError as exc:
        if not isinstance(exc, NewConnectionError):  # urllib3 files refusals under timeouts
            raise GatewayTimeout(f"Domain {domain_id} did not answer in time.") from None
        current_app.logger.info("routing to %s failed: connection refused", domain_id)
        raise BadGateway(f"Domain {domain_id} cannot be reached from this network now.") from None
    except HTTPError as exc:
        current_app.logger.info("routing to %s failed: %s", domain_id, type(exc).__name__)
        raise BadGateway(f"Domain {domain_id} cannot be reached from this network now.") from None

    def relay() -> Iterator[bytes]:
        complete = False
        try:
            yield from upstream.stream(CHUNK, decode_content=False)
            complete = True
        finally:
            if complete:
                upstream.release_conn()
            else:
                upstream.close()

    content_type = upstream.headers.get("Content-Type")
    if content_type is not None and _is_page(content_type):
        upstream.close()
        current_app.logger.info("routing to %s refused a page answer", domain_id)
        raise UnsupportedContent(
            f"Domain {domain_id} answered with a page ({content_type.partition(';')[0]}); "
            "routing relays only the domain API's JSON and binary answers, so open the "
            "domain's own URL for its console."
        )
    headers = [(k, v) for k, v in upstream.headers.items() if k.lower() in _RELAYED]
    if upstream.headers.get("Content-Length") is not None:
        headers.append(("Content-Length", upstream.headers["Content-Length"]))
    response = Response(relay(), status=upstream.status, headers=headers, direct_passthrough=True)
    if content_type is None:
        # Flask would label it text/html; an untyped body goes out as bytes, never as a page.
        if upstream.status in (204, 304):
            del response.headers["Content-Type"]
        else:
            response.headers["Content-Type"] = "application/octet-stream"
    return response
