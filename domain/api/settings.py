"""Owner settings: open sign-up and auto-approval rules."""

from __future__ import annotations

from flask import Blueprint
from sqlalchemy.orm import Session

from domain.api.common import record
from domain.models import Setting
from domain.permissions import Permission
from grid_common.api import route
from grid_common.db import db_session
from grid_common.schemas import Settings

bp = Blueprint("settings", __name__, url_prefix="/api/v1")

_KEY = "domain"


def load_settings(session: Session) -> Settings:
    row = session.get(Setting, _KEY)
    return Settings.model_validate(row.value) if row else Settings()


@route(
    bp,
    "/settings",
    permission=Permission.TRIAGE_REQUESTS,
    summary="Read the domain's settings",
    response=Settings,
)
def get_settings() -> Settings:
    return load_settings(db_session())


@route(
    bp,
    "/settings",
    methods=["PUT"],
    permission=Permission.EDIT_SETTINGS,
    summary="Replace the domain's settings",
    body=Settings,
    response=Settings,
)
def put_settings(body: Settings) -> Settings:
    session = db_session()
    value = body.model_dump(mode="json")
    row = session.get(Setting, _KEY)
    if row is None:
        session.add(Setting(key=_KEY, value=value))
    else:
        row.value = value
    record(session, "settings.updated", _KEY, **value)
    session.commit()
    return body
