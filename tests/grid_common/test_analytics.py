"""Federated analytics: every statistic and model equals the pooled computation, through CKKS."""

from __future__ import annotations

import hashlib
import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import NearestCentroid

from domain.dataset_files import label_classes, magnitude
from grid_cli.client.analytics import Analysis, estimator
from grid_common import he
from grid_common.analytics.compute import Release, from_wire, local_sums, release, to_wire
from grid_common.analytics.plan import AnalysisPlan, AnalyticsError, parse_statistic
from grid_common.analytics.privacy import (
    gaussian_delta,
    gaussian_sigma,
    l2_sensitivity,
    noise_share,
    withheld_cells,
)
from grid_common.analytics_compatibility import PublishedTarget, resolve_plan
from grid_common.federated_schemas import AnalyticsSpec
from grid_common.schemas import ColumnSchema, DatasetSchema

RTOL = 1e-6


def _schema(frame: pd.DataFrame, label: str | None) -> DatasetSchema:
    """The schema a domain publishes for `frame` (see domain.dataset_files.inspect_dataset)."""
    columns = [
        ColumnSchema(name=c, dtype=str(frame[c].dtype), magnitude=magnitude(frame[c].to_numpy()))
        for c in frame.columns
    ]
    classes = label_classes(frame[label].to_numpy()) if label else None
    return DatasetSchema(format="csv", columns=columns, row_count=len(frame), label_classes=classes)


def published(parts: list[pd.DataFrame], label: str | None = "target") -> list[PublishedTarget]:
    return [
        PublishedTarget(f"domain-{i}", "data", _schema(part, label), label)
        for i, part in enumerate(parts)
    ]


def spec(count: int, **fields: object) -> AnalyticsSpec:
    datasets = [{"domain": f"domain-{i}", "dataset": "data"} for i in range(count)]
    return AnalyticsSpec.model_validate({"datasets": datasets, **fields})


@pytest.fixture(scope="module")
def ckks() -> he.JobKeys:
    return he.make_job_keys(he.CkksParams())


def encrypted_total(
    plan: AnalysisPlan, vectors: list[np.ndarray], keys: he.JobKeys, tmp: Path
) -> np.ndarray:
    """What every domain decrypts, as a worker does it: each domain's sums scaled and
    encrypted, added with the public context alone, decrypted and scaled back."""
    layout = he.UpdateLayout("ckks", plan.layout.size, he.CkksParams().slots)
    secret = he.codec_for("ckks", keys.secret_context, he.STATISTICS_HEADROOM_BITS)
    public = he.codec_for("ckks", keys.public_context, he.STATISTICS_HEADROOM_BITS)
    total = None
    for index, vector in enumerate(vectors):
        update, summed = tmp / f"update-{index}", tmp / f"sum-{index}"
        he.write_update(to_wire(plan, vector), secret, layout, update)
        he.add_updates(total, update, public, layout, summed)
        total = summed
    assert total is not None
    return from_wire(plan, he.read_update(total, secret, layout))


def run(
    plan: AnalysisPlan,
    parts: list[pd.DataFrame],
    keys: he.JobKeys,
    tmp: Path,
    min_group_size: int = 1,
) -> Release:
    vectors = [local_sums(part, plan)[0] for part in parts]
    return release(plan, encrypted_total(plan, vectors, keys, tmp), min_group_size=min_group_size)


@pytest.fixture(scope="module")
def measurements() -> pd.DataFrame:
    """Float columns of very different scales, an integer column and a 4-class label."""
    rng = np.random.default_rng(7)
    rows = 3000
    frame = pd.DataFrame(
        {
            "age": rng.normal(50, 12, rows),
            "income": rng.lognormal(10, 1, rows),
            "ratio": rng.normal(0.001, 0.0002, rows),
            "visits": rng.poisson(4, rows),
        }
    )
    frame["target"] = rng.integers(0, 4, rows)
    frame.loc[frame["target"] == 2, "age"] += 15
    return frame


def split(frame: pd.DataFrame, count: int = 3) -> list[pd.DataFrame]:
    """Label-skewed shares: rows sorted by label, then cut unevenly."""
    ordered = frame.sort_values("target", kind="stable").reset_index(drop=True)
    cuts = np.linspace(0, len(ordered), count + 1).astype(int)
    cuts[1] += 211  # uneven shares
    return [ordered.iloc[a:b].reset_index(drop=True) for a, b in itertools.pairwise(cuts)]


def close(actual: object, expected: object) -> None:
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=RTOL, atol=1e-9)


def test_every_statistic_equals_numpy_on_the_pooled_rows(
    measurements: pd.DataFrame, ckks: he.JobKeys, tmp_path: Path
) -> None:
    parts = split(measurements)
    stats = [
        "count",
        "sum",
        "mean",
        "var",
        "std",
        "cov",
        "corr",
        "class_count",
        "class_mean",
        "hist:age:0:100:10",
        "hist:visits:0:12:6",
    ]
    plan = resolve_plan(spec(3, statistics=stats), published(parts))
    result = Analysis(run(plan, parts, ckks, tmp_path))
    features = ["age", "income", "ratio", "visits"]
    pooled = measurements[features]
    assert plan.features == features
    assert result["count"] == len(measurements)
    close(result["sum"], pooled.sum())
    close(result["mean"], pooled.mean())
    close(result["var"], pooled.var(ddof=1))
    close(result["std"], pooled.std(ddof=1))
    close(result["cov"], pooled.cov())
    close(result["corr"], pooled.corr())
    by_class = measurements.groupby("target")
    assert result["class_count"].tolist() == by_class.size().tolist()
    close(result["class_mean"], by_class[features].mean())
    for name, column, bins, edges in [
        ("hist:age:0:100:10", "age", 10, (0, 100)),
        ("hist:visits:0:12:6", "visits", 6, (0, 12)),
    ]:
        counts, expected_edges = np.histogram(measurements[column], bins=bins, range=edges)
        got_counts, got_edges = result[name]
        assert got_counts.tolist() == counts.tolist()
        close(got_edges, expected_edges)
        assert result[name].outside == len(measurements) - counts.sum()
    assert result.withheld == []


def test_integer_data_gives_exact_counts_and_sums(ckks: he.JobKeys, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.integers(0, 17, (1797, 5)), columns=[f"p{i}" for i in range(5)])
    frame["target"] = rng.integers(0, 10, len(frame))
    parts = split(frame)
    stats = ["count", "sum", "mean", "var", "class_count", "hist:p1:0:16:8"]
    plan = resolve_plan(spec(3, statistics=stats), published(parts))
    assert set(plan.integer_columns) >= {"p0", "p1", "p4"}
    result = Analysis(run(plan, parts, ckks, tmp_path))
    features = frame.drop(columns="target")
    assert result["count"] == 1797
    assert result["sum"].tolist() == features.sum().astype(float).tolist()
    assert result["class_count"].tolist() == frame.groupby("target").size().tolist()
    counts, _ = np.histogram(frame["p1"], bins=8, range=(0, 16))
    assert result["hist:p1:0:16:8"].counts.tolist() == counts.tolist()
    np.testing.assert_allclose(result["mean"], features.mean(), rtol=1e-14)
    np.testing.assert_allclose(result["var"], features.var(), rtol=1e-12)


@pytest.mark.parametrize(
    ("model", "make", "options"),
    [
        ("gaussian_nb", GaussianNB, {}),
        ("nearest_centroid", NearestCentroid, {}),
        ("ridge", lambda: Ridge(alpha=3.0), {"alpha": 3.0, "label": "y"}),
        ("ols", LinearRegression, {"label": "y"}),
    ],
)
def test_exact_models_equal_scikit_learn_on_the_pooled_rows(
    measurements: pd.DataFrame,
    ckks: he.JobKeys,
    tmp_path: Path,
    model: str,
    make: object,
    options: dict[str, object],
) -> None:
    frame = measurements.copy()
    frame["y"] = 3 * frame["age"] - 2e-4 * frame["income"] + 0.5 * frame["visits"]
    frame["y"] += np.random.default_rng(1).normal(0, 1, len(frame))
    regression = "label" in options
    columns = ["age", "income", "ratio", "visits"]
    parts = split(frame)
    request = spec(3, model=model, columns=columns, **options)
    plan = resolve_plan(request, published(parts, "y" if regression else "target"))
    released = run(plan, parts, ckks, tmp_path)
    released.write(tmp_path / "release.safetensors")
    fitted = estimator(Release.read(tmp_path / "release.safetensors"))
    reference = make().fit(frame[columns], frame["y" if regression else "target"])  # type: ignore[operator]
    attributes = (
        ["coef_", "intercept_"]
        if regression
        else [name for name in released.tensors if name.endswith("_")] + ["classes_"]
    )
    for name in attributes:
        np.testing.assert_allclose(
            getattr(fitted, name), getattr(reference, name), rtol=RTOL, err_msg=name
        )
    predicted, expected = fitted.predict(frame[columns]), reference.predict(frame[columns])
    if regression:
        np.testing.assert_allclose(predicted, expected, rtol=RTOL)
    else:
        assert (predicted == expected).mean() > 0.999
        assert fitted.score(frame[columns], frame["target"]) == pytest.approx(
            reference.score(frame[columns], frame["target"]), abs=1e-3
        )


def test_the_same_total_releases_the_same_bytes(
    measurements: pd.DataFrame, ckks: he.JobKeys, tmp_path: Path
) -> None:
    """Every domain decrypts the same sums and must attest the same hash."""
    parts = split(measurements)
    plan = resolve_plan(spec(3, statistics=["mean", "corr", "hist:age:0:100:5"]), published(parts))
    total = encrypted_total(plan, [local_sums(p, plan)[0] for p in parts], ckks, tmp_path)
    digests = set()
    for attempt in range(2):
        path = tmp_path / f"release-{attempt}.safetensors"
        release(plan, total.copy(), min_group_size=5).write(path)
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
    assert len(digests) == 1


# --- disclosure control --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "withheld"),
    [
        ([50, 40, 30], [False, False, False]),
        ([50, 3, 30], [False, True, True]),  # one small cell takes the next smallest with it
        ([50, 3, 4, 30], [False, True, True, False]),  # two small cells protect each other
        ([50, 0, 30], [False, False, False]),  # nobody is no one's secret
        ([3, 0, 0], [True, False, False]),  # nothing else to withhold with it
        ([9, 10, 0, 40], [True, True, False, False]),
    ],
)
def test_withheld_cells(counts: list[int], withheld: list[bool]) -> None:
    assert withheld_cells(np.array(counts), 10, exact=True).tolist() == withheld


def test_small_histogram_cells_and_classes_never_reach_the_data_scientist(
    ckks: he.JobKeys, tmp_path: Path
) -> None:
    frame = pd.DataFrame({"x": [1.0] * 40 + [5.0] * 3 + [9.0] * 25, "target": [0] * 66 + [1] * 2})
    parts = [frame.iloc[:30], frame.iloc[30:]]
    stats = ["class_count", "class_mean", "hist:x:0:10:5"]
    plan = resolve_plan(spec(2, statistics=stats), published(parts))
    released = run(plan, parts, ckks, tmp_path, min_group_size=10)
    # The bin of the three 5.0s is withheld, and the 25 nines' bin with it, else 68 - 40 - 25
    # would give it away; the empty bins stay.
    counts = released.tensors["hist:x:0:10:5"]
    assert counts[0] == 40 and np.isnan(counts[2]) and np.isnan(counts[4])
    assert counts[1] == 0 and counts[3] == 0
    assert np.isnan(released.tensors["class_count"]).all()  # class 1 has 2 rows, class 0 with it
    assert np.isnan(released.tensors["class_mean"]).all()
    assert len(released.info["withheld"]) == 2


def test_nothing_is_released_below_the_minimum_group_size(ckks: he.JobKeys, tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": np.arange(8.0), "target": [0, 1] * 4})
    parts = [frame.iloc[:4], frame.iloc[4:]]
    plan = resolve_plan(spec(2, statistics=["mean"]), published(parts))
    with pytest.raises(AnalyticsError, match="fewer complete rows together than the minimum"):
        run(plan, parts, ckks, tmp_path, min_group_size=10)
    classifier = resolve_plan(spec(2, model="gaussian_nb"), published(parts))
    with pytest.raises(AnalyticsError, match=r"class\(es\) \[0, 1\] have fewer rows"):
        run(classifier, parts, ckks, tmp_path, min_group_size=5)


def test_rows_missing_a_read_column_are_left_out(ckks: he.JobKeys, tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, np.nan, 4.0, 5.0], "b": [1.0, np.nan, 3.0, 4.0, 6.0]})
    plan = resolve_plan(spec(1, statistics=["count", "mean"]), published([frame], None))
    result = Analysis(run(plan, [frame], ckks, tmp_path))
    complete = frame.dropna()
    assert result["count"] == len(complete)
    close(result["mean"], complete.mean())


# --- differential privacy ---------------------------------------------------------------------


@pytest.mark.parametrize(("epsilon", "delta"), [(0.1, 1e-6), (1.0, 1e-5), (8.0, 1e-9)])
def test_gaussian_sigma_is_the_smallest_that_meets_delta(epsilon: float, delta: float) -> None:
    sigma = gaussian_sigma(epsilon, delta, sensitivity=2.0)
    assert gaussian_delta(sigma, epsilon, 2.0) <= delta
    assert gaussian_delta(sigma * (1 - 1e-6), epsilon, 2.0) > delta
    if epsilon < 1:  # the classic bound holds there, and the analytic one is tighter
        assert sigma < 2.0 * math.sqrt(2 * math.log(1.25 / delta)) / epsilon


def test_the_domains_shares_add_up_to_the_documented_noise() -> None:
    """Over many runs, the sum of t domains' shares has standard deviation sigma."""
    sigma, shares, runs = 3.7, 4, 20_000
    rng = np.random.default_rng(11)
    totals = sum(noise_share(runs, sigma, shares, rng) for _ in range(shares))
    variance = float(np.var(totals, ddof=1))
    # A 99.9% interval of the sample variance of `runs` normal draws (chi-square, normal approx).
    spread = 3.29 * math.sqrt(2 / (runs - 1))
    assert sigma**2 * (1 - spread) < variance < sigma**2 * (1 + spread)
    assert abs(float(np.mean(totals))) < 3.29 * sigma / math.sqrt(runs)


def test_sensitivity_bounds_what_one_row_changes() -> None:
    bounds = {"a": (-2.0, 3.0), "b": (0.0, 10.0)}
    stats = ["count", "var", "cov", "class_mean", "hist:a:-2:3:5"]
    frame = pd.DataFrame({"a": [0.5, 1.0], "b": [2.0, 3.0], "target": [0, 1]})
    plan = resolve_plan(
        spec(1, statistics=stats, dp={"epsilon": 1, "delta": 1e-6, "bounds": bounds}),
        published([frame]),
    )
    before, _ = local_sums(frame, plan)
    rng = np.random.default_rng(0)
    sensitivity = l2_sensitivity(plan)
    extremes = [{"a": 3.0, "b": 10.0, "target": 1}]  # the largest row there can be (|a|=3)
    extremes += [
        {"a": rng.uniform(-9, 9), "b": rng.uniform(-20, 20), "target": int(rng.integers(0, 2))}
        for _ in range(50)
    ]
    for row in extremes:
        after, _ = local_sums(pd.concat([frame, pd.DataFrame([row])]), plan)
        assert np.linalg.norm(after - before) <= sensitivity * (1 + 1e-12)
    after, _ = local_sums(pd.concat([frame, pd.DataFrame(extremes[:1])]), plan)
    assert np.linalg.norm(after - before) == pytest.approx(sensitivity)


def test_a_private_release_carries_its_noise(ckks: he.JobKeys, tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": np.linspace(0, 1, 500), "target": [0, 1] * 250})
    dp = {"epsilon": 1.0, "delta": 1e-6, "bounds": {"a": (0.0, 1.0)}}
    plan = resolve_plan(spec(1, statistics=["count", "mean"], dp=dp), published([frame]))
    exact, _ = local_sums(frame, plan)
    sigma = gaussian_sigma(1.0, 1e-6, l2_sensitivity(plan))
    noisy = exact + noise_share(len(exact), sigma, 1, np.random.default_rng(5))
    released = release(plan, noisy, min_group_size=10, noise_sigma=sigma)
    assert released.info["dp"] == {"epsilon": 1.0, "delta": 1e-6, "sigma": sigma}
    assert float(released.tensors["count"]) != 500  # noisy, and not rounded
    assert abs(float(released.tensors["count"]) - 500) < 6 * sigma


# --- what is asked, checked before any domain computes ------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("median", "unknown statistic 'median'"),
        ("hist:age", "not a histogram"),
        ("hist:age:zero:1:4", "must be numbers"),
        ("hist:age:5:1:4", "LOW must be below HIGH"),
        ("hist:age:0:inf:4", "LOW must be below HIGH"),
        ("hist:age:0:1:0", "BINS must be between 1"),
    ],
)
def test_malformed_statistics_are_refused(text: str, message: str) -> None:
    with pytest.raises(AnalyticsError, match=message):
        parse_statistic(text)
    with pytest.raises(ValueError, match=message):
        spec(1, statistics=[text])


def test_histogram_columns_may_hold_colons() -> None:
    assert parse_statistic("hist:time:h:0:24:6").column == "time:h"  # type: ignore[union-attr]


def test_layout_sends_only_the_sums_the_statistics_need() -> None:
    def sections(**fields: object) -> list[str]:
        plan = AnalysisPlan.model_validate(
            {"features": ["a", "b"], "label": "y", "classes": [0, 1], **fields}
        )
        return [name for name, _ in plan.layout.sections]

    assert sections(statistics=["count"]) == ["n"]
    assert sections(statistics=["mean", "std"]) == ["n", "sum", "sumsq"]
    assert sections(statistics=["var", "corr"]) == ["n", "sum", "cross"]
    assert sections(statistics=["class_count"]) == ["n", "class_n"]
    assert sections(model="ridge") == ["n", "sum", "cross", "y_sum", "xy"]
    assert sections(model="nearest_centroid") == ["n", "sum", "class_n", "class_sum", "class_sumsq"]


def _frame(**columns: list[object]) -> pd.DataFrame:
    return pd.DataFrame(columns)


@pytest.mark.parametrize(
    ("frames", "fields", "message"),
    [
        (
            [_frame(a=[1.0], b=[2.0]), _frame(a=[1.0])],
            {"statistics": ["mean"]},
            "domain-1/data lacks the numeric column(s) 'b'",
        ),
        (
            [_frame(a=[1.0]), _frame(a=[1])],
            {"statistics": ["mean"]},
            "column 'a' has different dtypes: float64 on domain-0/data, int64 on domain-1/data",
        ),
        (
            [_frame(a=[1.0], b=["x"])],
            {"statistics": ["mean"], "columns": ["a", "b"]},
            "column 'b' on domain-0/data holds",
        ),
        (
            [_frame(a=[1.0]), _frame(a=[2.0])],
            {"statistics": ["hist:zz:0:1:2"]},
            "histogram 'zz' does not exist on domain-0/data, domain-1/data",
        ),
        (
            [_frame(a=[1.0], target=[1]), _frame(a=[1.0], target=["x"])],
            {"statistics": ["class_count"]},
            "the classes of 'target' differ in kind: numbers on domain-0/data, text",
        ),
        (
            [_frame(a=[1.0])],
            {"statistics": ["mean"], "dp": {"epsilon": 1, "delta": 1e-6}},
            "differential privacy needs bounds for 'a'",
        ),
        (
            [_frame(a=[1.0])],
            {
                "statistics": ["mean"],
                "dp": {"epsilon": 1, "delta": 1e-6, "bounds": {"a": [0, 1], "q": [0, 1]}},
            },
            "bounds name column(s) the analysis does not sum: 'q'",
        ),
    ],
)
def test_incompatible_datasets_are_refused_naming_each_difference(
    frames: list[pd.DataFrame], fields: dict[str, object], message: str
) -> None:
    label = "target" if any("target" in f.columns for f in frames) else None
    targets = [
        PublishedTarget(
            f"domain-{i}", "data", _schema(frame, label if "target" in frame else None), label
        )
        for i, frame in enumerate(frames)
    ]
    with pytest.raises(AnalyticsError, match=None) as raised:
        resolve_plan(spec(len(frames), **fields), targets)
    assert message in str(raised.value)


def test_a_label_without_published_classes_is_refused() -> None:
    frame = _frame(a=[1.0, 2.0], target=[0, 1])
    schema = _schema(frame, None)  # uploaded without naming its label: no classes published
    target = PublishedTarget("domain-0", "data", schema, "target")
    with pytest.raises(AnalyticsError, match="publishes no classes for 'target'"):
        resolve_plan(spec(1, model="gaussian_nb"), [target])


def test_different_labels_need_one_named() -> None:
    first, second = _frame(a=[1.0], y=[1]), _frame(a=[1.0], z=[1])
    targets = [
        PublishedTarget("domain-0", "data", _schema(first, "y"), "y"),
        PublishedTarget("domain-1", "data", _schema(second, "z"), "z"),
    ]
    with pytest.raises(AnalyticsError, match="pass label=: the datasets publish different"):
        resolve_plan(spec(2, model="ridge"), targets)


def test_label_classes_are_the_union_over_the_datasets() -> None:
    parts = [_frame(a=[1.0, 2.0], target=[0, 1]), _frame(a=[1.0, 2.0], target=[1, 2])]
    plan = resolve_plan(spec(2, statistics=["class_count"]), published(parts))
    assert plan.classes == [0, 1, 2]
