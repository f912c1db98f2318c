"""Bring a node's database to its newest schema with Alembic, one migrator at a time."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
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


@functools.cache
def _heads(script_location: Path) -> frozenset[str]:
    return frozenset(ScriptDirectory.from_config(alembic_config(script_location)).get_heads())


def schema_problem(engine: Engine, script_location: Path) -> str | None:
    """None when the database is at the newest revision, else what is wrong with it."""
    with engine.connect() as connection:
        current = frozenset(MigrationContext.configure(connection).get_current_heads())
    heads = _heads(script_location)
    if current == heads:
        return None
    if not current:
        return "database is not migrated"
    return f"database is at revision {', '.join(sorted(current))}, not {', '.join(sorted(heads))}"
