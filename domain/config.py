"""Domain configuration: `GRID_*` environment variables, with explicit values on top."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from grid_common.config import env_bool, env_float
from grid_common.config import env_int as _env_int
from grid_common.security import read_or_create_secret


@dataclass
class DomainConfig:
    """Everything a domain node needs to start; `from_env` reads the `GRID_*` variables."""

    data_dir: Path = field(default_factory=lambda: Path(".grid/domain"))
    name: str = "domain"
    database_url: str = ""
    secret_key: str = ""
    max_upload_bytes: int = 1 << 30
    access_token_ttl_s: int = 15 * 60
    refresh_token_ttl_s: int = 30 * 24 * 3600
    owner_email: str = ""
    owner_password: str = ""
    login_failure_window_s: int = 15 * 60
    max_login_failures_per_account: int = 5
    max_login_failures_per_address: int = 20
    trusted_proxies: int = 0
    mock_rows: int = 100
    job_lease_seconds: int = 30
    # The longest a worker's lease request waits for a job (the long poll; 0: answer at once).
    lease_wait_s: float = 20.0
    public_url: str = ""
    network_sync_s: float = 10.0
    network_push_interval_s: float = 600.0
    background: bool = True
    chain_rpc_url: str = ""
    registry_address: str = ""
    registry_anchor_interval_s: int = 3600

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'domain.db').resolve()}"

    @classmethod
    def from_env(cls, **overrides: Any) -> DomainConfig:
        env = os.environ
        values: dict[str, Any] = {
            "data_dir": Path(env.get("GRID_DATA_DIR", ".grid/domain")),
            "name": env.get("GRID_NODE_NAME", "domain"),
            "database_url": env.get("GRID_DATABASE_URL", ""),
            "secret_key": env.get("GRID_SECRET_KEY", ""),
            "max_upload_bytes": _env_int("GRID_MAX_UPLOAD_BYTES", 1 << 30),
            "owner_email": env.get("GRID_OWNER_EMAIL", ""),
            "owner_password": env.get("GRID_OWNER_PASSWORD", ""),
            "job_lease_seconds": _env_int("GRID_JOB_LEASE_SECONDS", 30),
            "lease_wait_s": env_float("GRID_LEASE_WAIT_S", 20.0),
            "trusted_proxies": _env_int("GRID_TRUSTED_PROXIES", 0),
            "public_url": env.get("GRID_PUBLIC_URL", ""),
            "network_sync_s": env_float("GRID_NETWORK_SYNC_S", 10.0),
            "network_push_interval_s": env_float("GRID_NETWORK_PUSH_INTERVAL_S", 600.0),
            "background": env_bool("GRID_BACKGROUND", True),
            "chain_rpc_url": env.get("GRID_CHAIN_RPC_URL", ""),
            "registry_address": env.get("GRID_REGISTRY_ADDRESS", ""),
            "registry_anchor_interval_s": _env_int("GRID_REGISTRY_ANCHOR_INTERVAL_S", 3600),
        }
        known = {f.name for f in fields(cls)}
        values.update({k: v for k, v in overrides.items() if k in known and v is not None})
        return cls(**values)

    def resolve_secret_key(self) -> str:
        """The token-signing key: from the environment, else made once and kept 0600 on disk."""
        if self.secret_key:
            return self.secret_key
        return read_or_create_secret(self.data_dir / "secret_key")
