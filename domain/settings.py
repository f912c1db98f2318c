"""The owner's settings (sign-up, auto-approval rules, job limits, privacy floors), stored as
one row; the settings blueprint and the services that follow them read them here."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from domain.models import Setting
from grid_common.schemas import Settings

# The settings row's key, also the target the audit log names for a change of settings.
SETTINGS_KEY = "domain"


def load_settings(session: Session) -> Settings:
    """The settings as they stand; the defaults until an owner saved any."""
    row = session.get(Setting, SETTINGS_KEY)
    return settings_from(row.value if row else None)


def settings_from(value: dict[str, Any] | None) -> Settings:
    """The settings a stored row's value holds (None: no row, so the defaults)."""
    return Settings.model_validate(value) if value is not None else Settings()


def save_settings(session: Session, settings: Settings) -> dict[str, Any]:
    """Replace the settings inside the caller's transaction; returns what was stored."""
    value = settings.model_dump(mode="json")
    row = session.get(Setting, SETTINGS_KEY)
    if row is None:
        session.add(Setting(key=SETTINGS_KEY, value=value))
    else:
        row.value = value
    return value
