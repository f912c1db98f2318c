"""Network configuration: `GRID_*` environment variables, with explicit values on top."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from grid_common.config import env_bool, env_float, env_int
from grid_common.security import read_or_create_secret


@dataclass
class NetworkConfig:
    """Everything a network node needs to start; `from_env` reads the `GRID_*` variables."""

    data_dir: Path = field(default_factory=lambda: Path(".grid/network"))
    name: str = "network"
    database_url: str = ""
    secret_key: str = ""
    operator_email: str = ""
    operator_password: str = ""
    access_token_ttl_s: int = 15 * 60
    refresh_token_ttl_s: int = 30 * 24 * 3600
    login_failure_window_s: int = 15 * 60
    max_login_failures_per_account: int = 5
    max_login_failures_per_address: int = 20
    trusted_proxies: int = 0
    join_window_s: int = 3600
    max_joins_per_address: int = 10
    max_joins_per_domain: int = 5
    signature_window_s: int = 60
    # Domains' state requests that may wait for a change at once, per process (a thread each).
    state_waiters: int = 4
    health_interval_s: float = 30.0
    health_timeout_s: float = 5.0
    max_routed_bytes: int = 1 << 30
    route_connect_timeout_s: float = 5.0
    route_read_timeout_s: float = 300.0
    background: bool = True
    chain_rpc_url: str = ""
    registry_address: str = ""

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'network.db').resolve()}"

    @classmethod
    def from_env(cls, **overrides: Any) -> NetworkConfig:
        env = os.environ
        values: dict[str, Any] = {
            "data_dir": Path(env.get("GRID_DATA_DIR", ".grid/network")),
            "name": env.get("GRID_NODE_NAME", "network"),
            "database_url": env.get("GRID_DATABASE_URL", ""),
            "secret_key": env.get("GRID_SECRET_KEY", ""),
            "operator_email": env.get("GRID_OPERATOR_EMAIL", ""),
            "operator_password": env.get("GRID_OPERATOR_PASSWORD", ""),
            "max_joins_per_address": env_int("GRID_MAX_JOINS_PER_ADDRESS", 10),
            "trusted_proxies": env_int("GRID_TRUSTED_PROXIES", 0),
            "signature_window_s": env_int("GRID_SIGNATURE_WINDOW_S", 60),
            "state_waiters": env_int("GRID_STATE_WAITERS", 4),
            "health_interval_s": env_float("GRID_HEALTH_INTERVAL_S", 30.0),
            "max_routed_bytes": env_int("GRID_MAX_UPLOAD_BYTES", 1 << 30),
            "route_read_timeout_s": env_float("GRID_ROUTE_TIMEOUT_S", 300.0),
            "background": env_bool("GRID_BACKGROUND", True),
            "chain_rpc_url": env.get("GRID_CHAIN_RPC_URL", ""),
            "registry_address": env.get("GRID_REGISTRY_ADDRESS", ""),
        }
        known = {f.name for f in fields(cls)}
        values.update({k: v for k, v in overrides.items() if k in known and v is not None})
        return cls(**values)

    def resolve_secret_key(self) -> str:
        """The token-signing key: from the environment, else made once and kept 0600 on disk."""
        return self.secret_key or read_or_create_secret(self.data_dir / "secret_key")
