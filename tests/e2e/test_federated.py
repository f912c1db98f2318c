"""Federated training across real domains, workers and a network, with CKKS and without."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from sklearn.datasets import load_digits
from sqlalchemy import create_engine, text

import grid_cli as grid
from grid_common import he
from grid_common.strategy import draw_sample
from tests.e2e.grid import LocalGrid, eventually, start_grid
from tests.worker.live import mlp

pytestmark = pytest.mark.timeout(600)

PLAN = grid.TrainingPlan(
    loss="cross_entropy",
    optimizer="adam",
    lr=0.01,
    epochs=3,
    batch_size=32,
    validation_split=0.2,
    metrics=["loss", "accuracy"],
)


@pytest.fixture(scope="module")
def three_domains(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGrid]:
    """One grid for the tests of this module that need three domains: each files its own job."""
    local = start_grid(tmp_path_factory.mktemp("grid"), 3)
    yield local
    local.stop()


def _weights(job: grid.FederatedJob, path: Path) -> dict[str, np.ndarray]:
    return load_file(str(job.download_result(path)))


def _accuracy(model: torch.nn.Module) -> float:
    digits = load_digits()
    with torch.no_grad():
        out = model(torch.tensor(digits.data, dtype=torch.float32))
    return float((out.argmax(1).numpy() == digits.target).mean())


def test_ckks_and_plain_aggregation_train_the_same_model(
    three_domains: LocalGrid, tmp_path: Path
) -> None:
    local = three_domains
    hits = local.scientist.search("digits")
    results = {}
    for mode in ("ckks", "none"):
        fl = local.scientist.federated_training(
            mlp(), datasets=hits, plan=PLAN, rounds=3, secure_aggregation=mode, progress=False
        )
        local.approve_all()
        fl.wait(timeout=300, progress=False)
        results[mode] = (fl, _weights(fl, tmp_path / f"{mode}.safetensors"))

    encrypted, plain = results["ckks"][1], results["none"][1]
    assert encrypted.keys() == plain.keys()
    for name in encrypted:
        np.testing.assert_allclose(encrypted[name], plain[name], atol=1e-4)

    fl = results["ckks"][0]
    history = fl.history
    assert [r["round"] for r in history] == [1, 2, 3]
    assert all(sorted(r["domains"]) == ["hospital-a", "hospital-b", "hospital-c"] for r in history)
    assert all(0 <= r["val_accuracy"] <= 1 for r in history)
    assert history[-1]["val_accuracy"] > 0.7
    assert _accuracy(fl.result()) > 0.8
    assert fl.info.result_hash == he_hash(tmp_path / "ckks.safetensors")
    fl.plot(tmp_path / "rounds.png")
    assert (tmp_path / "rounds.png").stat().st_size > 0

    # What the network stored does not open with anything the network holds.
    network_dir = local.root / "network"
    engine = create_engine(f"sqlite:///{network_dir / 'network.db'}")
    with engine.connect() as db:
        context_digest = db.execute(
            text("SELECT public_context_digest FROM federated_jobs WHERE id = :id"), {"id": fl.id}
        ).scalar_one()
        aggregates = db.execute(
            text("SELECT aggregate_digest FROM federated_rounds WHERE job_id = :id"), {"id": fl.id}
        ).scalars()
        stored = [network_dir / "blobs" / d[:2] / d for d in aggregates]
    engine.dispose()
    public = he.load_context(
        (network_dir / "blobs" / context_digest[:2] / context_digest).read_bytes()
    )
    assert not public.is_private()  # type: ignore[attr-defined]
    layout = he.UpdateLayout("ckks", fl.info.parameters, 4096)
    assert len(stored) == 3
    for aggregate in stored:
        with pytest.raises(he.UpdateError, match="decrypt"):
            he.read_update(aggregate, he.CkksCodec(public), layout)


def he_hash(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fedadam_with_sampled_rounds_ends_on_one_model_everywhere(
    three_domains: LocalGrid, tmp_path: Path
) -> None:
    local = three_domains
    hits = local.scientist.search("digits")
    # With DP a round of two may be read: half of three domains, rounded up, trains each round.
    plan = PLAN.model_copy(update={"dp": grid.DifferentialPrivacy(epsilon=8.0, delta=1e-5)})
    fl = local.scientist.federated_training(
        mlp(),
        datasets=hits,
        plan=plan,
        rounds=3,
        strategy="fedadam",
        server_lr=0.05,
        fraction=0.5,
        progress=False,
    )
    local.approve_all()
    fl.wait(timeout=300, progress=False)

    info = fl.refresh().info
    terms = (info.strategy, info.server_lr, info.beta2, info.fraction)
    assert terms == ("fedadam", 0.05, 0.99, 0.5)
    assert info.sample_seed is not None
    # Every round trained on the draw any participant recomputes from the job's seed.
    ids = [p.domain_id for p in info.participants]
    names = {p.domain_id: p.domain for p in info.participants}
    rounds = local.scientist.federated_job_rounds(fl.id).items
    for item in rounds:
        drawn = draw_sample(info.sample_seed, item.number, ids, 0.5, 1)
        assert item.sampled == drawn and len(drawn) == 2
        assert sorted(item.reporters) == sorted(names[d] for d in drawn)
    # The job completes only once every domain attested the same final weights: the
    # optimizer's x, stepped identically on each.
    assert info.status == "completed"
    assert info.result_hash == he_hash(fl.download_result(tmp_path / "adam.safetensors"))
    assert _accuracy(fl.result()) > 0.3  # well above chance (0.1) after 3 noisy rounds


def test_a_domain_dies_mid_round_and_the_network_restarts(tmp_path: Path) -> None:
    # Four domains with a quorum of three: without DP an aggregate needs at least 3 domains.
    local = start_grid(tmp_path, 4)
    try:
        hits = local.scientist.search("digits")
        fl = local.scientist.federated_training(
            mlp(),
            datasets=hits,
            plan=PLAN,
            rounds=4,
            min_domains=3,
            # The timeout only ends round 2, where hospital-d is gone; the other rounds close
            # as soon as every domain has sent. It gives a restarted domain on a busy machine
            # the time to start again, train and send before the last round is over.
            round_timeout=60,
            progress=False,
        )
        local.approve_all()
        eventually(lambda: fl.refresh().info.current_round >= 2, "round 2 to open", 180)

        # hospital-d dies (domain and worker, no goodbye) while round 2 is open.
        late = local.members[3]
        assert late.worker is not None
        late.worker.stop(kill=True)
        late.node.stop(kill=True)
        eventually(lambda: fl.refresh().info.current_round >= 3, "round 2 to close at quorum", 180)
        closed = {r["round"]: r for r in fl.history}
        assert sorted(closed[2]["domains"]) == ["hospital-a", "hospital-b", "hospital-c"]

        # hospital-d comes back: its worker takes the job up again as a second attempt.
        late.node.start()
        late.start_worker()
        eventually(
            lambda: late.owner.job(1).info.attempt >= 2,
            "hospital-d's worker to take the job up",
            180,
        )
        # The network restarts between rounds and picks the job up from its database.
        local.network.stop()
        local.network.start()
        fl.wait(timeout=300, progress=False)
        history = fl.history
        assert [r["round"] for r in history] == [1, 2, 3, 4]
        assert "hospital-d" in history[-1]["domains"], "hospital-d rejoins the later rounds"
        assert _accuracy(fl.result()) > 0.5
    finally:
        local.stop()
