"""An operator's verified token answers to the account as it stands on each call."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from grid_common.db import db_session
from network.models import Operator


def test_an_operator_deactivated_after_a_verified_call_is_refused_on_the_next(
    network_app: Flask, network: FlaskClient, operator: dict[str, str]
) -> None:
    assert network.get("/api/v1/auth/me", headers=operator).status_code == 200  # token kept
    with network_app.app_context():
        db_session().execute(update(Operator).values(is_active=False))
        db_session().commit()
    refused = network.get("/api/v1/auth/me", headers=operator)
    assert refused.status_code == 401 and "deactivated" in refused.json["error"]["message"]
