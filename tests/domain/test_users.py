"""Accounts: creating, changing roles, invites and sign-up."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.conftest import PASSWORD


def test_owner_creates_a_data_scientist_who_can_sign_in(client: FlaskClient, headers) -> None:
    created = client.post(
        "/api/v1/users",
        json={"email": "New.Person@Example.org", "password": PASSWORD, "role": "data_scientist"},
        headers=headers["owner"],
    )
    assert created.status_code == 201
    assert created.json["email"] == "new.person@example.org"
    assert created.json["permissions"] == ["submit_requests"]
    login = client.post(
        "/api/v1/auth/login", json={"email": "new.person@example.org", "password": PASSWORD}
    )
    assert login.status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "password": PASSWORD}, "email"),
        ({"email": "a@example.org", "password": "short"}, "password"),
        ({"email": "a@example.org", "password": PASSWORD, "role": "superuser"}, "role"),
        ({"email": "a@example.org", "password": PASSWORD, "admin": True}, "admin"),
    ],
)
def test_invalid_user_bodies_are_422_naming_the_field(
    client: FlaskClient, headers, body, field
) -> None:
    response = client.post("/api/v1/users", json=body, headers=headers["owner"])
    assert response.status_code == 422
    assert field in response.json["error"]["message"]


def test_duplicate_email_is_409(client: FlaskClient, headers) -> None:
    body = {"email": "admin@example.org", "password": PASSWORD}
    assert client.post("/api/v1/users", json=body, headers=headers["owner"]).status_code == 409


def test_only_an_owner_makes_owners(client: FlaskClient, headers) -> None:
    body = {"email": "boss@example.org", "password": PASSWORD, "role": "owner"}
    assert client.post("/api/v1/users", json=body, headers=headers["admin"]).status_code == 403
    assert client.post("/api/v1/users", json=body, headers=headers["owner"]).status_code == 201


def test_role_change_applies_to_existing_tokens(client: FlaskClient, headers) -> None:
    users = client.get("/api/v1/users", headers=headers["owner"]).json["items"]
    ds = next(u for u in users if u["role"] == "data_scientist")
    assert client.get("/api/v1/audit", headers=headers["data_scientist"]).status_code == 403
    client.patch(
        f"/api/v1/users/{ds['id']}", json={"role": "compliance_officer"}, headers=headers["owner"]
    )
    assert client.get("/api/v1/audit", headers=headers["data_scientist"]).status_code == 200


def test_nobody_changes_their_own_role(client: FlaskClient, headers) -> None:
    me = client.get("/api/v1/auth/me", headers=headers["admin"]).json
    response = client.patch(
        f"/api/v1/users/{me['id']}", json={"role": "owner"}, headers=headers["admin"]
    )
    assert response.status_code == 403


def test_signup_needs_an_invite_by_default(client: FlaskClient, headers) -> None:
    open_signup = {"email": "walk-in@example.org", "password": PASSWORD}
    assert client.post("/api/v1/signup", json=open_signup).status_code == 403

    invite = client.post(
        "/api/v1/invites",
        json={"email": "guest@example.org", "role": "compliance_officer"},
        headers=headers["admin"],
    ).json
    wrong_email = {
        "email": "other@example.org",
        "password": PASSWORD,
        "invite_token": invite["token"],
    }
    assert client.post("/api/v1/signup", json=wrong_email).status_code == 403
    body = {"email": "guest@example.org", "password": PASSWORD, "invite_token": invite["token"]}
    signed_up = client.post("/api/v1/signup", json=body)
    assert signed_up.status_code == 201 and signed_up.json["role"] == "compliance_officer"
    assert client.post("/api/v1/signup", json=body).status_code == 401  # used up

    settings = client.get("/api/v1/settings", headers=headers["owner"]).json
    client.put(
        "/api/v1/settings", json={**settings, "allow_signup": True}, headers=headers["owner"]
    )
    walked_in = client.post("/api/v1/signup", json=open_signup)
    assert walked_in.status_code == 201 and walked_in.json["role"] == "data_scientist"
