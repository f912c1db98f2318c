"""Behind a reverse proxy: one client's failed sign-ins must not lock out every other client,
and a client must not dodge its own lockout by writing `X-Forwarded-For` itself.

Every request reaches the node from the proxy's address (`REMOTE_ADDR`), as it does behind a
load balancer or an Ingress; the proxy appends the client's address to `X-Forwarded-For`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

import domain
import network
from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD
from tests.network.conftest import (  # noqa: F401
    OPERATOR_EMAIL,
    OPERATOR_PASSWORD,
    network_config,
    network_database_url,
    network_sqlite_template,
)

PROXY = "10.0.0.2"
ATTACKER = "203.0.113.7"
VICTIM = "198.51.100.9"
FAILURES = 20  # the per-address limit of both nodes


@pytest.fixture(params=["domain", "network"])
def node(
    request: pytest.FixtureRequest,
    domain_config: domain.DomainConfig,
    network_config: network.NetworkConfig,  # noqa: F811
) -> Iterator[tuple[str, Any, str, str]]:
    """(kind, config, email, password) of a domain or a network, on this test's backend."""
    if request.param == "domain":
        yield "domain", domain_config, OWNER_EMAIL, OWNER_PASSWORD
    else:
        yield "network", network_config, OPERATOR_EMAIL, OPERATOR_PASSWORD


def started(config: Any, trusted_proxies: int) -> Flask:
    config = dataclasses.replace(config, trusted_proxies=trusted_proxies)
    factory = domain.create_app if isinstance(config, domain.DomainConfig) else network.create_app
    return factory(config)


def behind_proxy(app: Flask) -> FlaskClient:
    """A client whose every request arrives from the proxy's address."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = PROXY
    return client


def sign_in(client: FlaskClient, email: str, password: str, forwarded_for: str) -> int:
    response = client.post(
        "/api/v1/auth/login",
        json={"email": email, "password": password},
        headers={"X-Forwarded-For": forwarded_for},
    )
    return response.status_code


def test_a_client_locked_out_behind_the_proxy_does_not_lock_out_another(
    node: tuple[str, Any, str, str],
) -> None:
    kind, config, email, password = node
    app = started(config, trusted_proxies=1)
    try:
        client = behind_proxy(app)
        for i in range(FAILURES):
            assert sign_in(client, f"guess{i}@example.org", "wrong", ATTACKER) == 401
        # The attacker is locked out, even when it writes another address in front of its own.
        assert sign_in(client, email, password, ATTACKER) == 429
        assert sign_in(client, email, password, f"192.0.2.1, {ATTACKER}") == 429
        # A second client behind the same proxy signs in.
        assert sign_in(client, email, password, VICTIM) == 200
        if kind == "domain":  # the audit log names the real clients, not the proxy
            token = client.post(
                "/api/v1/auth/login",
                json={"email": email, "password": password},
                headers={"X-Forwarded-For": VICTIM},
            ).json["access_token"]
            entries = client.get(
                "/api/v1/audit?action=auth.login",
                headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": VICTIM},
            ).json["items"]
            addresses = {e["action"]: e["address"] for e in entries}
            assert addresses["auth.login_failed"] == ATTACKER
            assert addresses["auth.login"] == VICTIM
    finally:
        app.extensions["database"].engine.dispose()


def test_by_default_a_forged_forwarded_for_does_not_dodge_the_lockout(
    node: tuple[str, Any, str, str],
) -> None:
    _, config, email, password = node
    assert config.trusted_proxies == 0  # trusting no proxy is the default
    app = started(config, trusted_proxies=0)
    try:
        client = behind_proxy(app)  # here: the attacker's own address
        for i in range(FAILURES):
            assert sign_in(client, f"guess{i}@example.org", "wrong", f"192.0.2.{i}") == 401
        assert sign_in(client, email, password, VICTIM) == 429
    finally:
        app.extensions["database"].engine.dispose()
