"""A federated job of domains that are on chain is one job there: the network creates it as
the job starts, with the approving domains as participants, and logs each closed round."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from network.models import Association, FederatedJob, FederatedRound, RegistryOutboxEntry
from network.registry_writes import job_key_for
from registry.chain import LocalChain
from registry.client import RegistryClient, job_id_of
from registry.node import NodeRegistry
from tests.network.conftest import Signer, dataset
from tests.network.test_federated import (  # noqa: F401 (fixtures)
    NAMES,
    SAMPLES,
    Job,
    _send_all,
    created,
    job_keys,
    model_files,
    scientist,
    start_job,
)
from tests.network.test_registry import (  # noqa: F401 (fixtures)
    join_with_address,
    network_config,
    reader,
    registered_domain,
    registry,
)


@pytest.fixture
def addresses(anvil: LocalChain) -> list[str]:
    """One registered domain address per domain of the job, in the job's order."""
    return [registered_domain(anvil) for _ in NAMES]


@pytest.fixture
def domains(
    network: FlaskClient,
    operator: dict[str, str],
    make_signer: Callable[[], Signer],
    addresses: list[str],
) -> list[Signer]:
    """The job's domains, each approved with its address on chain and publishing `records`."""
    signers = []
    for name, address in zip(NAMES, addresses, strict=True):
        signer = make_signer()
        association_id = join_with_address(signer, address, name=name)
        decided = network.post(
            f"/api/v1/associations/{association_id}/approve", json={}, headers=operator
        )
        assert decided.status_code == 200, decided.json
        assert signer.push([dataset("records")]).status_code == 200
        signers.append(signer)
    return signers


def test_a_federated_job_is_one_job_on_chain_with_every_round(
    start_job: Callable[..., Job],  # noqa: F811
    registry: NodeRegistry,  # noqa: F811
    network_app: Flask,
    reader: RegistryClient,  # noqa: F811
    addresses: list[str],
) -> None:
    job = start_job("none")
    for number in (1, 2):
        _send_all(job, number)
    assert job.view()["status"] == "finishing"

    registry.sender.run_until_idle()

    with network_app.extensions["database"].sessionmaker() as session:
        row = session.get(FederatedJob, job.id)
        assert row is not None
        digests = session.scalars(
            select(FederatedRound.aggregate_digest)
            .where(FederatedRound.job_id == job.id)
            .order_by(FederatedRound.number)
        ).all()
    chain_id = job_id_of(registry.address, job_key_for(row))
    record = reader.job(chain_id)
    assert record.coordinator == registry.address
    assert record.spec_hash == "0x" + row.spec_hash
    assert reader.participants(chain_id) == addresses
    rounds = reader.rounds(chain_id)
    assert [r.aggregate_hash for r in rounds] == ["0x" + str(d) for d in digests]
    assert [(r.counted, r.samples) for r in rounds] == [(0b111, list(SAMPLES))] * 2


def test_a_job_with_a_domain_off_chain_is_not_recorded(
    created: Callable[..., Job],  # noqa: F811
    registry: NodeRegistry,  # noqa: F811
    network_app: Flask,
) -> None:
    job = created("none")
    # A domain without an address is not on chain, so a job it takes part in cannot be.
    with network_app.extensions["database"].sessionmaker() as session, session.begin():
        first = session.scalars(select(Association).where(Association.name == NAMES[0])).one()
        first.eth_address = None
    for signer in job.domains:
        assert job.decide(signer).status_code == 200
    for number in (1, 2):
        _send_all(job, number)
    with network_app.extensions["database"].sessionmaker() as session:
        ops = session.scalars(select(RegistryOutboxEntry.op)).all()
    assert ops == ["register", "set_association", "set_association", "set_association"]
