"""SQLAlchemy engine and per-request session for a node's Flask app."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, current_app, g
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import DateTime, TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def make_engine(url: str) -> Engine:
    """An engine tuned per backend: SQLite takes the write lock when a transaction begins.

    SQLite's default deferred transactions fail at once with "database is locked" when two
    processes upgrade a read to a write; `BEGIN IMMEDIATE` makes them queue behind the busy
    timeout instead, which is what the job queue and the audit chain rely on.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, future=True)

    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let `_begin_immediate` issue BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    def _begin_immediate(dbapi_connection: Any) -> None:
        dbapi_connection.execute("BEGIN IMMEDIATE")

    # The dialect's own begin step, not a "begin" event running a statement: it skips
    # SQLAlchemy's execution path (a sizeable share of a short request), and a failure is still
    # raised as SQLAlchemy's OperationalError, which the API answers with a 503.
    engine.dialect.do_begin = _begin_immediate  # type: ignore[method-assign]
    return engine


class Database:
    """Binds an engine to a Flask app and hands each app context its own session."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    def init_app(self, app: Flask) -> None:
        app.extensions["database"] = self

        @app.teardown_appcontext
        def _close_session(_exc: BaseException | None) -> None:
            session = g.pop("db_session", None)
            if session is not None:
                session.close()


def db_session() -> Session:
    """The current app context's session, opened on first use and closed at teardown."""
    if "db_session" not in g:
        database: Database = current_app.extensions["database"]
        g.db_session = database.sessionmaker()
    session: Session = g.db_session
    return session
