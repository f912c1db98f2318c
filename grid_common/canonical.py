"""Canonical JSON: one byte string per value, the form every Grid hash and signature covers."""

from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any) -> bytes:
    """One byte string per value: sorted keys, no spaces, UTF-8; what the hashes cover."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
