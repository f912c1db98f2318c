"""Signed node-to-node calls: what the sender signs and every reason a receiver refuses."""

from __future__ import annotations

import hashlib
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from grid_common.identity import NodeIdentity
from grid_common.signing import (
    HEADER_KEY,
    HEADER_NODE,
    HEADER_SIGNATURE,
    NodeAuth,
    SignatureError,
    sign_headers,
    verify_signature,
)


class MemoryNonces:
    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], datetime] = {}

    def remember(self, node_id: str, nonce: str, expires_at: datetime) -> bool:
        if (node_id, nonce) in self.seen:
            return False
        self.seen[(node_id, nonce)] = expires_at
        return True


SENDER = NodeIdentity.generate()
RECEIVER = NodeIdentity.generate()
BODY = b'{"datasets": []}'


def check(headers: dict[str, str], **changes: Any) -> Any:
    arguments: dict[str, Any] = {
        "method": "PUT",
        "target": "/api/v1/index/x/datasets?full=1",
        "headers": headers,
        "body": BODY,
        "recipient": RECEIVER.node_id,
        "nonces": MemoryNonces(),
        "window_s": 60,
    }
    arguments.update(changes)
    return verify_signature(**arguments)


def signed(**changes: Any) -> dict[str, str]:
    arguments: dict[str, Any] = {
        "method": "PUT",
        "target": "/api/v1/index/x/datasets?full=1",
        "body": BODY,
        "recipient": RECEIVER.node_id,
    }
    arguments.update(changes)
    return sign_headers(SENDER, **arguments)


def refused(code: str, headers: dict[str, str], **changes: Any) -> None:
    with pytest.raises(SignatureError) as caught:
        check(headers, **changes)
    assert caught.value.code == code
    assert caught.value.status == 401


def test_a_valid_call_names_its_sender() -> None:
    caller = check(signed())
    assert caller.node_id == SENDER.node_id
    assert caller.signing_key == SENDER.signing_public_key


def test_case_of_header_names_does_not_matter() -> None:
    assert check({k.lower(): v for k, v in signed().items()}).node_id == SENDER.node_id


def test_a_changed_body_is_refused() -> None:
    refused("body_mismatch", signed(), body=b'{"datasets": [1]}')


def test_a_changed_method_path_or_query_is_refused() -> None:
    refused("bad_signature", signed(), method="DELETE")
    refused("bad_signature", signed(), target="/api/v1/index/y/datasets?full=1")
    refused("bad_signature", signed(), target="/api/v1/index/x/datasets?full=0")


def test_the_wrong_key_is_refused() -> None:
    other = NodeIdentity.generate()
    # Signed by another key while claiming the sender's identity and key.
    forged = sign_headers(
        other, method="PUT", target="/api/v1/index/x/datasets?full=1", body=BODY,
        recipient=RECEIVER.node_id,
    )  # fmt: skip
    forged[HEADER_NODE], forged[HEADER_KEY] = SENDER.node_id, SENDER.signing_public_key
    refused("bad_signature", forged)
    # The other key, but the sender's node id: the key does not hash to that id.
    claimed = {**forged, HEADER_KEY: other.signing_public_key}
    refused("bad_key", claimed)
    refused("bad_key", {**signed(), HEADER_KEY: "not-a-key"})
    refused("bad_signature", {**signed(), HEADER_SIGNATURE: "AAAA"})


def test_a_timestamp_outside_the_window_is_refused() -> None:
    now = int(time.time())
    refused("stale_signature", signed(timestamp=now - 61))
    refused("stale_signature", signed(timestamp=now + 61))
    assert check(signed(timestamp=now - 59)).node_id == SENDER.node_id
    refused("bad_timestamp", {**signed(), "X-Grid-Timestamp": "soon"})


def test_a_replayed_nonce_is_refused() -> None:
    nonces = MemoryNonces()
    headers = signed()
    check(headers, nonces=nonces)
    refused("replayed", headers, nonces=nonces)
    check(signed(), nonces=nonces)  # a fresh nonce passes


def test_a_call_signed_for_another_node_is_refused() -> None:
    refused("wrong_recipient", signed(recipient=NodeIdentity.generate().node_id))


def test_missing_headers_are_named() -> None:
    for name in signed():
        headers = {k: v for k, v in signed().items() if k != name}
        with pytest.raises(SignatureError, match=name):
            check(headers)


def test_requests_auth_signs_what_is_sent() -> None:
    request = requests.Request(
        "PUT",
        "http://network.example/api/v1/index/x/datasets?full=1",
        json={"datasets": []},
        auth=NodeAuth(SENDER, RECEIVER.node_id),
    ).prepare()
    assert isinstance(request.body, bytes)
    headers = dict(request.headers)
    caller = check(headers, body=request.body)
    assert caller.node_id == SENDER.node_id


def test_a_one_way_stream_cannot_be_signed() -> None:
    with pytest.raises(TypeError, match="seekable file"):
        requests.Request(
            "POST", "http://n.example/x", data=iter([b"a"]), auth=NodeAuth(SENDER, "r")
        ).prepare()


def test_a_file_body_is_signed_by_its_digest_and_rewound(tmp_path: Path) -> None:
    path = tmp_path / "update.bin"
    path.write_bytes(b"ciphertext" * 1000)
    with path.open("rb") as body:
        prepared = requests.Request(
            "PUT", "http://n.example/x", data=body, auth=NodeAuth(SENDER, "r")
        ).prepare()
        assert body.tell() == 0
    digest = prepared.headers["X-Grid-Content-SHA256"]
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
