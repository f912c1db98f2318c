"""Node identity: made once, kept 0600, id bound to the signing key, refused when exposed."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from grid_common.identity import (
    IdentityError,
    NodeIdentity,
    identity_path,
    load_identity,
    load_or_create_identity,
    node_id_for,
)
from tests.concurrency import run_concurrently


def test_made_on_first_start_kept_private_and_loaded_after(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="start the node once"):
        load_identity(tmp_path)
    made = load_or_create_identity(tmp_path / "node")
    path = identity_path(tmp_path / "node")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create_identity(tmp_path / "node")
    assert again.public_fields() == made.public_fields()
    assert bytes(again.signing_key) == bytes(made.signing_key)
    assert bytes(again.encryption_key) == bytes(made.encryption_key)
    assert made.node_id == node_id_for(bytes(made.signing_key.verify_key))
    assert len(made.node_id) == 32 and int(made.node_id, 16) >= 0
    assert set(made.public_fields()) == {"node_id", "signing_key", "encryption_key"}
    secret = json.loads(path.read_text())["signing_seed"]
    assert secret not in json.dumps(made.public_fields())
    assert [p.name for p in (tmp_path / "node").iterdir()] == [path.name]  # no temp file left


def test_different_nodes_get_different_ids() -> None:
    ids = {NodeIdentity.generate().node_id for _ in range(20)}
    assert len(ids) == 20


def test_a_file_others_can_read_is_refused(tmp_path: Path) -> None:
    load_or_create_identity(tmp_path)
    os.chmod(identity_path(tmp_path), 0o644)
    with pytest.raises(IdentityError, match="chmod 600"):
        load_or_create_identity(tmp_path)


def test_a_damaged_file_is_refused(tmp_path: Path) -> None:
    load_or_create_identity(tmp_path)
    identity_path(tmp_path).write_text('{"version": 1, "signing_seed": "short"}')
    with pytest.raises(IdentityError, match="not a Grid node identity"):
        load_identity(tmp_path)


def test_processes_starting_together_agree_on_one_identity(tmp_path: Path) -> None:
    found: list[str] = []
    stuck = run_concurrently(
        lambda _: found.append(load_or_create_identity(tmp_path).node_id), range(8)
    )
    assert stuck == 0
    assert len(found) == 8 and len(set(found)) == 1
    assert load_identity(tmp_path).node_id == found[0]
