"""Owner settings: open sign-up and auto-approval rules."""

from __future__ import annotations

from flask import Blueprint

from domain.audit import record
from domain.permissions import Permission
from domain.settings import SETTINGS_KEY, load_settings, save_settings
from grid_common.api import route
from grid_common.db import db_session
from grid_common.schemas import Settings

bp = Blueprint("settings", __name__, url_prefix="/api/v1")


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
    value = save_settings(session, body)
    record(session, "settings.updated", SETTINGS_KEY, **value)
    session.commit()
    return body
