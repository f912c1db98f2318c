"""A dishonest network swaps a federated job's CKKS keys for its own, to read every update.

The network is the attacker here, so it tampers with its own database: triggers installed
before the job's key dealer deals rewrite what the dealer stores, the moment it stores it.
One attack swaps every sealed secret context for one the network made (sealed to each
domain's X25519 key, as anyone can seal a box to a public key), which on the code before
the fix let the network read every update; the other swaps the public context it sums
with. Either way each domain checks the dealer's signature and box before encrypting: the
job fails naming the dealer, and no update leaves any domain.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from nacl.public import PublicKey, SealedBox
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import Connection

import grid_cli as grid
from domain import federated
from domain.models import AccessRequest, NetworkMembership
from grid_common import he
from grid_common.blobstore import BlobStore
from grid_common.db import db_session
from grid_common.federated_schemas import Invitation, ParticipantState, sign_key_statement
from grid_common.identity import NodeIdentity, b64decode
from tests.e2e.grid import LocalGrid, eventually, start_grid
from tests.network.conftest import network_database_url, network_sqlite_template  # noqa: F401
from tests.worker.live import mlp

pytestmark = pytest.mark.timeout(600)

PLAN = grid.TrainingPlan(
    loss="cross_entropy", optimizer="sgd", lr=0.05, epochs=1, batch_size=32, metrics=["loss"]
)


@pytest.fixture
def local(tmp_path: Path, network_database_url: str) -> Iterator[LocalGrid]:  # noqa: F811
    running = start_grid(tmp_path / "grid", 3, network_database_url=network_database_url)
    yield running
    running.stop()


def _install(db: Connection, table: str, column: str, replacement: str, guard: str) -> None:
    """A trigger that rewrites `column` with `replacement` (SQL over the new row) once set."""
    if db.dialect.name == "sqlite":
        db.execute(
            text(
                f"CREATE TRIGGER swap_{column} AFTER UPDATE OF {column} ON {table} "
                f"WHEN NEW.{column} IS NOT NULL AND NOT ({guard}) BEGIN "
                f"UPDATE {table} SET {column} = {replacement} WHERE id = NEW.id; END"
            )
        )
        return
    db.execute(
        text(
            f"CREATE FUNCTION swap_{column}() RETURNS trigger AS $$ BEGIN "
            f"IF NEW.{column} IS NOT NULL THEN NEW.{column} := {replacement}; END IF; "
            "RETURN NEW; END $$ LANGUAGE plpgsql"
        )
    )
    db.execute(
        text(
            f"CREATE TRIGGER swap_{column} BEFORE UPDATE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION swap_{column}()"
        )
    )


def _attack(local: LocalGrid, database_url: str, target: str) -> None:
    """Make the network's own CKKS keys and have its database swap them in as dealt.

    Each domain's sealed secret context: workers encrypt under the key in their box, so
    this alone lets the network read every update. Or the public context alone: workers do
    not encrypt under it, but it is the key every participant's box must belong to, so a
    swapped one is caught too.
    """
    blobs = BlobStore(local.root / "network" / "blobs")
    keys = he.make_job_keys(he.CkksParams())
    engine = create_engine(database_url)
    with engine.begin() as db:
        if target == "public":
            public, _, _ = blobs.put_bytes(keys.public_context)
            _install(
                db,
                "federated_jobs",
                "public_context_digest",
                f"'{public}'",
                f"NEW.public_context_digest = '{public}'",
            )
        else:
            cases, digests = [], []
            for association_id, encryption_key in db.execute(
                text("SELECT id, encryption_key FROM associations")
            ):
                box = SealedBox(PublicKey(b64decode(encryption_key, length=32)))
                digest, _, _ = blobs.put_bytes(box.encrypt(keys.secret_context))
                cases.append(f"WHEN {association_id} THEN '{digest}'")
                digests.append(f"'{digest}'")
            _install(
                db,
                "federated_participants",
                "sealed_context_digest",
                f"CASE NEW.association_id {' '.join(cases)} END",
                f"NEW.sealed_context_digest IN ({', '.join(digests)})",
            )
    engine.dispose()


def _network_view(database_url: str, job_id: int) -> tuple[str, int]:
    """The dealer's name and how many updates the network received for the job."""
    engine = create_engine(database_url)
    with engine.connect() as db:
        dealer = db.execute(
            text(
                "SELECT a.name FROM federated_jobs j "
                "JOIN federated_participants p ON p.id = j.dealer_id "
                "JOIN associations a ON a.id = p.association_id WHERE j.id = :id"
            ),
            {"id": job_id},
        ).scalar_one()
        updates = db.execute(
            text(
                "SELECT count(*) FROM federated_updates u "
                "JOIN federated_rounds r ON r.id = u.round_id WHERE r.job_id = :id"
            ),
            {"id": job_id},
        ).scalar_one()
    engine.dispose()
    return dealer, updates


@pytest.mark.parametrize("target", ["public", "sealed"])
def test_a_network_that_swaps_the_keys_is_caught_before_any_update_leaves(
    local: LocalGrid,
    network_database_url: str,  # noqa: F811
    target: str,
) -> None:
    _attack(local, network_database_url, target)
    hits = local.scientist.search("digits")
    fl = local.scientist.federated_training(
        mlp(), datasets=hits, plan=PLAN, rounds=2, secure_aggregation="ckks", progress=False
    )
    local.approve_all()
    eventually(
        lambda: fl.refresh().info.status in ("failed", "completed", "cancelled"),
        "the federated job to end",
        300,
    )
    dealer, updates = _network_view(network_database_url, fl.id)
    assert updates == 0, f"the network received {updates} update(s) under its own keys"
    assert fl.info.status == "failed"
    reason = fl.info.failure_reason or ""
    assert f"key dealer {dealer}" in reason and "the network may have swapped keys" in reason
    if target == "public":
        assert f"the key dealer {dealer}'s signature on the CKKS public context" in reason
    else:
        assert f"was not boxed by the key dealer {dealer}" in reason
    # Every domain's own job fails: none of their workers encrypted anything.
    for member in local.members:
        job = eventually(
            lambda m=member: next(
                (j for j in m.owner.jobs if j.info.status in ("failed", "completed")), None
            ),
            f"{member.name}'s part of the job to end",
        )
        assert job.info.status == "failed", f"{member.name}: {job.info.failure_reason}"


# --- the domain's checks, against a network that answers what it likes -----------------------

NETWORK_ID = "0" * 32


class DishonestNetwork(federated.FederatedNetwork):
    """A network as one domain sees it for one job: every answer is the attacker's choice."""

    def __init__(self, invitation: Invitation, answers: dict[str, bytes | dict[str, Any]]) -> None:
        self.url, self.network_id, self.invitation = (
            "http://network.invalid",
            NETWORK_ID,
            invitation,
        )
        self.base = f"/api/v1/fl/jobs/{invitation.network_job_id}"
        self.answers, self.received = answers, []  # type: list[tuple[str, str, Any]]

    def call(self, method: str, path: str, **options: Any) -> requests.Response:
        self.received.append((method, path, options.get("json_body")))
        answer = self.answers.get(path, {})
        response = requests.Response()
        response.status_code = 200
        response._content = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        return response


def _peer(identity: NodeIdentity, name: str, encryption_key: str | None = None) -> dict[str, str]:
    return {
        "domain_id": identity.node_id,
        "name": name,
        "signing_key": identity.signing_public_key,
        "encryption_key": encryption_key or identity.encryption_public_key,
    }


def _invitation(job_id: int, peers: list[dict[str, str]]) -> Invitation:
    return Invitation.model_validate(
        {
            "network_job_id": job_id,
            "network_id": NETWORK_ID,
            "dataset": "digits",
            "requester": "scientist@lab.org",
            "reason": "",
            "plan": {"loss": "cross_entropy", "epochs": 1},
            "rounds": 2,
            "strategy": "fedavg",
            "mu": 0.0,
            "min_domains": len(peers),
            "round_timeout": 60,
            "secure_aggregation": "ckks",
            "ckks": {},
            "participants": [p["name"] for p in peers],
            "participant_keys": peers,
            "model_digest": "0" * 64,
            "weights_digest": "0" * 64,
            "spec_hash": "0" * 64,
            "signature": "not checked here",
        }
    )


def _state(job_id: int, dealer: NodeIdentity | None, **fields: Any) -> dict[str, Any]:
    return {
        "network_job_id": job_id,
        "status": "running",
        "participant_status": "approved",
        "rounds": 2,
        "round": 1,
        "round_open": True,
        "deadline": None,
        "submitted": False,
        "aggregate_round": 0,
        "aggregate_samples": 0,
        "deal_keys": False,
        "keys_ready": True,
        "parameters": 10,
        "slots": 4096,
        "row_scale": 100,
        "secure_aggregation": "ckks",
        "attested": False,
        "result_uploaded": False,
        "failure_reason": None,
        "dealer": dealer.node_id if dealer else None,
        **fields,
    }


def test_a_network_that_introduces_a_known_peer_with_new_keys_gets_the_request_denied(
    app: Flask,
) -> None:
    me, peer, impostor = (NodeIdentity.generate() for _ in range(3))
    app.extensions["identity"] = me
    membership = NetworkMembership(network_id=NETWORK_ID, name="research-net")
    mine = _peer(me, "hospital-a")
    swapped_x25519 = _peer(peer, "hospital-b", impostor.encryption_public_key)
    attempts = {
        # The peer's X25519 key replaced by the network's own.
        2: [mine, swapped_x25519],
        # Another node (the network's) under the peer's name.
        3: [mine, _peer(impostor, "hospital-b")],
        # This domain itself introduced with keys that are not its own.
        4: [_peer(impostor, "hospital-a"), _peer(peer, "hospital-b")],
        5: [_peer(me, "hospital-a", impostor.encryption_public_key), _peer(peer, "hospital-b")],
        # A signing key that does not hash to the node id it comes with.
        6: [mine, {**_peer(peer, "hospital-c"), "signing_key": impostor.signing_public_key}],
    }
    with app.app_context():
        session = db_session()
        federated._file(session, membership, _invitation(1, [mine, _peer(peer, "hospital-b")]))
        for job_id, peers in attempts.items():
            federated._file(session, membership, _invitation(job_id, peers))
        requests_ = session.scalars(select(AccessRequest).order_by(AccessRequest.id)).all()
        reasons = [r.decision_reason or "" for r in requests_]
    assert requests_[0].status == "denied"  # no dataset named digits: but its keys were fine
    assert "no dataset" in reasons[0]
    assert [r.status for r in requests_[1:]] == ["denied"] * 5
    assert "peer 'hospital-b' with other keys than those pinned" in reasons[1]
    assert "peer 'hospital-b' with other keys than those pinned" in reasons[2]
    assert "this domain with keys that are not its own" in reasons[3]
    assert "this domain with keys that are not its own" in reasons[4]
    assert "peer 'hospital-c' with a signing key that is not its node id's" in reasons[5]


def test_a_dealer_refuses_to_seal_the_key_to_an_x25519_key_the_network_swapped(
    app: Flask,
) -> None:
    dealer, peer, attacker = (NodeIdentity.generate() for _ in range(3))
    app.extensions["identity"] = dealer
    invitation = _invitation(7, [_peer(dealer, "hospital-a"), _peer(peer, "hospital-b")])
    holders = [
        {"domain_id": dealer.node_id, "encryption_key": dealer.encryption_public_key},
        {"domain_id": peer.node_id, "encryption_key": attacker.encryption_public_key},
    ]
    state = ParticipantState.model_validate(
        _state(7, dealer, status="key_setup", deal_keys=True, dealer_keys=holders)
    )
    network = DishonestNetwork(invitation, {})
    with app.app_context(), pytest.raises(federated.KeysRefused, match="hospital-b"):
        federated._deal_keys(network, state)
    # Nothing was sealed or handed over; the network was told why.
    assert [(m, p) for m, p, _ in network.received] == [("POST", "/keys/refused")]


@pytest.mark.parametrize("attack", ["unsigned", "other_sender", "replayed_box"])
def test_a_participant_refuses_keys_that_do_not_prove_to_come_from_the_dealer(
    app: Flask, attack: str
) -> None:
    me, dealer, attacker = (NodeIdentity.generate() for _ in range(3))
    app.extensions["identity"] = me
    invitation = _invitation(9, [_peer(dealer, "hospital-a"), _peer(me, "hospital-b")])
    keys, earlier = he.make_job_keys(he.CkksParams()), he.make_job_keys(he.CkksParams())
    signature = sign_key_statement(
        dealer, network_id=NETWORK_ID, network_job_id=9, public_context=keys.public_context
    )
    boxed = he.box_for(dealer.encryption_key, me.encryption_public_key, keys.secret_context)
    if attack == "unsigned":  # the network's own public context, signed by nobody
        signature = sign_key_statement(
            attacker, network_id=NETWORK_ID, network_job_id=9, public_context=keys.public_context
        )
        expected = "the key dealer hospital-a's signature on the CKKS public context"
    elif attack == "other_sender":  # the network's own secret context, boxed by the network
        boxed = he.box_for(
            attacker.encryption_key, me.encryption_public_key, earlier.secret_context
        )
        expected = "was not boxed by the key dealer hospital-a"
    else:  # a box the dealer really made, for another job: not this job's signed key
        boxed = he.box_for(dealer.encryption_key, me.encryption_public_key, earlier.secret_context)
        expected = "does not belong to the public context it signed"
    network = DishonestNetwork(
        invitation,
        {
            "/state": _state(9, dealer, public_context_signature=signature),
            "/keys/public": keys.public_context,
            "/keys/sealed": boxed,
        },
    )
    with app.app_context(), pytest.raises(federated.KeysRefused, match=expected) as refused:
        federated.secret_context(network)
    assert "the network may have swapped keys" in refused.value.message
    reports = [body for method, path, body in network.received if path.endswith("/refused")]
    assert reports and expected in reports[0]["reason"]


def test_keys_the_dealer_signed_and_boxed_are_taken(app: Flask) -> None:
    me, dealer = NodeIdentity.generate(), NodeIdentity.generate()
    app.extensions["identity"] = me
    invitation = _invitation(9, [_peer(dealer, "hospital-a"), _peer(me, "hospital-b")])
    keys = he.make_job_keys(he.CkksParams())
    signature = sign_key_statement(
        dealer, network_id=NETWORK_ID, network_job_id=9, public_context=keys.public_context
    )
    network = DishonestNetwork(
        invitation,
        {
            "/state": _state(9, dealer, public_context_signature=signature),
            "/keys/public": keys.public_context,
            "/keys/sealed": he.box_for(
                dealer.encryption_key, me.encryption_public_key, keys.secret_context
            ),
        },
    )
    with app.app_context():
        assert federated.secret_context(network) == keys.secret_context
