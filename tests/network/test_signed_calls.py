"""Signed calls as the network receives them: the database remembers nonces; each refusal."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from grid_common.identity import NodeIdentity
from grid_common.signing import HEADER_KEY, HEADER_NODE, sign_headers
from network.models import SeenNonce
from tests.network.conftest import Signer

PATH = "/api/v1/associations/self"


def code(response) -> str:
    assert response.status_code == 401, response.json
    return response.json["error"]["code"]


def test_each_refusal_on_the_real_endpoint(
    network: FlaskClient, network_app: Flask, make_signer: Callable[[], Signer]
) -> None:
    domain = make_signer()
    assert domain.call("GET", PATH).status_code == 404  # signed fine; it never asked to join
    assert code(network.get(PATH)) == "unsigned"

    body = {
        "name": "a",
        "url": "http://127.0.0.1:9",
        "encryption_key": domain.identity.encryption_public_key,
    }
    raw = json.dumps(body).encode()
    headers = domain.headers("POST", "/api/v1/associations", raw)
    changed = json.dumps({**body, "name": "b"}).encode()
    response = network.post(
        "/api/v1/associations", data=changed, headers=headers, content_type="application/json"
    )
    assert code(response) == "body_mismatch"

    other = NodeIdentity.generate()
    forged = sign_headers(other, method="GET", target=PATH, body=b"", recipient=domain.recipient)
    forged[HEADER_NODE], forged[HEADER_KEY] = domain.id, domain.identity.signing_public_key
    assert code(network.get(PATH, headers=forged)) == "bad_signature"

    stale = domain.headers("GET", PATH, timestamp=int(time.time()) - 3600)
    assert code(network.get(PATH, headers=stale)) == "stale_signature"
    early = domain.headers("GET", PATH, timestamp=int(time.time()) + 3600)
    assert code(network.get(PATH, headers=early)) == "stale_signature"

    once = domain.headers("GET", PATH)
    assert network.get(PATH, headers=once).status_code == 404
    assert code(network.get(PATH, headers=once)) == "replayed"

    elsewhere = sign_headers(
        domain.identity,
        method="GET",
        target=PATH,
        body=b"",
        recipient=NodeIdentity.generate().node_id,
    )
    assert code(network.get(PATH, headers=elsewhere)) == "wrong_recipient"
    moved = domain.headers("GET", "/api/v1/associations")
    assert code(network.get(PATH, headers=moved)) == "bad_signature"


def test_expired_nonces_are_purged_as_new_ones_arrive(
    network_app: Flask, make_signer: Callable[[], Signer]
) -> None:
    domain = make_signer()
    sessions = network_app.extensions["database"].sessionmaker
    with sessions() as session, session.begin():
        session.add(
            SeenNonce(
                node_id=domain.id,
                nonce="old-nonce-1",
                expires_at=datetime.now(UTC) - timedelta(seconds=1),
            )
        )
    assert domain.call("GET", PATH).status_code == 404
    with sessions() as session:
        nonces = session.scalars(select(SeenNonce.nonce)).all()
        assert "old-nonce-1" not in nonces
        assert session.scalar(select(func.count()).select_from(SeenNonce)) == 1


def test_an_operator_token_is_no_node_signature(
    network: FlaskClient, operator: dict[str, str]
) -> None:
    assert code(network.get(PATH, headers=operator)) == "unsigned"
