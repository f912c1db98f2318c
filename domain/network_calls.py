"""Signed calls from this domain to a network, and what their failures become.

The membership service (`domain.networks`) and the federated service (`domain.federated`) both
call networks through these; neither needs the other for it.
"""

from __future__ import annotations

from typing import Any

import requests

from domain.context import node_identity
from grid_common.errors import ApiError, Conflict, TooManyRequests
from grid_common.signing import NodeAuth, signed_session

TIMEOUT: tuple[float, float] = (5.0, 30.0)


class NetworkUnavailable(ApiError):
    """No answer from the network at all (unreachable, timed out): worth trying again."""

    status, code = 502, "network_unavailable"


class NetworkRefused(ApiError):
    """The network answered with an error other than a conflict or a rate limit."""

    status, code = 502, "network_refused"


def error_message(response: requests.Response) -> tuple[str, str]:
    """The error code and message of a network's error answer, or a generic pair without one."""
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return "http_error", f"HTTP {response.status_code} from the network"


def call_network(
    method: str,
    url: str,
    recipient: str,
    path: str,
    *,
    json_body: Any = None,
    data: Any = None,
    params: dict[str, Any] | None = None,
    stream: bool = False,
) -> requests.Response:
    """One signed call to a network; a failure to get any answer is NetworkUnavailable.

    `data` may be a file opened for reading: it is hashed for the signature, then streamed.
    """
    headers = {"Content-Type": "application/octet-stream"} if data is not None else None
    with signed_session() as session:
        try:
            return session.request(
                method,
                f"{url}{path}",
                json=json_body,
                data=data,
                params=params,
                headers=headers,
                stream=stream,
                auth=NodeAuth(node_identity(), recipient),
                timeout=TIMEOUT,
            )
        except requests.RequestException as exc:
            raise NetworkUnavailable(
                f"Cannot reach the network at {url} ({type(exc).__name__})."
            ) from None


def raise_for(response: requests.Response) -> None:
    """Raise the network's error answer as this domain's own: 409 and 429 keep their meaning."""
    if response.status_code < 400:
        return
    code, message = error_message(response)
    if response.status_code == 409:
        raise Conflict(f"The network says: {message}", code=code)
    if response.status_code == 429:
        raise TooManyRequests(f"The network says: {message}", code=code)
    raise NetworkRefused(f"The network refused ({response.status_code} {code}): {message}")
