"""Spec and model hashes, and the node's Ethereum key file."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from grid_common.hashes import (
    ed25519_key_hash,
    model_hash,
    spec_document,
    spec_hash,
    spec_hash_of_files,
)
from registry.keys import KEY_ENV, key_path, load_or_create_account

DIGEST = "ab" * 32
PLAN = {"loss": "cross_entropy", "epochs": 2}


def test_spec_hash_fills_plan_defaults_and_ignores_dataset_order() -> None:
    explicit = {**PLAN, "optimizer": "sgd", "batch_size": 32}
    one = spec_hash(model_digest=DIGEST, weights_digest=DIGEST, plan=PLAN, datasets=["b", "a"])
    two = spec_hash(model_digest=DIGEST, weights_digest=DIGEST, plan=explicit, datasets=["a", "b"])
    assert one == two
    assert len(one) == 64


@pytest.mark.parametrize(
    "change",
    [
        {"model_digest": "cd" * 32},
        {"weights_digest": "cd" * 32},
        {"plan": {**PLAN, "epochs": 3}},
        {"datasets": ["a"]},
        {"kind": "model_centric"},
    ],
)
def test_spec_hash_covers_model_weights_plan_datasets_and_kind(change: dict) -> None:
    base = {"model_digest": DIGEST, "weights_digest": DIGEST, "plan": PLAN, "datasets": ["a", "b"]}
    assert spec_hash(**base) != spec_hash(**{**base, **change})


@pytest.mark.parametrize("bad", ["", "xyz", "ab" * 31, "zz" * 32])
def test_spec_hash_refuses_what_is_not_a_digest(bad: str) -> None:
    with pytest.raises(ValueError, match="model_digest"):
        spec_document(model_digest=bad, weights_digest=DIGEST, plan=PLAN, datasets=[])


def test_spec_hash_of_files_matches_the_digests(tmp_path: Path) -> None:
    program, weights = tmp_path / "m.pt2", tmp_path / "w.safetensors"
    program.write_bytes(b"program")
    weights.write_bytes(b"weights")
    from_files = spec_hash_of_files(program, weights, plan=PLAN, datasets=["a"])
    assert from_files == spec_hash(
        model_digest=model_hash(b"program"),
        weights_digest=model_hash(b"weights"),
        plan=PLAN,
        datasets=["a"],
    )


def test_model_hash_changes_with_one_byte(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    data = bytearray(os.urandom(4096))
    path.write_bytes(data)
    original = model_hash(path)
    assert original == model_hash(bytes(data))
    data[1234] ^= 0x01
    path.write_bytes(data)
    assert model_hash(path) != original


def test_ed25519_key_hash_takes_exactly_a_key() -> None:
    assert len(ed25519_key_hash(bytes(32))) == 64
    with pytest.raises(ValueError):
        ed25519_key_hash(bytes(31))


def test_node_key_is_made_once_owner_only_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    first = load_or_create_account(tmp_path)
    assert stat.S_IMODE(key_path(tmp_path).stat().st_mode) == 0o600
    assert load_or_create_account(tmp_path).address == first.address
    assert list(tmp_path.iterdir()) == [key_path(tmp_path)]  # no staging file left behind


def test_concurrent_first_starts_agree_on_one_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with ThreadPoolExecutor(8) as pool:
        addresses = set(pool.map(lambda _: load_or_create_account(tmp_path).address, range(16)))
    assert len(addresses) == 1


def test_a_key_file_others_can_read_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    load_or_create_account(tmp_path)
    key_path(tmp_path).chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_or_create_account(tmp_path)


def test_the_environment_key_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "0x" + "11" * 32)
    account = load_or_create_account(tmp_path)
    assert account.address == "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A"
    assert not key_path(tmp_path).exists()
