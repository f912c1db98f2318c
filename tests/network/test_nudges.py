"""Nudges: the network tells a domain to sync now when it has news for it, by a signed call that
the domain takes only from a network it joined; the sync loop stays the fallback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

import grid_cli as grid
from domain.models import NetworkMembership
from domain.network_nudges import NUDGE_PATH
from grid_common.identity import NodeIdentity, load_or_create_identity
from grid_common.signing import sign_headers
from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD, eventually
from tests.domain.conftest import model_files  # noqa: F401  (the fixture)
from tests.domain.uploads import CSV, upload
from tests.network.conftest import OPERATOR_EMAIL, OPERATOR_PASSWORD, LiveNode
from tests.network.test_federated_domain import PASSWORD, SCIENTIST, _member, _submit, _sync

HOUR = 3600


def _nudge(client: FlaskClient, signer: NodeIdentity, recipient: str, **over: str):
    headers = sign_headers(signer, method="POST", target=NUDGE_PATH, recipient=recipient)
    return client.post(NUDGE_PATH, headers={**headers, **over})


def _due_at(app: Flask) -> datetime:
    with app.extensions["database"].sessionmaker() as session:
        return session.query(NetworkMembership).one().next_sync_at.replace(tzinfo=UTC)


def _requests(client: FlaskClient, owner: dict[str, str]) -> list[dict]:
    return client.get("/api/v1/requests", headers=owner).json["items"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_only_a_nudge_signed_by_the_domains_network_counts_and_the_sync_loop_is_the_fallback(
    app: Flask,
    client: FlaskClient,
    headers: dict[str, dict[str, str]],
    live_network: LiveNode,
    tmp_path: Path,
    model_files: tuple[bytes, bytes],  # noqa: F811
) -> None:
    owner = headers["owner"]
    assert upload(client, owner, name="digits-a").status_code == 201
    # The network knows this domain at the test client's URL, where nothing answers: every
    # nudge the network sends fails, as to a domain that is down.
    domain_id = _member(client, owner, live_network.url)
    _sync(app)
    job_id = _submit(live_network.url, domain_id, model_files, "none")  # submitting still works
    network = load_or_create_identity(tmp_path / "live-network")
    with app.extensions["database"].sessionmaker() as session:
        session.query(NetworkMembership).update(
            {"next_sync_at": datetime.now(UTC) + timedelta(seconds=HOUR)}
        )
        session.commit()

    unsigned = client.post(NUDGE_PATH)
    assert unsigned.status_code == 401 and unsigned.json["error"]["code"] == "unsigned"
    stranger = _nudge(client, NodeIdentity.generate(), domain_id)
    assert stranger.status_code == 403  # validly signed, by a network this domain never joined
    for forged in (
        _nudge(client, network, "f" * 32),  # signed for another node
        _nudge(client, network, domain_id, **{"X-Grid-Timestamp": "1"}),  # tampered with
    ):
        assert forged.status_code == 401
    assert _requests(client, owner) == []
    assert _due_at(app) > datetime.now(UTC)  # none of them made the domain sync

    headers_once = sign_headers(network, method="POST", target=NUDGE_PATH, recipient=domain_id)
    assert client.post(NUDGE_PATH, headers=headers_once).status_code == 204
    assert _due_at(app) <= datetime.now(UTC)  # due now: the woken loop syncs at once
    replayed = client.post(NUDGE_PATH, headers=headers_once)
    assert replayed.status_code == 401 and replayed.json["error"]["code"] == "replayed"

    _sync(app)  # what the woken loop runs; also the periodic fallback when no nudge came
    [item] = _requests(client, owner)
    assert item["kind"] == "federated" and item["status"] == "pending"
    scientist = grid.login_network(live_network.url, SCIENTIST, PASSWORD)
    assert scientist.federated_job_info(job_id).participants[0].status == "invited"


@pytest.fixture
def slow_syncing_domain(database_url: str, tmp_path: Path) -> Iterator[LiveNode]:
    """A live domain whose own sync loop runs once an hour: only a nudge makes it sync sooner."""
    node = LiveNode(
        "domain",
        {
            "GRID_DATA_DIR": str(tmp_path / "slow-domain"),
            "GRID_DATABASE_URL": database_url,
            "GRID_NODE_NAME": "hospital-a",
            "GRID_OWNER_EMAIL": OWNER_EMAIL,
            "GRID_OWNER_PASSWORD": OWNER_PASSWORD,
            "GRID_NETWORK_SYNC_S": str(HOUR),
        },
        tmp_path / "slow-domain.log",
    )
    yield node
    node.stop()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_network_nudges_its_domains_on_approval_and_on_each_invitation(
    live_network: LiveNode,
    slow_syncing_domain: LiveNode,
    tmp_path: Path,
    model_files: tuple[bytes, bytes],  # noqa: F811
) -> None:
    owner = grid.login(slow_syncing_domain.url, OWNER_EMAIL, OWNER_PASSWORD)
    csv = tmp_path / "digits.csv"
    csv.write_bytes(CSV)
    owner.upload_dataset("digits-a", csv, label="target", tags=["digits"], progress=False)
    owner.join_network(live_network.url, domain_url=slow_syncing_domain.url)
    operator = grid.login_network(live_network.url, OPERATOR_EMAIL, OPERATOR_PASSWORD)
    [association] = operator.associations(status="pending")
    operator.approve(association.id)
    operator.create_account(SCIENTIST, PASSWORD, role="data_scientist")
    # Nudged on approval, the domain learns it and publishes its dataset within the hour.
    scientist = grid.login_network(live_network.url, SCIENTIST, PASSWORD)
    eventually(lambda: scientist.search("digits"), "the domain's dataset in the index", 60)

    _submit(live_network.url, association.domain_id, model_files, "none")
    pending = eventually(
        lambda: [r for r in owner.requests.pending if r.info.kind == "federated"],
        "the invitation filed at the domain",
        60,
    )
    assert len(pending) == 1 and pending[0].info.reason == "a shared model"
