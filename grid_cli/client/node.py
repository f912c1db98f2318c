"""The base of every SDK client: one Grid node over HTTP, its sign-in session and its tokens.

`DomainClient` and `NetworkClient` add each node's own calls on top; everything that sends
a request (JSON or a streamed multipart upload) goes through `NodeClient._authorized`, which
refreshes an expired access token once and tries again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import jwt
from pydantic import BaseModel
from requests import Response

from grid_cli.client.progress import show_progress, upload_body
from grid_common.schemas import Health, TokenPair, UserOut
from grid_common.transport import DEFAULT_TIMEOUT, FormFields, GridError, HttpSession

API = "/api/v1"
# How the SDK names itself to nodes (the worker says grid-worker).
USER_AGENT = "grid-cli"
# Uploads wait longer for the answer: the node inspects the file and builds a mock first.
UPLOAD_TIMEOUT: tuple[float, float] = (5.0, 600.0)
# Refresh ahead of a streaming upload when the access token has less than this left.
UPLOAD_TOKEN_MARGIN_S = 60

Model = TypeVar("Model", bound=BaseModel)
Result = TypeVar("Result")
TokenListener = Callable[[TokenPair], None]


def _seconds_left(access_token: str) -> float | None:
    """Seconds until the token's `exp`, read without verifying (only the node can verify)."""
    try:
        claims = jwt.decode(access_token, options={"verify_signature": False})
        return float(claims["exp"]) - time.time()
    except (jwt.InvalidTokenError, KeyError, TypeError, ValueError):
        return None


class NodeClient:
    """A connection to one Grid node and its sign-in session (tokens or an API key)."""

    def __init__(
        self,
        url: str,
        *,
        access_token: str | None = None,
        refresh_token: str | None = None,
        api_key: str | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        upload_timeout: tuple[float, float] = UPLOAD_TIMEOUT,
        retries: int = 3,
        verify: bool | str = True,
        on_tokens: TokenListener | None = None,
    ) -> None:
        self.http = HttpSession(
            url, product=USER_AGENT, timeout=timeout, retries=retries, verify=verify
        )
        self.upload_timeout = upload_timeout
        self.on_tokens = on_tokens
        self._access_token = access_token
        self._refresh_token = refresh_token
        self._api_key = api_key
        self.http.set_bearer(api_key or access_token)

    # --- connection and tokens -------------------------------------------------

    @property
    def url(self) -> str:
        return self.http.base_url

    @property
    def access_token(self) -> str | None:
        return self._access_token

    @property
    def refresh_token(self) -> str | None:
        return self._refresh_token

    def _use_tokens(self, tokens: TokenPair) -> None:
        self._access_token, self._refresh_token = tokens.access_token, tokens.refresh_token
        self._api_key = None
        self.http.set_bearer(tokens.access_token)
        if self.on_tokens is not None:
            self.on_tokens(tokens)

    def sign_in(self, email: str, password: str) -> UserOut:
        """Exchange email and password for tokens; returns the signed-in account."""
        body = {"email": email, "password": password}
        response = self.http.request("POST", f"{API}/auth/login", json=body)
        self._use_tokens(TokenPair.model_validate(response.json()))
        return self.me

    def refresh_tokens(self) -> None:
        """Trade the refresh token for a new pair (the old refresh token stops working)."""
        if not self._refresh_token:
            raise GridError(401, "no_refresh_token", "No refresh token; sign in again.")
        body = {"refresh_token": self._refresh_token}
        response = self.http.request("POST", f"{API}/auth/refresh", json=body)
        self._use_tokens(TokenPair.model_validate(response.json()))

    def _refresh_if_expiring(self) -> None:
        """Refresh now if the access token has less than `UPLOAD_TOKEN_MARGIN_S` left.

        The node may answer 401 before reading a big body, which breaks the stream; so a
        token about to expire is refreshed before sending rather than after.
        """
        left = _seconds_left(self._access_token) if self._access_token else None
        if self._refresh_token and left is not None and left < UPLOAD_TOKEN_MARGIN_S:
            self.refresh_tokens()

    def _authorized(self, send: Callable[[], Result]) -> Result:
        """Run `send`; if the access token expired, refresh once and run it again."""
        try:
            return send()
        except GridError as exc:
            if exc.status != 401 or exc.code != "token_expired" or not self._refresh_token:
                raise
        self.refresh_tokens()
        return send()

    def _call(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> Response:
        return self._authorized(
            lambda: self.http.request(method, f"{API}{path}", json=json, params=params)
        )

    def _get(self, path: str, model: type[Model], params: dict[str, Any] | None = None) -> Model:
        return model.model_validate(self._call("GET", path, params=params).json())

    def _post(self, path: str, body: dict[str, Any], model: type[Model]) -> Model:
        # Bodies go as plain JSON: the node validates them and names any problem in a 422.
        return model.model_validate(self._call("POST", path, json=body).json())

    def _upload(
        self,
        path: str,
        fields: FormFields,
        files: Sequence[tuple[str, Path]],
        *,
        progress: bool | None,
        description: str,
    ) -> Response:
        """POST form fields and files as one streamed multipart body, with a bar if asked.

        The body is built anew for each attempt: a stream read once cannot be sent again.
        """
        draw = show_progress(progress)

        def send() -> Response:
            with upload_body(fields, files, progress=draw, description=description) as body:
                return self.http.request(
                    "POST",
                    f"{API}{path}",
                    data=body,
                    headers={"Content-Type": body.content_type},
                    timeout=self.upload_timeout,
                )

        return self._authorized(send)

    def set_up(self, email: str, password: str) -> UserOut:
        """Create the node's first account (a domain's owner, a network's operator) while it
        has none; no sign-in needed, and the node refuses once one exists."""
        body = {"email": email, "password": password}
        return UserOut.model_validate(self.http.request("POST", f"{API}/setup", json=body).json())

    def health(self) -> Health:
        """The node's liveness answer (no sign-in needed)."""
        return Health.model_validate(self.http.request("GET", "/healthz").json())

    def logout(self) -> None:
        """Revoke this session's refresh token on the node."""
        if self._refresh_token:
            # The body is built per attempt: a refresh on the way rotates the token to revoke.
            self._authorized(
                lambda: self.http.request(
                    "POST", f"{API}/auth/logout", json={"refresh_token": self._refresh_token}
                )
            )
        self._access_token = self._refresh_token = None
        self.http.set_bearer(self._api_key)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    @property
    def me(self) -> UserOut:
        """The signed-in account."""
        return self._get("/auth/me", UserOut)
