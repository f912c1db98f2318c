"""A data-centric job recorded on the registry: the data scientist verifies the model they hold."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account

import grid_cli as grid
from registry.chain import LocalChain, fund
from tests.worker.live import LEASE_SECONDS, PLAN, StartWorker, mlp, wait_until


@pytest.fixture
def domain_key() -> str:
    return str(Account.create().key.hex())


@pytest.fixture
def live_domain_env(anvil: LocalChain, domain_key: str) -> dict[str, str]:
    fund(anvil.rpc_url, [Account.from_key(domain_key).address])
    return {
        "GRID_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
        "GRID_CHAIN_RPC_URL": anvil.rpc_url,
        "GRID_REGISTRY_ADDRESS": anvil.registry_address,
        "GRID_ETH_PRIVATE_KEY": domain_key,
    }


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_released_model_verifies_and_a_changed_one_does_not(
    owner: grid.DomainClient,
    scientist: grid.DomainClient,
    start_worker: StartWorker,
    anvil: LocalChain,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GRID_REGISTRY_ADDRESS", raising=False)
    start_worker("w1")
    job = scientist.submit_training(mlp(), "digits-a", PLAN, reason="on the record")
    owner.approve(job.id)
    job.wait(timeout=180, progress=False)
    owner.release(job.id)
    assert job.refresh().info.registry_job_id is not None
    # The domain being checked names its registry; its word alone is not taken.
    with pytest.raises(ValueError, match="registry_address="):
        job.verify(anvil.rpc_url)
    registry = anvil.registry_address  # the user confirms it (or sets GRID_REGISTRY_ADDRESS)

    def settled() -> bool:
        return job.verify(anvil.rpc_url, registry_address=registry).ok

    wait_until(settled, "the job settled on chain", deadline_s=120)
    proof = job.verify(anvil.rpc_url, registry_address=registry)
    assert "attest" in proof.render().lower()

    weights = job.download_result(tmp_path / "weights.safetensors")
    altered = tmp_path / "altered.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    altered.write_bytes(bytes(data))
    tampered = job.verify(anvil.rpc_url, model_file=altered, registry_address=registry)
    assert not tampered.ok
    assert any("does not match" in problem for problem in tampered.problems)
