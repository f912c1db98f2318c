"""The domain's API keys and worker tokens; password and token primitives from grid_common."""

from __future__ import annotations

import secrets

from grid_common.security import (
    decode_access_token,
    hash_password,
    issue_access_token,
    new_secret_token,
    token_digest,
    verify_password,
)

__all__ = [
    "API_KEY_PREFIX",
    "MIN_PASSWORD_LENGTH",
    "WORKER_TOKEN_PREFIX",
    "decode_access_token",
    "hash_password",
    "issue_access_token",
    "new_api_key",
    "new_secret_token",
    "new_worker_token",
    "token_digest",
    "verify_password",
]

API_KEY_PREFIX = "grid_"
WORKER_TOKEN_PREFIX = "gridw_"
MIN_PASSWORD_LENGTH = 8


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def new_worker_token() -> str:
    return WORKER_TOKEN_PREFIX + secrets.token_urlsafe(32)
