"""Federated analyses from the data scientist's side: the job, and its release read back as
pandas objects or a fitted scikit-learn estimator."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from grid_cli.client.federated import NetworkJob
from grid_common.analytics.compute import Release
from grid_common.analytics.plan import Histogram, parse_statistic

SUMMARY_ROWS = ("count", "sum", "mean", "var", "std")


@dataclass(frozen=True)
class HistogramCounts:
    """A released histogram: counts per bin (NaN where withheld), and the rows outside it.

    It unpacks like `numpy.histogram`: `counts, edges = analysis["hist:age:0:100:10"]`.
    """

    column: str
    counts: np.ndarray
    edges: np.ndarray
    outside: float

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.counts, self.edges))

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"low": self.edges[:-1], "high": self.edges[1:], "count": self.counts})


class Analysis(dict[str, Any]):
    """Released statistics, by the names they were asked for.

    `count` is a number; `sum`, `mean`, `var` and `std` are Series over the columns; `cov`
    and `corr` DataFrames; `class_count` a Series and `class_mean` a DataFrame over the
    label's classes; each `hist:…` a `HistogramCounts`. Withheld figures are NaN, and
    `withheld` says which and why. Variances are sample variances (ddof=1), like pandas'.
    """

    def __init__(self, release: Release, job_id: int | None = None) -> None:
        super().__init__()
        info, tensors = release.info, release.tensors
        features = list(info["features"])
        classes = pd.Index(info.get("classes") or [], name=info.get("label"))
        self.job_id = job_id
        self.withheld: list[str] = list(info.get("withheld", []))
        self.dp: dict[str, float] | None = info.get("dp")
        for name in info["statistics"]:
            if name == "count":
                count = float(tensors["count"])
                self[name] = int(count) if self.dp is None else count
            elif name in ("sum", "mean", "var", "std"):
                self[name] = pd.Series(tensors[name], index=features, name=name)
            elif name in ("cov", "corr"):
                self[name] = pd.DataFrame(tensors[name], index=features, columns=features)
            elif name == "class_count":
                self[name] = pd.Series(tensors[name], index=classes, name=name)
            elif name == "class_mean":
                self[name] = pd.DataFrame(tensors[name], index=classes, columns=features)
            else:
                histogram = parse_statistic(name)
                assert isinstance(histogram, Histogram)
                self[name] = HistogramCounts(
                    column=histogram.column,
                    counts=tensors[name],
                    edges=tensors[f"{name}/edges"],
                    outside=float(tensors[f"{name}/outside"][0]),
                )

    @property
    def summary(self) -> pd.DataFrame:
        """The per-column figures as one table, like `DataFrame.describe()`: a row for each of
        count, sum, mean, var and std that was asked for, a column for each feature."""
        rows = {name: self[name] for name in SUMMARY_ROWS[1:] if name in self}
        frame = pd.DataFrame(rows).T
        if "count" in self:
            count = pd.DataFrame([[self["count"]] * frame.shape[1]], columns=frame.columns)
            frame = pd.concat([count.set_axis(["count"]), frame])
        return frame

    def __repr__(self) -> str:
        names = ", ".join(self)
        withheld = f", {len(self.withheld)} withheld" if self.withheld else ""
        return f"<Analysis of job {self.job_id}: {names}{withheld}>"


def estimator(release: Release) -> Any:
    """The fitted scikit-learn estimator a model release describes, ready to `predict`."""
    from sklearn.linear_model import LinearRegression, Ridge
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import NearestCentroid

    info, tensors = release.info, release.tensors
    model, params = info["model"], info.get("params", {})
    fitted: Any
    names: tuple[str, ...]
    if model == "gaussian_nb":
        fitted = GaussianNB(**params)
        fitted.epsilon_ = float(tensors["epsilon_"])
        names = ("class_count_", "class_prior_", "theta_", "var_")
    elif model == "nearest_centroid":
        fitted = NearestCentroid()
        names = ("centroids_", "within_class_std_dev_", "class_prior_", "deviations_")
    elif model in ("ridge", "ols"):
        fitted = Ridge(**params) if model == "ridge" else LinearRegression()
        fitted.intercept_ = float(tensors["intercept_"])
        names = ("coef_",)
    else:
        raise ValueError(f"the release describes no model this client knows ({model!r})")
    for name in names:
        setattr(fitted, name, tensors[name])
    if "classes" in info:
        fitted.classes_ = np.asarray(info["classes"])
    features = list(info["features"])
    fitted.n_features_in_ = len(features)
    fitted.feature_names_in_ = np.asarray(features, dtype=object)
    return fitted


class AnalyticsJob(NetworkJob):
    """A federated analysis: statistics or an exact model computed from encrypted sums."""

    running_label = "computing"
    noun = "analysis"

    def release(self) -> Release:
        """The released file, read back (needs the job completed)."""
        with tempfile.TemporaryDirectory(prefix="grid-analysis-") as folder:
            path = self.download_result(Path(folder) / "analysis.safetensors")
            return Release.read(path)

    def result(self) -> Any:
        """An `Analysis` of the statistics asked for, or the fitted scikit-learn estimator."""
        released = self.release()
        if released.info["kind"] == "model":
            return estimator(released)
        return Analysis(released, self.id)
