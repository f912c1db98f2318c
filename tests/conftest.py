"""Fixtures: a fresh migrated database per test on SQLite and PostgreSQL, apps, live servers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from domain import DomainConfig, create_app, migrate
from domain.permissions import Role
from domain.security import hash_password, issue_access_token
from grid_common.db import make_engine

if TYPE_CHECKING:
    from registry.chain import LocalChain

OWNER_EMAIL = "owner@example.org"
OWNER_PASSWORD = "owner-password"
PASSWORD = "correct-horse-battery"
NODE_NAME = "test-domain"

T = TypeVar("T")
_RUN_ID = uuid.uuid4().hex[:8]
_DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _postgres_admin_url() -> str | None:
    """The server to create test databases on: GRID_TEST_DATABASE_URL, else a local one."""
    url = os.environ.get("GRID_TEST_DATABASE_URL", _DEFAULT_PG)
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 2})
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
        return url
    except Exception as exc:
        if os.environ.get("GRID_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required but unreachable at {url}: {exc}")
        return None


# Fixtures that start real node processes: a test using one is a live test (marker `live`),
# and so is every test in a module that starts a whole grid (`start_grid`) and any test
# marked `live` by hand.
LIVE_FIXTURES = frozenset({"live_domain", "live_network", "live_member", "twin_network"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the live tests, which `make test-load` runs while the machine is kept busy."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        starts_grid = hasattr(getattr(item, "module", None), "start_grid")
        if fixtures & LIVE_FIXTURES or starts_grid:
            item.add_marker(pytest.mark.live)


class PostgresDatabases:
    """Creates a migrated template once, then clones it for each test (CREATE … TEMPLATE)."""

    def __init__(self, admin_url: str) -> None:
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.admin_url = make_url(admin_url)
        self.template = f"grid_tpl_{_RUN_ID}"
        self.count = 0
        self._create(self.template)
        engine = make_engine(self.url(self.template))
        migrate.upgrade(engine)
        engine.dispose()

    def url(self, name: str) -> str:
        return self.admin_url.set(database=name).render_as_string(hide_password=False)

    def _create(self, name: str, template: str | None = None) -> None:
        clause = f" TEMPLATE {template}" if template else ""
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"{clause}'))

    def drop(self, name: str) -> None:
        with self.admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def fresh(self, *, migrated: bool = True) -> str:
        """A new database: a clone of the migrated template, or an empty one."""
        self.count += 1
        name = f"grid_t_{_RUN_ID}_{self.count}"
        self._create(name, self.template if migrated else None)
        return name


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabases | None]:
    url = _postgres_admin_url()
    if url is None:
        yield None
        return
    databases = PostgresDatabases(url)
    yield databases
    databases.drop(databases.template)
    databases.admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "domain.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sqlite_template: Path,
    postgres: PostgresDatabases | None,
) -> Iterator[str]:
    """A fresh, migrated, empty database for this test alone, on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "db" / "domain.db"
        path.parent.mkdir()
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    if postgres is None:
        pytest.skip("PostgreSQL not reachable; set GRID_TEST_DATABASE_URL to run these")
    name = postgres.fresh()
    yield postgres.url(name)
    postgres.drop(name)


@pytest.fixture
def domain_config(database_url: str, tmp_path: Path) -> DomainConfig:
    return DomainConfig(
        data_dir=tmp_path / "node",
        name=NODE_NAME,
        database_url=database_url,
        owner_email=OWNER_EMAIL,
        owner_password=OWNER_PASSWORD,
    )


@pytest.fixture
def app(domain_config: DomainConfig) -> Iterator[Flask]:
    application = create_app(domain_config)
    yield application
    # Threads the app started in this process (a registry sender) stop with its test.
    application.extensions["background"].stop()
    application.extensions["database"].engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def bearer(app: Flask, user_id: int, role: str) -> dict[str, str]:
    token = issue_access_token(
        app.config["SECRET_KEY"], user_id=user_id, role=role, ttl_s=600, issuer=NODE_NAME
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def headers(app: Flask) -> dict[str, dict[str, str]]:
    """Authorization headers for one account of each role, a worker, and "anonymous" (none)."""
    from domain.models import User, Worker
    from domain.security import new_worker_token, token_digest
    from grid_common.db import Database

    database: Database = app.extensions["database"]
    result: dict[str, dict[str, str]] = {"anonymous": {}}
    password_hash = hash_password(PASSWORD)
    with database.sessionmaker() as session, session.begin():
        for role in Role:
            email = OWNER_EMAIL if role is Role.OWNER else f"{role.value}@example.org"
            user = session.scalar(select(User).where(User.email == email))
            if user is None:
                user = User(email=email, role=role.value, password_hash=password_hash)
                session.add(user)
                session.flush()
            result[role.value] = bearer(app, user.id, role.value)
        token = new_worker_token()
        session.add(Worker(name="test-worker", token_digest=token_digest(token), token_prefix="w"))
        result["worker"] = {"Authorization": f"Bearer {token}"}
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def eventually(check: Callable[[], T], what: str, deadline_s: float = 120) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` at the deadline.

    Every wait in the tests is one of these: on a state, with a deadline generous enough for a
    loaded machine, never a fixed sleep.
    """
    deadline = time.monotonic() + deadline_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_s:g} s waiting for {what}")
        time.sleep(0.05)


def wait_for_http(url: str, process: subprocess.Popen[bytes], deadline_s: float = 120) -> None:
    """Wait until `url` answers 200; fail at once if the server exits first."""

    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        try:
            return requests.get(url, timeout=5).status_code == 200
        except requests.ConnectionError:
            return False

    eventually(answers, f"{url} to answer", deadline_s)


# gunicorn's default: how long a stopping node gives its workers before it kills them.
GRACEFUL_TIMEOUT_S = 30


def gunicorn_command(module: str, port: int, *, workers: int = 2, threads: int = 1) -> list[str]:
    """A node under gunicorn as `grid domain start` runs it (same gunicorn settings)."""
    command = [
        sys.executable, "-m", "gunicorn", "--config", "python:grid_common.gunicorn_conf",
        "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--preload",
    ]  # fmt: skip
    if threads > 1:
        command += ["--threads", str(threads)]
    return [*command, f"{module}.wsgi:app"]


def server_environment(settings: dict[str, str]) -> dict[str, str]:
    """A test server's environment: this process's without any `GRID_*` variable, plus
    `settings`; so a server reads its database and everything else from its own test only."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("GRID_")}
    return {**inherited, **settings}


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a server and wait for it; it must exit before gunicorn would kill its workers."""
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=GRACEFUL_TIMEOUT_S)


@pytest.fixture
def live_domain_env() -> dict[str, str]:
    """Extra environment of `live_domain`; a test module overrides it to tune the domain."""
    return {}


@pytest.fixture
def live_domain(
    database_url: str, tmp_path: Path, live_domain_env: dict[str, str]
) -> Iterator[str]:
    """A real domain under gunicorn on a free loopback port; yields its base URL."""
    port = free_port()
    env = server_environment(
        {
            **live_domain_env,
            "GRID_DATA_DIR": str(tmp_path / "live"),
            "GRID_DATABASE_URL": database_url,
            "GRID_NODE_NAME": NODE_NAME,
            "GRID_OWNER_EMAIL": OWNER_EMAIL,
            "GRID_OWNER_PASSWORD": OWNER_PASSWORD,
        }
    )
    log = (tmp_path / "gunicorn.log").open("wb")
    process = subprocess.Popen(
        gunicorn_command("domain", port, threads=8), env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/healthz", process)
        yield url
    finally:
        # Before `database_url` drops the database: a server never outlives its database.
        stop_server(process)
        log.close()


@pytest.fixture(scope="session")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalChain]:
    """One real anvil for the whole session, on a free port, with the registry deployed."""
    from registry.chain import start_local_chain

    log = (tmp_path_factory.mktemp("anvil") / "anvil.log").open("wb")
    chain = start_local_chain(free_port(), log=log)
    try:
        yield chain
    finally:
        chain.stop()
        log.close()
