"""A node's own Ethereum key: made once, kept 0600 in its data dir, never logged."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

KEY_FILE = "eth_key"
KEY_ENV = "GRID_ETH_PRIVATE_KEY"


def key_path(data_dir: Path) -> Path:
    return Path(data_dir) / KEY_FILE


def load_or_create_account(data_dir: Path, *, env: bool = True) -> LocalAccount:
    """The node's account: `GRID_ETH_PRIVATE_KEY` if set, else the data dir's key file,
    made on first use with owner-only permissions."""
    if env and os.environ.get(KEY_ENV):
        return Account.from_key(os.environ[KEY_ENV].strip())
    path = key_path(data_dir)
    if not path.exists():
        _create_key_file(path)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
    return Account.from_key(path.read_text().strip())


def _create_key_file(path: Path) -> None:
    # Written in full under a private name, then linked into place: a second process of
    # the same node either wins the link or reads the complete file, never a partial one.
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write("0x" + secrets.token_bytes(32).hex() + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(staging, path)
    finally:
        staging.unlink()


def node_address(data_dir: Path) -> str:
    """The checksummed address a node signs its registry writes with."""
    return str(load_or_create_account(data_dir).address)
