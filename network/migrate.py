"""Bring a network database to the newest schema with Alembic."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from sqlalchemy import Engine

from grid_common import migrations

MIGRATIONS = Path(__file__).parent / "migrations"
# Any fixed number, different from other node kinds' (see grid_common.migrations.upgrade).
_MIGRATION_LOCK_ID = 0x6772_6E77


def alembic_config() -> Config:
    return migrations.alembic_config(MIGRATIONS)


def upgrade(engine: Engine, revision: str = "head") -> None:
    migrations.upgrade(engine, MIGRATIONS, lock_id=_MIGRATION_LOCK_ID, revision=revision)
