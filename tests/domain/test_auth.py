"""Sign-in, tokens, API keys, rate limits and the first-run setup gate."""

from __future__ import annotations

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from domain import DomainConfig, create_app
from domain.accounts import create_first_owner
from domain.models import User
from domain.security import issue_access_token
from tests.concurrency import run_concurrently
from tests.conftest import NODE_NAME, OWNER_EMAIL, OWNER_PASSWORD, PASSWORD


def login(client: FlaskClient, email: str = OWNER_EMAIL, password: str = OWNER_PASSWORD):
    return client.post("/api/v1/auth/login", json={"email": email, "password": password})


def auth_header(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_login_returns_tokens_that_work(client: FlaskClient) -> None:
    response = login(client)
    assert response.status_code == 200
    me = client.get("/api/v1/auth/me", headers=auth_header(response.json["access_token"]))
    assert me.status_code == 200
    assert me.json["email"] == OWNER_EMAIL
    assert me.json["role"] == "owner"


@pytest.mark.parametrize(
    ("email", "password"),
    [(OWNER_EMAIL, "wrong-password"), ("nobody@example.org", OWNER_PASSWORD)],
)
def test_bad_credentials_are_401_and_audited(
    client: FlaskClient, email: str, password: str
) -> None:
    response = login(client, email, password)
    assert response.status_code == 401
    assert response.json["error"]["code"] == "bad_credentials"
    token = login(client).json["access_token"]
    entries = client.get("/api/v1/audit?action=auth.login_failed", headers=auth_header(token))
    assert [e["target"] for e in entries.json["items"]] == [email]


def test_failed_logins_are_rate_limited_per_account(app: Flask, client: FlaskClient) -> None:
    limit = app.config["GRID"].max_login_failures_per_account
    for _ in range(limit):
        assert login(client, password="wrong-password").status_code == 401
    blocked = login(client)  # even the right password waits out the window
    assert blocked.status_code == 429
    assert "Retry-After" in blocked.headers
    other = client.post("/api/v1/auth/login", json={"email": "x@example.org", "password": "p"})
    assert other.status_code == 401


def test_failed_logins_are_rate_limited_per_address(app: Flask, client: FlaskClient) -> None:
    app.config["GRID"].max_login_failures_per_address = 3
    for i in range(3):
        assert login(client, f"user{i}@example.org", "wrong-password").status_code == 401
    assert login(client).status_code == 429


def test_refresh_rotates_and_detects_reuse(client: FlaskClient) -> None:
    first = login(client).json
    second = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    assert second.json["refresh_token"] != first["refresh_token"]
    reused = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401
    # Reuse of a rotated token ends every session of that user, the fresh one too.
    after = client.post(
        "/api/v1/auth/refresh", json={"refresh_token": second.json["refresh_token"]}
    )
    assert after.status_code == 401


def test_logout_revokes_the_refresh_token(client: FlaskClient) -> None:
    tokens = login(client).json
    body = {"refresh_token": tokens["refresh_token"]}
    assert (
        client.post(
            "/api/v1/auth/logout", json=body, headers=auth_header(tokens["access_token"])
        ).status_code
        == 204
    )
    assert client.post("/api/v1/auth/refresh", json=body).status_code == 401


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("Bearer not-a-jwt", "unauthorized"),
        ("Basic abc", "unauthorized"),
        ("Bearer grid_unknown-api-key", "unauthorized"),
    ],
)
def test_missing_or_malformed_tokens_are_401(client: FlaskClient, header: str, code: str) -> None:
    response = client.get("/api/v1/datasets", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json["error"]["code"] == code


def test_forged_and_expired_tokens_are_401(app: Flask, client: FlaskClient) -> None:
    forged = issue_access_token(
        "another-secret-of-at-least-32-bytes!", user_id=1, role="owner", ttl_s=600, issuer=NODE_NAME
    )
    assert client.get("/api/v1/datasets", headers=auth_header(forged)).status_code == 401
    expired = issue_access_token(
        app.config["SECRET_KEY"], user_id=1, role="owner", ttl_s=-1, issuer=NODE_NAME
    )
    response = client.get("/api/v1/datasets", headers=auth_header(expired))
    assert response.status_code == 401
    assert response.json["error"]["code"] == "token_expired"
    other_node = issue_access_token(
        app.config["SECRET_KEY"], user_id=1, role="owner", ttl_s=600, issuer="x"
    )
    assert client.get("/api/v1/datasets", headers=auth_header(other_node)).status_code == 401
    claims = jwt.decode(login(client).json["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == app.config["GRID"].access_token_ttl_s


def test_api_keys_authenticate_until_revoked(client: FlaskClient, headers) -> None:
    created = client.post(
        "/api/v1/api-keys", json={"name": "ci"}, headers=headers["data_scientist"]
    )
    assert created.status_code == 201
    key = created.json["key"]
    assert (
        client.get("/api/v1/auth/me", headers=auth_header(key)).json["email"]
        == "data_scientist@example.org"
    )
    listed = client.get("/api/v1/api-keys", headers=headers["data_scientist"]).json["items"]
    assert [k["key"] for k in listed] == [None]  # never shown again
    assert (
        client.delete(
            f"/api/v1/api-keys/{created.json['id']}", headers=headers["admin"]
        ).status_code
        == 404
    )
    assert (
        client.delete(
            f"/api/v1/api-keys/{created.json['id']}", headers=headers["data_scientist"]
        ).status_code
        == 204
    )
    assert client.get("/api/v1/auth/me", headers=auth_header(key)).status_code == 401


def test_deactivated_accounts_lose_access_at_once(client: FlaskClient, headers) -> None:
    users = client.get("/api/v1/users", headers=headers["owner"]).json["items"]
    ds = next(u for u in users if u["role"] == "data_scientist")
    assert client.get("/api/v1/datasets", headers=headers["data_scientist"]).status_code == 200
    patched = client.patch(
        f"/api/v1/users/{ds['id']}", json={"is_active": False}, headers=headers["owner"]
    )
    assert patched.status_code == 200
    assert client.get("/api/v1/datasets", headers=headers["data_scientist"]).status_code == 401
    assert login(client, ds["email"], PASSWORD).status_code == 401


def test_setup_gate_until_an_owner_exists(domain_config: DomainConfig) -> None:
    domain_config.owner_email = domain_config.owner_password = ""
    client = create_app(domain_config).test_client()
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json["setup_required"] is True
    gated = client.post(
        "/api/v1/auth/login", json={"email": OWNER_EMAIL, "password": OWNER_PASSWORD}
    )
    assert gated.status_code == 503
    assert "/api/v1/setup" in gated.json["error"]["message"]
    assert client.get("/api/v1/openapi.json").status_code == 200
    created = client.post("/api/v1/setup", json={"email": OWNER_EMAIL, "password": OWNER_PASSWORD})
    assert created.status_code == 201 and created.json["role"] == "owner"
    again = client.post(
        "/api/v1/setup", json={"email": "x@example.org", "password": OWNER_PASSWORD}
    )
    assert again.status_code == 409
    assert login(client).status_code == 200


def test_owner_from_environment_is_created_once(domain_config: DomainConfig) -> None:
    create_app(domain_config)
    domain_config.owner_password = "a-different-password"
    client = create_app(domain_config).test_client()
    assert login(client).status_code == 200  # the first password still holds


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        ("{not json", "application/json", 400),
        ('{"email": "owner@example.org", "password": "x"}', "text/plain", 400),
        ("", "application/json", 400),
        ('{"password": "' + "x" * (1 << 20) + '"}', "application/json", 413),
    ],
)
def test_malformed_json_bodies(
    client: FlaskClient, data: str, content_type: str, status: int
) -> None:
    response = client.post("/api/v1/auth/login", data=data, content_type=content_type)
    assert response.status_code == status
    assert response.json["error"]["message"]


def test_racing_first_setups_make_exactly_one_owner(domain_config: DomainConfig) -> None:
    domain_config.owner_email = domain_config.owner_password = ""
    app = create_app(domain_config)
    sessionmaker = app.extensions["database"].sessionmaker
    created: list[object] = []

    def race(n: int) -> None:
        with sessionmaker() as session:
            owner = create_first_owner(session, f"o{n}@example.org", OWNER_PASSWORD, actor="t")
            created.append(owner)

    assert run_concurrently(race, range(4)) == 0
    with sessionmaker() as session:
        owners = session.scalars(select(User).where(User.role == "owner")).all()
    assert len(owners) == 1
    assert sum(owner is not None for owner in created) == 1
