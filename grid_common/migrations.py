"""Bring a node's database to its newest schema with Alembic, one migrator at a time."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text


def alembic_config(script_location: Path) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    return config


def upgrade(engine: Engine, script_location: Path, *, lock_id: int, revision: str = "head") -> None:
    """Replicas starting at once take a PostgreSQL advisory lock (`lock_id`, fixed per node
    kind), so one migrates and the others find the schema current. SQLite needs none:
    BEGIN IMMEDIATE already serializes."""
    config = alembic_config(script_location)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
