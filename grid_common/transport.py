"""HTTP to a Grid node, for the SDK and the worker alike: timeouts on every call, retries only
when idempotent, JSON errors raised as GridError, streaming multipart uploads."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests_toolbelt import MultipartEncoder, MultipartEncoderMonitor
from urllib3.util.retry import Retry

# (connect, read) seconds; reads wait longer because the node may hash or inspect a big file.
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 60.0)
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})
# A node closes a kept-alive connection after a couple of idle seconds (gunicorn's keep-alive
# is 2 s), and on a busy machine it may do so just as a request goes out on it. An idempotent
# call is then retried; any other call cannot be, so after this much idle time it takes a
# fresh connection instead of reusing one the node may be closing.
STALE_CONNECTION_S = 1.0
RETRY_STATUSES = (502, 503, 504)


FormFields = Sequence[tuple[str, str]]
# Called with (bytes read so far, total bytes) as a multipart body is sent.
ProgressCallback = Callable[[int, int], None]


def user_agent(product: str) -> str:
    """`product/<Grid's version>`, so a node's logs tell the SDK from a worker and a release."""
    try:
        return f"{product}/{version('grid-nodes')}"
    except PackageNotFoundError:  # running from a source tree that was never installed
        return product


class GridError(Exception):
    """An error from a Grid node (or from reaching it): HTTP status, stable code, human message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"GridError(status={self.status}, code={self.code!r}, message={self.message!r})"


def normalize_url(url: str) -> str:
    """The node's base URL without a trailing slash; refuses anything but http(s)."""
    base = url.strip().rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise GridError(
            0, "bad_url", f"{url!r} is not a node URL: write it like http://127.0.0.1:8001"
        )
    return base


def error_from_response(response: requests.Response) -> GridError:
    """The GridError a failed response describes, from its `{"error": {...}}` body if it has one."""
    try:
        body = response.json()
        error = body["error"]
        return GridError(response.status_code, str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        # Not a Grid node, or a proxy in between answered: show what came back.
        snippet = " ".join(response.text.split())[:200]
        reason = response.reason or "error"
        return GridError(
            response.status_code,
            "http_error",
            f"HTTP {response.status_code} {reason} from {response.url}"
            + (f": {snippet}" if snippet else ""),
        )


class HttpSession:
    """A requests.Session bound to one node's base URL.

    `product` names the caller in the User-Agent header (`grid-cli`, `grid-worker`).
    """

    def __init__(
        self,
        base_url: str,
        *,
        product: str = "grid",
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        retries: int = 3,
        verify: bool | str = True,
    ) -> None:
        self.base_url = normalize_url(base_url)
        self.timeout = timeout
        self.session = requests.Session()
        self.session.verify = verify
        self.session.headers["User-Agent"] = user_agent(product)
        retry = Retry(
            total=retries,
            backoff_factor=0.3,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=IDEMPOTENT_METHODS,
            # The last failed response comes back to us so its JSON error can be raised.
            raise_on_status=False,
        )
        self._adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", self._adapter)
        self.session.mount("https://", self._adapter)
        self.stale_after_s = STALE_CONNECTION_S
        self._last_used = time.monotonic()

    def set_bearer(self, token: str | None) -> None:
        """Send `Authorization: Bearer <token>` from now on (or nothing, for None)."""
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        else:
            self.session.headers.pop("Authorization", None)

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: tuple[float, float] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """Send one request; a status of 400 or more raises GridError with the node's message.

        With `stream`, the body is read as the caller iterates (close the response after).
        """
        url = f"{self.base_url}{path}"
        if method.upper() not in IDEMPOTENT_METHODS:
            self._drop_stale_connections()
        try:
            response = self.session.request(
                method,
                url,
                json=json,
                params=params,
                data=data,
                headers=dict(headers or {}),
                timeout=timeout or self.timeout,
                stream=stream,
            )
        except requests.exceptions.SSLError as exc:
            raise GridError(
                0, "tls_error", f"TLS failed with {self.base_url}: {exc}; check the certificate"
            ) from exc
        except requests.exceptions.Timeout as exc:
            raise GridError(
                0, "timeout", f"{self.base_url} did not answer {method} {path} in time: {exc}"
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            raise GridError(
                0,
                "unreachable",
                f"cannot reach {self.base_url}: is the node running and the URL right?",
            ) from exc
        finally:
            self._last_used = time.monotonic()
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

    def _drop_stale_connections(self) -> None:
        # Connections lent out (a streamed download) are not in the pool and stay open.
        if time.monotonic() - self._last_used >= self.stale_after_s:
            self._adapter.poolmanager.clear()

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()


@contextmanager
def multipart_body(
    fields: FormFields,
    files: Sequence[tuple[str, Path]],
    *,
    on_progress: ProgressCallback | None = None,
) -> Iterator[MultipartEncoderMonitor]:
    """A streaming multipart body of form fields and files, read from disk as it is sent.

    `on_progress(read, total)` is called once before the first byte and after every read, so a
    caller can draw a bar without this module knowing how.
    """
    with ExitStack() as stack:
        parts: list[tuple[str, object]] = list(fields)
        for field, path in files:
            handle = stack.enter_context(path.open("rb"))
            # The server reads the format from the file name's extension; send only the name.
            parts.append((field, (path.name, handle, "application/octet-stream")))
        encoder = MultipartEncoder(fields=parts)
        report = on_progress or _no_progress
        report(0, encoder.len)

        def advance(monitor: MultipartEncoderMonitor) -> None:
            report(monitor.bytes_read, encoder.len)

        yield MultipartEncoderMonitor(encoder, advance)


def _no_progress(read: int, total: int) -> None:
    """The progress callback of a caller that draws nothing."""
