"""Signed node-to-node calls: the sender's `requests` auth and the receiver's verification.

A signature covers the method, path and query, sender, recipient, timestamp, a nonce and the
body's sha256. The sender's public key travels with the call and must hash to the sender's
node id, so a valid signature proves who called; whether that node may do what it asks is
the receiving route's decision.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import requests
from flask import current_app, request
from nacl.exceptions import BadSignatureError
from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from urllib3.util.retry import Retry

from grid_common.api import JSON_BODY_LIMIT, small_body
from grid_common.errors import PayloadTooLarge, Unauthorized
from grid_common.identity import (
    NodeIdentity,
    b64decode,
    b64encode,
    node_id_for,
    verify_key_from_text,
)
from grid_common.logs import PropagatingAdapter

SCHEME = "GRID-SIG-V1"
HEADER_NODE = "X-Grid-Node"
HEADER_KEY = "X-Grid-Key"
HEADER_RECIPIENT = "X-Grid-Recipient"
HEADER_TIMESTAMP = "X-Grid-Timestamp"
HEADER_NONCE = "X-Grid-Nonce"
HEADER_DIGEST = "X-Grid-Content-SHA256"
HEADER_SIGNATURE = "X-Grid-Signature"
DEFAULT_WINDOW_S = 60
_NONCE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def canonical_request(
    *,
    method: str,
    target: str,
    sender: str,
    recipient: str,
    timestamp: int,
    nonce: str,
    digest: str,
) -> bytes:
    """The exact bytes that are signed: one field per line, in a fixed order."""
    fields = (SCHEME, method.upper(), target, sender, recipient, str(timestamp), nonce, digest)
    return "\n".join(fields).encode()


def request_target(path: str, query: str) -> str:
    """Path (percent-decoded, so proxies that re-encode it do not matter) plus raw query."""
    return unquote(path) + (f"?{query}" if query else "")


def sign_headers(
    identity: NodeIdentity,
    *,
    method: str,
    target: str,
    recipient: str,
    body: bytes = b"",
    digest: str | None = None,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers that make one call signed; `digest` stands for a body hashed beforehand."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    nonce = nonce or secrets.token_urlsafe(18)
    digest = digest or hashlib.sha256(body).hexdigest()
    message = canonical_request(
        method=method,
        target=target,
        sender=identity.node_id,
        recipient=recipient,
        timestamp=timestamp,
        nonce=nonce,
        digest=digest,
    )
    signature = identity.signing_key.sign(message).signature
    return {
        HEADER_NODE: identity.node_id,
        HEADER_KEY: identity.signing_public_key,
        HEADER_RECIPIENT: recipient,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_NONCE: nonce,
        HEADER_DIGEST: digest,
        HEADER_SIGNATURE: b64encode(signature),
    }


class NodeAuth(requests.auth.AuthBase):
    """`requests` auth that signs each call as this node, for one recipient node."""

    def __init__(self, identity: NodeIdentity, recipient: str) -> None:
        self.identity = identity
        self.recipient = recipient

    def __call__(self, prepared: requests.PreparedRequest) -> requests.PreparedRequest:
        parts = urlsplit(prepared.url or "")
        prepared.headers.update(
            sign_headers(
                self.identity,
                method=prepared.method or "GET",
                target=request_target(parts.path or "/", parts.query),
                digest=_body_digest(prepared.body),
                recipient=self.recipient,
            )
        )
        return prepared


def _body_digest(body: object) -> str:
    """sha256 of a request body: bytes, text, or a seekable file (read once, then rewound)."""
    if body is None:
        return hashlib.sha256(b"").hexdigest()
    if isinstance(body, bytes):
        return hashlib.sha256(body).hexdigest()
    if isinstance(body, str):
        return hashlib.sha256(body.encode()).hexdigest()
    if isinstance(body, io.IOBase) and body.seekable():
        start = body.tell()
        hasher = hashlib.file_digest(body, "sha256")  # type: ignore[arg-type]
        body.seek(start)
        return hasher.hexdigest()
    raise TypeError("signed calls need bytes, JSON or a seekable file as their body")


def signed_session() -> requests.Session:
    """A session for signed calls: it retries only when the connection failed before sending.

    A retried call reuses its nonce, which the receiver would refuse as a replay, so nothing
    that may have reached the receiver is sent twice. Each call carries the id of the request
    that caused it, so both nodes' logs show the same id.
    """
    session = requests.Session()
    retry = Retry(total=2, connect=2, read=0, status=0, other=0, redirect=0, backoff_factor=0.2)
    adapter = PropagatingAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


# --- receiving ----------------------------------------------------------------


class SignatureError(Unauthorized):
    """A call that is not validly signed for this node: 401 with the reason."""


class NonceStore(Protocol):
    def remember(self, node_id: str, nonce: str, expires_at: datetime) -> bool:
        """Record a nonce; False when this node used it already (a replay)."""


@dataclass(frozen=True)
class SignedCaller:
    """The node a verified call came from."""

    node_id: str
    signing_key: str
    body_digest: str


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name.lower())
    if not value:
        raise SignatureError(f"Unsigned call: the {name} header is missing.", code="unsigned")
    return value


def verify_signature(
    *,
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes | None,
    recipient: str,
    nonces: NonceStore,
    window_s: int = DEFAULT_WINDOW_S,
    now: float | None = None,
) -> SignedCaller:
    """Check a received call; raises SignatureError naming what is wrong.

    With `body=None` the body is not checked here: the receiver streams it and compares its
    sha256 with the caller's `body_digest` (see `check_streamed_body`).
    """
    headers = {name.lower(): value for name, value in headers.items()}
    sender = _header(headers, HEADER_NODE)
    key_text = _header(headers, HEADER_KEY)
    try:
        key = verify_key_from_text(key_text)
    except ValueError:
        raise SignatureError("X-Grid-Key is not an Ed25519 public key.", code="bad_key") from None
    if node_id_for(bytes(key)) != sender:
        raise SignatureError("X-Grid-Key does not belong to X-Grid-Node.", code="bad_key")
    if _header(headers, HEADER_RECIPIENT) != recipient:
        raise SignatureError("This call was signed for another node.", code="wrong_recipient")
    try:
        timestamp = int(_header(headers, HEADER_TIMESTAMP))
    except ValueError:
        raise SignatureError("X-Grid-Timestamp is not a number.", code="bad_timestamp") from None
    now = time.time() if now is None else now
    if abs(now - timestamp) > window_s:
        raise SignatureError(
            f"Signature timestamp is more than {window_s}s away from this node's clock; "
            "check both clocks.",
            code="stale_signature",
        )
    nonce = _header(headers, HEADER_NONCE)
    if not (8 <= len(nonce) <= 64) or not set(nonce) <= _NONCE_CHARS:
        raise SignatureError("X-Grid-Nonce must be 8 to 64 URL-safe characters.", code="bad_nonce")
    digest = _header(headers, HEADER_DIGEST)
    if body is not None and digest != hashlib.sha256(body).hexdigest():
        raise SignatureError("The body does not match its signed digest.", code="body_mismatch")
    try:
        signature = b64decode(_header(headers, HEADER_SIGNATURE), length=64)
        message = canonical_request(
            method=method,
            target=target,
            sender=sender,
            recipient=recipient,
            timestamp=timestamp,
            nonce=nonce,
            digest=digest,
        )
        key.verify(message, signature)
    except (ValueError, BadSignatureError):
        raise SignatureError("The signature does not verify.", code="bad_signature") from None
    # Only a verified call may spend a nonce, so nobody can fill the store with junk.
    expires = datetime.fromtimestamp(timestamp + window_s + 1, UTC)
    if not nonces.remember(sender, nonce, expires):
        raise SignatureError("This signed call was already received.", code="replayed")
    return SignedCaller(node_id=sender, signing_key=key_text, body_digest=digest)


def check_streamed_body(caller: SignedCaller, actual_digest: str) -> None:
    """Refuse a streamed body whose sha256 is not the one its signature covers."""
    if actual_digest != caller.body_digest:
        raise SignatureError("The body does not match its signed digest.", code="body_mismatch")


class SqlNonceStore:
    """Nonces in the node's database, so every process and replica shares them.

    `table` is the node's nonce table with columns `node_id`, `nonce` (together unique) and
    `expires_at`; each insert commits on its own, and expired rows are purged as it goes.
    """

    def __init__(self, sessions: Callable[[], Session], table: Any) -> None:
        self.sessions = sessions
        self.table = table

    def remember(self, node_id: str, nonce: str, expires_at: datetime) -> bool:
        table = self.table
        with self.sessions() as session:
            try:
                session.execute(delete(table).where(table.c.expires_at < datetime.now(UTC)))
                session.execute(
                    insert(table).values(node_id=node_id, nonce=nonce, expires_at=expires_at)
                )
                session.commit()
            except IntegrityError:
                session.rollback()
                return False
        return True


@dataclass
class SignatureVerifier:
    """What a node needs to check calls signed for it; kept in `app.extensions["signatures"]`."""

    identity: NodeIdentity
    nonces: NonceStore
    window_s: int = DEFAULT_WINDOW_S


def verify_flask_request(*, streamed: bool = False) -> SignedCaller:
    """Verify the current Flask request against the app's SignatureVerifier.

    `streamed`: leave the body unread, for the view to stream and check with
    `check_streamed_body`; otherwise the body is read (small bodies only) and checked here.
    """
    verifier: SignatureVerifier = current_app.extensions["signatures"]
    body = None if streamed else small_body()
    if body is not None and len(body) > JSON_BODY_LIMIT:
        raise PayloadTooLarge(f"Signed bodies are limited to {JSON_BODY_LIMIT} bytes.")
    return verify_signature(
        method=request.method,
        target=request_target(
            request.script_root + request.path, request.query_string.decode("latin-1")
        ),
        headers=dict(request.headers.items()),
        body=body,
        recipient=verifier.identity.node_id,
        nonces=verifier.nonces,
        window_s=verifier.window_s,
    )
