"""What the API's per-request shortcuts must never change: who is let in, and what a page shows.

Access tokens are verified once and their claims kept until they expire (grid_common.security);
the account behind a token is still read on every request. These are the attacks on that cache:
a deactivated or demoted account, a rotated secret, an expired token and a forged signature.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from domain.models import User
from domain.security import decode_access_token, issue_access_token
from grid_common import security
from grid_common.db import db_session, make_engine
from tests.conftest import NODE_NAME
from tests.domain.uploads import file_job, upload


def _user_id(app: Flask, email: str) -> int:
    with app.app_context():
        user_id: int = db_session().scalar(select(User.id).where(User.email == email))
    return user_id


def test_a_verified_token_answers_to_its_account_and_secret_as_they_stand_on_each_call(
    app: Flask, client: FlaskClient, headers
) -> None:
    officer = headers["compliance_officer"]
    first = client.get("/api/v1/audit", headers=officer)  # verified, and kept from now on
    assert first.status_code == 200
    # A call without the session cookie leaves the cookie alone.
    assert "Set-Cookie" not in first.headers and "Cookie" not in first.headers.get("Vary", "")
    officer_id = _user_id(app, "compliance_officer@example.org")
    demoted = client.patch(
        f"/api/v1/users/{officer_id}", json={"role": "data_scientist"}, headers=headers["owner"]
    )
    assert demoted.status_code == 200
    assert client.get("/api/v1/audit", headers=officer).status_code == 403

    scientist = headers["data_scientist"]
    assert client.get("/api/v1/auth/me", headers=scientist).status_code == 200
    scientist_id = _user_id(app, "data_scientist@example.org")
    off = client.patch(
        f"/api/v1/users/{scientist_id}", json={"is_active": False}, headers=headers["owner"]
    )
    assert off.status_code == 200
    refused = client.get("/api/v1/auth/me", headers=scientist)
    assert refused.status_code == 401 and "deactivated" in refused.json["error"]["message"]

    owner = headers["owner"]
    assert client.get("/api/v1/auth/me", headers=owner).status_code == 200
    app.config["SECRET_KEY"] = "a-rotated-secret-" + "0" * 32
    assert client.get("/api/v1/auth/me", headers=owner).status_code == 401


def test_a_kept_token_expires_on_time(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s" * 64
    token = issue_access_token(secret, user_id=7, role="owner", ttl_s=60, issuer=NODE_NAME)
    claims = decode_access_token(secret, token, issuer=NODE_NAME)
    monkeypatch.setattr(security, "_now", lambda: claims["exp"])
    with pytest.raises(jwt.ExpiredSignatureError):
        decode_access_token(secret, token, issuer=NODE_NAME)


def test_a_forged_signature_on_a_kept_token_is_refused_and_never_kept() -> None:
    secret = "s" * 64
    token = issue_access_token(secret, user_id=7, role="owner", ttl_s=60, issuer=NODE_NAME)
    decode_access_token(secret, token, issuer=NODE_NAME)
    head, payload, _ = token.split(".")
    forged = f"{head}.{payload}.{'A' * 43}"
    for _ in range(2):
        with pytest.raises(jwt.InvalidSignatureError):
            decode_access_token(secret, forged, issuer=NODE_NAME)
    with pytest.raises(jwt.InvalidIssuerError):  # kept per issuer too
        decode_access_token(secret, token, issuer="another-node")
    assert security._verified.get((secret, NODE_NAME, forged)) is None


def test_a_pending_request_page_follows_the_settings_as_they_stand(
    client: FlaskClient, headers, model_files
) -> None:
    upload(client, headers["owner"], "digits-a")
    filed = file_job(client, headers["data_scientist"], model_files, {"loss": "mse"})
    assert filed.status_code == 201 and filed.json["status"] == "pending"
    page = f"/api/v1/requests/{filed.json['id']}"
    assert (
        "shown to the data scientist live"
        in client.get(page, headers=headers["owner"]).json["live_metrics"]
    )
    settings = client.get("/api/v1/settings", headers=headers["owner"]).json
    changed = client.put(
        "/api/v1/settings", json={**settings, "live_metrics": False}, headers=headers["owner"]
    )
    assert changed.status_code == 200
    shown = client.get(page, headers=headers["data_scientist"]).json
    assert shown["live_metrics"].startswith("withheld") and shown["peers"] is None


def test_a_transaction_that_cannot_take_the_write_lock_fails_as_the_api_expects(
    tmp_path: Path,
) -> None:
    """SQLite transactions begin IMMEDIATE; a busy database is SQLAlchemy's OperationalError
    (which the API answers with a 503), not the driver's own error."""
    path = tmp_path / "grid.db"
    engine = make_engine(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        with engine.connect() as connection:  # connected (WAL set), no transaction yet
            connection.connection.driver_connection.execute("PRAGMA busy_timeout = 50")
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(OperationalError, match="locked"):
                connection.exec_driver_sql("SELECT 1")
    finally:
        holder.close()
        engine.dispose()
