"""Verifying a job against the chain from Python (`grid registry verify` is tested with the
commands, in tests/grid_cli/commands/test_registry.py)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from grid_common.hashes import model_hash, spec_hash
from registry.chain import LocalChain
from registry.client import RegistryClient, job_id_of, round_mask
from registry.verify import verify_job
from tests.registry.conftest import ETHER, HOUR, ClientFactory, chain_now

PLAN = {"loss": "cross_entropy", "epochs": 1}


@pytest.fixture
def finished_job(
    anvil: LocalChain, new_client: ClientFactory, tmp_path: Path
) -> tuple[RegistryClient, str, Path, str]:
    """A data-centric job run to the end: the domain coordinates, trains, attests, settles."""
    domain = new_client("domain")
    model = tmp_path / "model.safetensors"
    model.write_bytes(os.urandom(2048))
    spec = spec_hash(
        model_digest="aa" * 32, weights_digest="bb" * 32, plan=PLAN, datasets=["digits"]
    )
    key = secrets.token_hex(6)
    domain.create_job(key, spec, [domain.sender], deadline=chain_now(anvil) + HOUR, bounty=ETHER)
    job_id = job_id_of(domain.sender, key)
    counted, samples = round_mask([domain.sender], {domain.sender: 1797})
    domain.log_round(job_id, model_hash(model), counted, samples)
    domain.attest(job_id, model_hash(model))
    domain.finalize(job_id)
    return domain, job_id, model, spec


def test_the_held_model_and_spec_verify_with_a_readable_proof(
    finished_job: tuple[RegistryClient, str, Path, str],
) -> None:
    domain, job_id, model, spec = finished_job
    reader = RegistryClient(domain.rpc_url, domain.address)  # anyone, no key
    proof = verify_job(reader, job_id, model=model, spec_hash=spec)
    assert proof.ok, proof.problems
    text = proof.render()
    assert "VERIFIED" in text and domain.sender in text
    assert proof.created is not None and proof.created.tx_hash in text
    assert proof.finalized is not None and proof.finalized.tx_hash in text
    assert "1797 samples" in text and "reward 1 ETH" in text
    assert [a.participant for a in proof.attestations] == [domain.sender]


def test_a_model_changed_by_one_byte_fails_verification(
    finished_job: tuple[RegistryClient, str, Path, str],
) -> None:
    domain, job_id, model, _ = finished_job
    data = bytearray(model.read_bytes())
    data[100] ^= 0x80
    model.write_bytes(data)
    proof = verify_job(RegistryClient(domain.rpc_url, domain.address), job_id, model=model)
    assert not proof.ok
    (problem,) = proof.problems
    assert "your model does not match" in problem and "one changed byte" in problem
    assert "NOT VERIFIED" in proof.render()


def test_a_different_spec_fails_verification(
    finished_job: tuple[RegistryClient, str, Path, str],
) -> None:
    domain, job_id, model, _ = finished_job
    other = spec_hash(
        model_digest="aa" * 32, weights_digest="bb" * 32, plan=PLAN, datasets=["other"]
    )
    proof = verify_job(domain, job_id, model=model, spec_hash=other)
    assert not proof.ok and "the spec you hold" in proof.problems[0]


def test_an_unsettled_job_does_not_verify(anvil: LocalChain, new_client: ClientFactory) -> None:
    domain = new_client("domain")
    domain.create_job("open", "0x" + "11" * 32, [domain.sender], deadline=chain_now(anvil) + HOUR)
    proof = verify_job(domain, job_id_of(domain.sender, "open"), model_hash="22" * 32)
    assert (
        not proof.ok
        and "not finalized (1 participant(s) have not attested yet)" in proof.problems[0]
    )


def test_an_unknown_job_is_named(anvil: LocalChain) -> None:
    reader = RegistryClient(anvil.rpc_url, anvil.registry_address)
    with pytest.raises(LookupError, match="is not on the registry"):
        verify_job(reader, "0x" + "33" * 32)
