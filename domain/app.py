"""The domain's Flask app factory."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

from domain import console, lease_wait, migrate, registry_writes
from domain.accounts import create_first_owner
from domain.api import (
    apikeys,
    audit_log,
    auth,
    datasets,
    health,
    jobs,
    networks,
    privacy,
    registry_status,
    requests,
    settings,
    setup,
    users,
    worker_api,
    workers,
)
from domain.auth import authorize_request
from domain.config import DomainConfig
from domain.network_nudges import MemoryNonceStore
from domain.networks import sync_networks
from grid_common.background import Background
from grid_common.blobstore import BlobStore
from grid_common.db import Database
from grid_common.errors import register_error_handlers
from grid_common.identity import load_or_create_identity
from grid_common.observability import init_app as init_observability
from grid_common.proxies import trust_proxies
from grid_common.signing import SignatureVerifier

log = logging.getLogger(__name__)

BLUEPRINTS = (
    health.bp,
    setup.bp,
    auth.bp,
    users.bp,
    apikeys.bp,
    settings.bp,
    datasets.bp,
    requests.bp,
    jobs.bp,
    privacy.bp,
    workers.bp,
    worker_api.bp,
    audit_log.bp,
    registry_status.bp,
    networks.bp,
)


def create_app(config: DomainConfig | Mapping[str, Any] | None = None) -> Flask:
    """Build a domain app; its database is migrated to the newest schema first."""
    if not isinstance(config, DomainConfig):
        config = DomainConfig.from_env(**dict(config or {}))
    config.data_dir.mkdir(parents=True, exist_ok=True)

    app = Flask("domain", static_folder=None)
    app.config.update(
        GRID=config,
        SECRET_KEY=config.resolve_secret_key(),
        MAX_CONTENT_LENGTH=config.max_upload_bytes,
        MAX_FORM_MEMORY_SIZE=1 << 20,
        JSON_SORT_KEYS=False,
    )
    trust_proxies(app, config.trusted_proxies)
    database = Database(config.database_url)
    migrate.upgrade(database.engine)
    database.init_app(app)
    lease_wait.watch(database.sessionmaker)  # a new job wakes the workers waiting for one
    app.extensions["blobs"] = BlobStore(config.data_dir / "blobs")
    app.extensions["identity"] = load_or_create_identity(config.data_dir)
    # Networks' nudges are the only calls signed for a domain (see domain.network_nudges).
    app.extensions["signatures"] = SignatureVerifier(app.extensions["identity"], MemoryNonceStore())
    background = Background(app)
    background.add("networks", config.network_sync_s, sync_networks)
    app.extensions["background"] = background

    register_error_handlers(app, max_upload_hint=" Raise it with GRID_MAX_UPLOAD_BYTES.")
    init_observability(app, health.domain_gauges)  # its hooks run before authorization
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    console.init_app(app)
    app.before_request(authorize_request)
    _create_owner_from_env(database, config)
    registry_writes.init_app(app, config, database)
    # A pre-forking server copies this process: no pooled connection may cross that fork.
    database.engine.dispose()
    return app


def _create_owner_from_env(database: Database, config: DomainConfig) -> None:
    if not (config.owner_email and config.owner_password):
        return
    with database.sessionmaker() as session:
        owner = create_first_owner(
            session, config.owner_email, config.owner_password, actor="system"
        )
    if owner is not None:
        log.info("created the owner account from GRID_OWNER_EMAIL")
