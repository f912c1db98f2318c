"""Federated analytics across real domains, workers and a network: one virtual dataset."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import NearestCentroid
from sqlalchemy import create_engine, text

import grid_cli as grid
from grid_common import he
from grid_common.analytics.compute import Release
from grid_common.schemas import AutoApprovalRule
from tests.e2e.grid import LocalGrid, eventually, start_grid

pytestmark = pytest.mark.timeout(600)

FEATURES = ["p0", "p1", "p2", "dose", "income"]


def shares(count: int = 3, rows: int = 400) -> list[pd.DataFrame]:
    """Integer pixel-like columns, a small-valued dose, large incomes, a skewed 5-class label
    and a regression target, cut into one share per domain."""
    rng = np.random.default_rng(42)
    parts = []
    for index in range(count):
        frame = pd.DataFrame(rng.integers(0, 17, (rows, 3)), columns=["p0", "p1", "p2"])
        frame["dose"] = rng.normal(0.002, 0.0005, rows)
        frame["income"] = rng.lognormal(10, 0.8, rows)
        weights = np.roll([0.5, 0.2, 0.15, 0.1, 0.05], index)  # each domain skews its labels
        frame["target"] = rng.choice(5, rows, p=weights)
        frame["p1"] += 3 * frame["target"]
        frame["y"] = 2 * frame["p0"] - 300 * frame["dose"] + 1e-4 * frame["income"]
        frame["y"] += rng.normal(0, 0.5, rows)
        parts.append(frame)
    return parts


@pytest.fixture(scope="module")
def parts() -> list[pd.DataFrame]:
    return shares()


@pytest.fixture(scope="module")
def pooled(parts: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def local(
    tmp_path_factory: pytest.TempPathFactory, parts: list[pd.DataFrame]
) -> Iterator[LocalGrid]:
    running = start_grid(tmp_path_factory.mktemp("analytics"), 3, parts=parts)
    for member in running.members:
        settings = member.owner.settings
        settings.auto_approval = [AutoApprovalRule(kind="analytics", release_on_completion=True)]
        member.owner.update_settings(settings)
    yield running
    running.stop()


def set_min_group_size(local: LocalGrid, sizes: list[int]) -> None:
    for member, size in zip(local.members, sizes, strict=True):
        settings = member.owner.settings
        settings.min_group_size = size
        member.owner.update_settings(settings)


def close(actual: object, expected: object) -> None:
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=1e-6, atol=1e-9)


def test_statistics_and_exact_models_equal_the_pooled_computation(
    local: LocalGrid, pooled: pd.DataFrame, tmp_path: Path
) -> None:
    set_min_group_size(local, [1, 1, 1])
    net = local.scientist
    hits = net.search("digits")
    assert [h.dataset.schema.label_classes for h in hits] == [[0, 1, 2, 3, 4]] * 3
    stats = ["count", "sum", "mean", "var", "std", "corr", "cov", "class_count", "class_mean"]
    stats += ["hist:p1:0:30:6", "hist:income:0:100000:5"]
    result = net.analyze(hits, stats, columns=FEATURES, timeout=300, progress=False)
    data = pooled[FEATURES]
    assert result["count"] == len(pooled)
    assert result["sum"][["p0", "p1", "p2"]].tolist() == data[["p0", "p1", "p2"]].sum().tolist()
    close(result["sum"], data.sum())
    close(result["mean"], data.mean())
    close(result["var"], data.var())
    close(result["std"], data.std())
    close(result["cov"], data.cov())
    close(result["corr"], data.corr())
    assert result["class_count"].tolist() == pooled.groupby("target").size().tolist()
    close(result["class_mean"], pooled.groupby("target")[FEATURES].mean())
    for name, column, bins, span in [
        ("hist:p1:0:30:6", "p1", 6, (0, 30)),
        ("hist:income:0:100000:5", "income", 5, (0, 100000)),
    ]:
        counts, _ = np.histogram(pooled[column], bins=bins, range=span)
        assert result[name].counts.tolist() == counts.tolist()
    assert result.summary.loc["mean"].tolist() == pytest.approx(data.mean().tolist(), rel=1e-6)

    for model, reference in [
        ("gaussian_nb", GaussianNB()),
        ("nearest_centroid", NearestCentroid()),
    ]:
        fitted = net.fit_exact(model, hits, columns=FEATURES, timeout=300, progress=False)
        reference.fit(data, pooled["target"])
        assert (fitted.predict(data) == reference.predict(data)).mean() > 0.999
        close(fitted.class_prior_, reference.class_prior_)
    for model, reference in [("ridge", Ridge(alpha=2.0)), ("ols", LinearRegression())]:
        fitted = net.fit_exact(
            model, hits, label="y", columns=FEATURES, alpha=2.0, timeout=300, progress=False
        )
        reference.fit(data, pooled["y"])
        close(fitted.coef_, reference.coef_)
        close(fitted.predict(data), reference.predict(data))

    # Each owner approved (by rule) a request that says what it computes, and nothing else.
    for member in local.members:
        filed = [r for r in member.owner.requests if r.info.kind == "analytics"]
        assert len(filed) == 5 and all(r.info.status == "approved" for r in filed)
    # What the network holds opens nothing: public contexts, and sums it cannot decrypt.
    network_dir = local.root / "network"
    engine = create_engine(f"sqlite:///{network_dir / 'network.db'}")
    with engine.connect() as db:
        rows = db.execute(
            text(
                "SELECT j.public_context_digest, r.aggregate_digest, j.parameters "
                "FROM federated_jobs j JOIN federated_rounds r ON r.job_id = j.id "
                "WHERE j.kind = 'analytics'"
            )
        ).all()
    engine.dispose()
    assert len(rows) == 5

    def blob(digest: str) -> Path:
        return network_dir / "blobs" / digest[:2] / digest

    for context_digest, aggregate_digest, parameters in rows:
        public = he.load_context(blob(context_digest).read_bytes())
        assert not public.is_private()  # type: ignore[attr-defined]
        layout = he.UpdateLayout("ckks", parameters, 4096)
        codec = he.CkksCodec(public, he.STATISTICS_HEADROOM_BITS)
        with pytest.raises(he.UpdateError, match="decrypt"):
            he.read_update(blob(aggregate_digest), codec, layout)


def test_small_groups_never_reach_the_data_scientist(
    local: LocalGrid, pooled: pd.DataFrame, tmp_path: Path
) -> None:
    set_min_group_size(local, [5, 60, 5])  # the strictest owner sets the bar for everyone
    net = local.scientist
    hits = net.search("digits")
    job = net.submit_analysis(hits, statistics=["class_count", "hist:p0:0:16:16"])
    job.wait(timeout=300, progress=False)
    released = Release.read(job.download_result(tmp_path / "analysis.safetensors"))
    counts, _ = np.histogram(pooled["p0"], bins=16, range=(0, 16))
    shown = released.tensors["hist:p0:0:16:16"]
    assert np.isnan(shown[counts < 60]).all() and (counts < 60).any()
    assert not (set(shown[~np.isnan(shown)].tolist()) & set(counts[counts < 60].tolist()))
    classes = pooled.groupby("target").size()
    assert np.isnan(released.tensors["class_count"][classes.to_numpy() < 60]).all()
    assert released.info["min_group_size"] == 60 and released.info["withheld"]

    set_min_group_size(local, [5, 5, 100_000])
    with pytest.raises(grid.FederatedJobFailed, match="withheld the result: the datasets hold"):
        net.analyze(hits, ["mean"], timeout=300, progress=False)


def test_a_private_analysis_spends_each_dataset_budget(
    local: LocalGrid, pooled: pd.DataFrame
) -> None:
    set_min_group_size(local, [10, 10, 10])
    for member in local.members:
        member.owner.set_privacy_budget("digits", 3.0)
    net = local.scientist
    hits = net.search("digits")
    dp = {"epsilon": 1.0, "delta": 1e-6, "bounds": {"p0": [0, 16], "p1": [0, 30]}}
    result = net.analyze(
        hits, ["count", "mean"], columns=["p0", "p1"], dp=dp, timeout=300, progress=False
    )
    assert result.dp is not None and result.dp["sigma"] > 0
    assert abs(result["count"] - len(pooled)) < 6 * result.dp["sigma"]
    for member in local.members:
        budget = member.owner.privacy_budget("digits")
        assert [line.spent for line in budget.budgets] == [pytest.approx(1.0)]
    # Without differential privacy, a budgeted dataset's owner must decide: no rule runs it.
    job = net.submit_analysis(hits, statistics=["count"])
    pending = eventually(
        lambda: [r for r in local.members[0].owner.requests.pending if r.info.kind == "analytics"],
        "the request to wait for the owner",
    )
    assert job.refresh().info.status == "pending_approval"
    local.members[0].owner.deny(pending[0].id, "this dataset is only analysed privately")
    with pytest.raises(grid.FederatedJobFailed, match="domains approved and"):
        job.wait(timeout=120, progress=False)
    for member in local.members:
        member.owner.set_privacy_budget("digits", None)


def test_incompatible_datasets_are_refused_before_any_domain_computes(local: LocalGrid) -> None:
    net = local.scientist
    targets = [(member.name, "digits") for member in local.members]
    before = len(net.federated_jobs())
    with pytest.raises(grid.GridError, match="histogram 'weight' does not exist on hospital-a"):
        net.submit_analysis(targets, statistics=["hist:weight:0:1:4"])
    with pytest.raises(grid.AnalyticsError, match="unknown statistic 'median'"):
        net.submit_analysis(net.search("digits"), statistics=["median"])
    assert len(net.federated_jobs()) == before
