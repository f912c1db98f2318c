"""A malicious domain behind the network's routing must not reach into the network's origin.

The network serves routed answers on its own origin, where its operator's console session
cookie lives. A domain approved on the network (here: a bare HTTP server the attacker runs)
answers with scripts, `Set-Cookie` and other origin-wide headers, and records what it receives.
The operator's browser, signed in to the console, opens routed URLs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from grid_common.identity import NodeIdentity
from grid_common.signing import NodeAuth
from tests.conftest import free_port, wait_for_http
from tests.network.conftest import (  # noqa: F401
    OPERATOR_EMAIL,
    OPERATOR_PASSWORD,
    LiveNode,
    live_network,
    network_database_url,
    network_sqlite_template,
)
from tests.security.hostile_domain import ORIGIN_HEADERS

SCIENTIST_TOKEN = "Bearer a-data-scientists-token"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class HostileDomain:
    """The attacker's domain server, and what it has received so far."""

    def __init__(self, tmp_path: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = tmp_path / "hostile.jsonl"
        self.log.touch()
        script = Path(__file__).with_name("hostile_domain.py")
        self.process = subprocess.Popen(
            [sys.executable, str(script), self.url.rsplit(":", 1)[1], str(self.log)]
        )
        wait_for_http(f"{self.url}/healthz", self.process)

    def received(self, path: str) -> list[dict[str, str]]:
        """The headers (lower-cased names) of every request that reached `path`."""
        lines = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [
            {k.lower(): v for k, v in line["headers"].items()}
            for line in lines
            if line["path"] == path
        ]


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[HostileDomain]:
    domain = HostileDomain(tmp_path)
    yield domain
    domain.process.terminate()
    domain.process.wait(timeout=10)


def associate(network: LiveNode, domain: HostileDomain) -> str:
    """The attacker's domain joins and the operator approves it; returns its domain id."""
    identity = NodeIdentity.generate()
    recipient = requests.get(f"{network.url}/api/v1/node", timeout=5).json()["id"]
    joined = requests.post(
        f"{network.url}/api/v1/associations",
        json={"name": "evil", "url": domain.url, "encryption_key": identity.encryption_public_key},
        auth=NodeAuth(identity, recipient),
        timeout=5,
    )
    assert joined.status_code == 201, joined.text
    token = requests.post(
        f"{network.url}/api/v1/auth/login",
        json={"email": OPERATOR_EMAIL, "password": OPERATOR_PASSWORD},
        timeout=5,
    ).json()["access_token"]
    approved = requests.post(
        f"{network.url}/api/v1/associations/{joined.json()['id']}/approve",
        json={},
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    assert approved.status_code == 200, approved.text
    return identity.node_id


def console_session(network: LiveNode) -> requests.Session:
    """A browser-like session signed in to the network's console (its session cookie set)."""
    browser = requests.Session()
    form = browser.get(f"{network.url}/login", timeout=5).text
    match = _CSRF.search(form)
    assert match is not None
    signed_in = browser.post(
        f"{network.url}/login",
        data={"email": OPERATOR_EMAIL, "password": OPERATOR_PASSWORD, "csrf_token": match[1]},
        allow_redirects=False,
        timeout=5,
    )
    assert signed_in.status_code == 302, signed_in.text
    assert [c.name for c in browser.cookies if c.name.startswith("grid_network_")]
    return browser


def assert_sandboxed(response: requests.Response) -> None:
    assert "Set-Cookie" not in response.headers
    assert response.headers["Content-Security-Policy"] == "sandbox"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_a_domain_cannot_set_or_read_anything_on_the_networks_origin(
    live_network: LiveNode,  # noqa: F811
    hostile: HostileDomain,
) -> None:
    domain_id = associate(live_network, hostile)
    browser = console_session(live_network)
    cookies_before = {c.name: c.value for c in browser.cookies}
    routed = f"{live_network.url}/api/v1/domains/{domain_id}"
    sent = {
        "Authorization": SCIENTIST_TOKEN,
        "Origin": live_network.url,
        "Referer": f"{live_network.url}/associations",
    }

    # An API answer is relayed, but none of the headers that would act on the origin.
    answer = browser.get(f"{routed}/api/v1/auth/me", headers=sent, timeout=10)
    assert answer.status_code == 200
    assert answer.json() == {"email": "ds@example.org"}
    assert_sandboxed(answer)
    for name in ORIGIN_HEADERS.keys() - {"Content-Security-Policy"}:
        assert name not in answer.headers, name

    # A page (script, cookie) is refused with a JSON error; an untyped body is only bytes.
    page = browser.get(f"{routed}/page", headers=sent, timeout=10)
    assert page.status_code == 502
    assert page.json()["error"]["code"] == "unsupported_content"
    assert b"<script" not in page.content
    assert_sandboxed(page)
    untyped = browser.get(f"{routed}/untyped", headers=sent, timeout=10)
    assert untyped.headers["Content-Type"] == "application/octet-stream"
    assert_sandboxed(untyped)

    # The domain saw the data scientist's token, never the console's cookie or where it came from.
    seen = [h for path in ("/api/v1/auth/me", "/page", "/untyped") for h in hostile.received(path)]
    assert len(seen) == 3
    for headers in seen:
        assert headers["authorization"] == SCIENTIST_TOKEN
        assert not {"cookie", "origin", "referer"} & headers.keys(), headers
    # The console's cookie jar is as it was, and its session still works.
    assert {c.name: c.value for c in browser.cookies} == cookies_before
    assert browser.get(f"{live_network.url}/", allow_redirects=False, timeout=5).status_code == 200


def test_the_networks_own_routing_errors_are_sandboxed_too(
    live_network: LiveNode,  # noqa: F811
) -> None:
    missing = requests.get(f"{live_network.url}/api/v1/domains/{'0' * 32}/x", timeout=5)
    assert missing.status_code == 404
    assert_sandboxed(missing)
