"""A node's keys: Ed25519 signs its calls, X25519 gets sealed secrets; its id hashes the first."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from nacl.public import PrivateKey
from nacl.signing import SigningKey, VerifyKey

IDENTITY_FILE = "node_identity.json"
_FORMAT_VERSION = 1
_ID_DOMAIN = b"grid-node-id:v1:"
NODE_ID_LENGTH = 32


class IdentityError(Exception):
    """The identity file is missing, damaged or readable by others; the message says what to do."""


def b64encode(data: bytes) -> str:
    """URL-safe base64 without padding: how keys and signatures travel."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64decode(text: str, *, length: int | None = None) -> bytes:
    """The inverse of `b64encode`; raises ValueError on bad input or a wrong decoded length."""
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not URL-safe base64") from None
    if length is not None and len(data) != length:
        raise ValueError(f"expected {length} bytes, got {len(data)}")
    return data


def node_id_for(signing_public_key: bytes) -> str:
    """A node's id: a hash of its Ed25519 public key, so nobody can claim another node's id."""
    return hashlib.sha256(_ID_DOMAIN + signing_public_key).hexdigest()[:NODE_ID_LENGTH]


def verify_key_from_text(text: str) -> VerifyKey:
    """An Ed25519 public key as it travels (base64url); ValueError when it is not one."""
    return VerifyKey(b64decode(text, length=32))


@dataclass(frozen=True)
class NodeIdentity:
    """The private keys of one node. Only the public halves ever leave the node."""

    signing_key: SigningKey
    encryption_key: PrivateKey

    @classmethod
    def generate(cls) -> NodeIdentity:
        return cls(SigningKey.generate(), PrivateKey.generate())

    @property
    def signing_public_key(self) -> str:
        return b64encode(bytes(self.signing_key.verify_key))

    @property
    def encryption_public_key(self) -> str:
        return b64encode(bytes(self.encryption_key.public_key))

    @property
    def node_id(self) -> str:
        return node_id_for(bytes(self.signing_key.verify_key))

    def public_fields(self) -> dict[str, str]:
        """What a node may show anyone about itself."""
        return {
            "node_id": self.node_id,
            "signing_key": self.signing_public_key,
            "encryption_key": self.encryption_public_key,
        }

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": _FORMAT_VERSION,
                "signing_seed": b64encode(bytes(self.signing_key)),
                "encryption_key": b64encode(bytes(self.encryption_key)),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> NodeIdentity:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != _FORMAT_VERSION:
            raise ValueError("unknown identity file format")
        return cls(
            SigningKey(b64decode(data["signing_seed"], length=32)),
            PrivateKey(b64decode(data["encryption_key"], length=32)),
        )


def identity_path(data_dir: Path) -> Path:
    return Path(data_dir) / IDENTITY_FILE


def load_identity(data_dir: Path) -> NodeIdentity:
    """The node's identity from its data dir; refuses a file others can read."""
    path = identity_path(data_dir)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise IdentityError(
            f"{path} does not exist: start the node once to make its keys"
        ) from None
    if stat.S_IMODE(mode) & 0o077:
        raise IdentityError(
            f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}): "
            f"run `chmod 600 {path}`"
        )
    try:
        return NodeIdentity.from_json(path.read_text())
    except (ValueError, KeyError, TypeError) as exc:
        raise IdentityError(
            f"{path} is not a Grid node identity ({exc}); restore it from a backup"
        ) from None


def load_or_create_identity(data_dir: Path) -> NodeIdentity:
    """Load the identity, making it on first start; concurrent first starts agree on one."""
    path = identity_path(data_dir)
    if path.exists():
        return load_identity(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    identity = NodeIdentity.generate()
    # Written whole under a temporary name (0600 from the start), then linked into place:
    # link fails if another process won the race, and nobody ever reads half a file.
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".identity-")
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(identity.to_json())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return load_identity(data_dir)
    finally:
        os.unlink(temporary)
    return identity
