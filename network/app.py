"""The network's Flask app factory."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

from grid_common.background import Background
from grid_common.blobstore import BlobStore
from grid_common.db import Database
from grid_common.errors import register_error_handlers
from grid_common.identity import load_or_create_identity
from grid_common.observability import init_app as init_observability
from grid_common.proxies import trust_proxies
from grid_common.signing import SignatureVerifier, SqlNonceStore
from network import console, migrate, registry_writes, routing, state_wait
from network.accounts import create_first_operator
from network.api import accounts, associations, federated, federated_domains, health, index
from network.auth import authorize_request
from network.config import NetworkConfig
from network.federated import close_due_rounds_task
from network.health import check_domains
from network.models import SeenNonce

log = logging.getLogger(__name__)

BLUEPRINTS = (
    health.bp,
    accounts.bp,
    associations.bp,
    index.bp,
    federated.bp,
    federated_domains.bp,
    routing.bp,
)
# How often each process looks for domains due a health check (each has its own interval).
_HEALTH_TICK_S = 2.0
# How often each process closes federated rounds whose deadline passed.
_ROUND_TICK_S = 0.5


def create_app(config: NetworkConfig | Mapping[str, Any] | None = None) -> Flask:
    """Build a network app; its database is migrated to the newest schema first."""
    if not isinstance(config, NetworkConfig):
        config = NetworkConfig.from_env(**dict(config or {}))
    config.data_dir.mkdir(parents=True, exist_ok=True)

    app = Flask("network", static_folder=None)
    app.config.update(
        GRID=config,
        SECRET_KEY=config.resolve_secret_key(),
        MAX_CONTENT_LENGTH=config.max_routed_bytes,
        JSON_SORT_KEYS=False,
    )
    trust_proxies(app, config.trusted_proxies)
    database = Database(config.database_url)
    migrate.upgrade(database.engine)
    database.init_app(app)
    state_wait.watch(database.sessionmaker)  # a changed job wakes the domains waiting on it
    app.extensions["blobs"] = BlobStore(config.data_dir / "blobs")
    identity = load_or_create_identity(config.data_dir)
    app.extensions["identity"] = identity
    app.extensions["signatures"] = SignatureVerifier(
        identity,
        SqlNonceStore(database.sessionmaker, SeenNonce.__table__),
        window_s=config.signature_window_s,
    )

    register_error_handlers(app, max_upload_hint=" Raise it with GRID_MAX_UPLOAD_BYTES.")
    init_observability(app, health.network_gauges)  # its hooks run before authorization
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    console.init_app(app)
    app.before_request(authorize_request)

    background = Background(app)
    background.add("health", min(config.health_interval_s, _HEALTH_TICK_S), check_domains)
    background.add("rounds", _ROUND_TICK_S, close_due_rounds_task)
    app.extensions["background"] = background
    registry_writes.init_app(app, config, database)

    if config.operator_email and config.operator_password:
        with database.sessionmaker() as session:
            if create_first_operator(session, config.operator_email, config.operator_password):
                log.info("created the first operator from GRID_OPERATOR_EMAIL")
    # A pre-forking server copies this process: no pooled connection may cross that fork.
    database.engine.dispose()
    return app
