"""`grid demo` (what `make demo` runs) trains across a whole local grid (3 domains: an encrypted
job without DP needs them) and proves the model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from grid_common.hashes import model_hash

pytestmark = pytest.mark.timeout(600)


def test_demo_trains_across_the_domains_and_the_chain_backs_the_model(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "grid_cli", "demo", "--rounds", "2", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=540,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    out = result.stdout
    for expected in (
        "hospital-a │ digits",
        "hospital-b │ digits",
        "hospital-c │ digits",
        "hospital-a owner approves request",
        "hospital-b owner approves request",
        "hospital-c owner approves request",
        "round 1/2",
        "round 2/2",
        "hospital-a owner releases the result",
        "hospital-b owner releases the result",
        "hospital-c owner releases the result",
        "federated, CKKS",
        "centralized baseline",
        "every process has stopped",
    ):
        assert expected in out, expected
    digest = model_hash(data_dir / "results" / "model.safetensors")
    assert f"sha256 {digest}" in out
    # One job on chain, the network's, with every domain, both rounds and every attestation,
    # and it backs the downloaded weights.
    assert out.count("VERIFIED: the chain backs this job and your model.") == 1
    for expected in ("Participants (3)", "Rounds (2)", "Attestations (3 of 3)"):
        assert expected in out, expected
    # The data scientist's bounty is paid out: every domain's reward is above zero.
    assert out.count("reward 0.0") == 3 and "reward 0 ETH" not in out
    for check in ("coordinator", "participants", "spec hash", "rounds", "attestations"):
        assert f"✓ {check}" in out, check
    assert "NOT VERIFIED" not in out
    assert not (data_dir / "grid.json").exists()
