"""Errors of the registry client, with the contract's custom reverts decoded by name."""

from __future__ import annotations

from typing import Any

from eth_abi import decode
from eth_utils import function_signature_to_4byte_selector

from registry.artifact import registry_artifact


class RegistryError(Exception):
    """A registry call failed; `reason` is the contract's error name when it reverted."""

    def __init__(self, message: str, *, reason: str | None = None, args: tuple[Any, ...] = ()):
        super().__init__(message)
        self.reason = reason
        self.revert_args = args


class ChainUnavailable(RegistryError):
    """The JSON-RPC endpoint cannot be reached (or answered with a transport error)."""


class VerificationFailed(RegistryError):
    """A job's on-chain records do not back what the caller holds."""


def _error_table() -> dict[bytes, tuple[str, list[str]]]:
    table: dict[bytes, tuple[str, list[str]]] = {}
    for item in registry_artifact().abi:
        if item["type"] != "error":
            continue
        types = [i["type"] for i in item["inputs"]]
        selector = function_signature_to_4byte_selector(f"{item['name']}({','.join(types)})")
        table[selector] = (item["name"], types)
    return table


_ERRORS = _error_table()


def decode_revert(data: str | bytes | None) -> tuple[str, tuple[Any, ...]] | None:
    """The custom error (name, arguments) that revert data encodes, if it is one of ours."""
    if data is None:
        return None
    raw = bytes.fromhex(data.removeprefix("0x")) if isinstance(data, str) else data
    found = _ERRORS.get(raw[:4])
    if found is None:
        return None
    name, types = found
    try:
        return name, tuple(decode(types, raw[4:]))
    except Exception:
        return name, ()
