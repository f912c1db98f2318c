"""One domain's sums for an analysis, and what is released from the decrypted total.

`local_sums` runs on a domain's worker next to the data. `release` runs on every domain once
the network has added the encrypted sums: it rounds what must be whole numbers, withholds
small groups, and computes exactly the statistics or model parameters asked for, so nothing
else leaves. Every domain gets the same bytes from the same total, which is what they attest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from grid_common.analytics.plan import (
    CLASSIFIERS,
    REGRESSORS,
    AnalysisPlan,
    AnalyticsError,
    Histogram,
)
from grid_common.analytics.privacy import withheld_cells
from grid_common.canonical import canonical_json

RELEASE_KEY = "grid.analysis"


def local_sums(frame: pd.DataFrame, plan: AnalysisPlan) -> tuple[np.ndarray, int]:
    """The plan's vector of sums over this dataset's complete rows, and how many those are.

    Rows missing any column the plan reads are left out; under differential privacy every
    summed column is clipped to its bounds first.
    """
    missing = [c for c in plan.read_columns if c not in frame.columns]
    if missing:
        raise AnalyticsError(f"the dataset has no column(s) {', '.join(map(repr, missing))}")
    rows = frame[plan.read_columns].dropna()
    features = _clipped(rows, plan.features, plan) if plan.uses_features else np.zeros((0, 0))
    parts: dict[str, np.ndarray] = {"n": np.array([len(rows)])}
    names = {name for name, _ in plan.layout.sections}
    if "sum" in names:
        parts["sum"] = features.sum(axis=0)
    if "sumsq" in names:
        parts["sumsq"] = (features * features).sum(axis=0)
    if "cross" in names:
        parts["cross"] = _upper(features.T @ features)
    for index, histogram in enumerate(plan.histograms):
        values = rows[histogram.column].to_numpy(dtype=np.float64)
        counts, _ = np.histogram(values, bins=histogram.bins, range=(histogram.low, histogram.high))
        parts[f"hist:{index}"] = np.append(counts, len(values) - counts.sum())
    if plan.uses_classes:
        assert plan.classes is not None and plan.label is not None
        index_of = {value: i for i, value in enumerate(plan.classes)}
        try:
            labels = np.array([index_of[v] for v in rows[plan.label].tolist()], dtype=np.int64)
        except KeyError:
            # Never the value itself: it is a private row's label.
            raise AnalyticsError(
                f"the label {plan.label!r} holds a value that is not one of the published classes"
            ) from None
        onehot = np.zeros((len(rows), len(plan.classes)))
        onehot[np.arange(len(rows)), labels] = 1.0
        parts["class_n"] = onehot.sum(axis=0)
        if "class_sum" in names:
            parts["class_sum"] = onehot.T @ features
        if "class_sumsq" in names:
            parts["class_sumsq"] = onehot.T @ (features * features)
    if plan.model in REGRESSORS:
        assert plan.label is not None
        target = _clipped(rows, [plan.label], plan)[:, 0]
        parts["y_sum"] = np.array([target.sum()])
        parts["xy"] = features.T @ target
    return plan.layout.join(parts), len(rows)


def to_wire(plan: AnalysisPlan, sums: np.ndarray) -> np.ndarray:
    """Sums as they travel: each divided by its public power of two (see `slot_scales`)."""
    return sums / plan.slot_scales()


def from_wire(plan: AnalysisPlan, total: np.ndarray) -> np.ndarray:
    """The decrypted total of what travelled, back in the data's own units."""
    return total * plan.slot_scales()


def _clipped(rows: pd.DataFrame, columns: list[str], plan: AnalysisPlan) -> np.ndarray:
    values = rows[columns].to_numpy(dtype=np.float64)
    if plan.dp is not None:
        low, high = np.array([plan.dp.bounds[c] for c in columns]).T
        values = np.clip(values, low, high)
    return values


def _upper(square: np.ndarray) -> np.ndarray:
    return square[np.triu_indices(len(square))]


def _full(upper: np.ndarray, d: int) -> np.ndarray:
    square = np.zeros((d, d))
    square[np.triu_indices(d)] = upper
    return square + np.triu(square, 1).T


# --- what is released ---------------------------------------------------------------------------


@dataclass
class Release:
    """What an analysis releases: named arrays, and what they mean (`info`)."""

    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        """Save as safetensors; the same release always gives the same bytes."""
        from safetensors.numpy import save_file

        # np.require keeps 0-d arrays (a count, an intercept) 0-d; ascontiguousarray would not.
        tensors = {k: np.require(v, np.float64, "C") for k, v in self.tensors.items()}
        save_file(tensors, str(path), metadata={RELEASE_KEY: canonical_json(self.info).decode()})

    @classmethod
    def read(cls, path: Path) -> Release:
        from safetensors import safe_open

        with safe_open(str(path), "np") as handle:
            metadata = handle.metadata() or {}
            if RELEASE_KEY not in metadata:
                raise AnalyticsError(f"{path} is not the release of a federated analysis")
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        return cls(tensors, json.loads(metadata[RELEASE_KEY]))


def release(
    plan: AnalysisPlan, total: np.ndarray, *, min_group_size: int, noise_sigma: float = 0.0
) -> Release:
    """The statistics or model the plan asks for, from the sum of every domain's vector.

    Raises AnalyticsError when nothing may be released: fewer rows than the minimum group
    size, or a classifier with a class that small.
    """
    exact = noise_sigma == 0
    total = np.asarray(total, dtype=np.float64)
    if exact:
        # + 0.0 turns the -0.0 that rounding a tiny negative gives into 0.0.
        total = np.where(plan.whole_numbers(), np.rint(total) + 0.0, total)
    sums = plan.layout.split(total)
    n = float(sums["n"][0])
    if n < max(min_group_size, 1):
        raise AnalyticsError(
            f"the datasets hold fewer complete rows together than the minimum group size "
            f"({min_group_size}) the domains' owners set; nothing is released"
        )
    out = Release(
        info={
            "kind": "model" if plan.model else "statistics",
            "statistics": list(plan.statistics),
            "model": plan.model,
            "params": _params(plan),
            "features": list(plan.features),
            "label": plan.label,
            "min_group_size": min_group_size,
            "dp": None
            if plan.dp is None
            else {"epsilon": plan.dp.epsilon, "delta": plan.dp.delta, "sigma": noise_sigma},
            "withheld": [],
        }
    )
    totals = Totals(sums, n, min_group_size, exact)
    if plan.model is not None:
        _model(plan, totals, out)
    else:
        _statistics(plan, totals, out)
    return out


@dataclass(frozen=True)
class Totals:
    """The decrypted sums by section, the rows behind them, and how they may be released."""

    sums: dict[str, np.ndarray]
    n: float
    min_group_size: int
    exact: bool

    def withheld(self, counts: np.ndarray) -> np.ndarray:
        return withheld_cells(counts, self.min_group_size, exact=self.exact)


def _params(plan: AnalysisPlan) -> dict[str, float]:
    """The estimator's hyperparameters, so the client builds the same estimator."""
    if plan.model == "ridge":
        return {"alpha": plan.alpha}
    if plan.model == "gaussian_nb":
        return {"var_smoothing": plan.var_smoothing}
    return {}


def _moments(plan: AnalysisPlan, sums: dict[str, np.ndarray], n: float) -> dict[str, np.ndarray]:
    """Mean and sample (ddof=1) variance per feature, and the covariance when it was summed."""
    d = len(plan.features)
    found: dict[str, np.ndarray] = {}
    if "sum" not in sums:
        return found
    mean = sums["sum"] / n
    found["mean"] = mean
    if "cross" in sums:
        cross = _full(sums["cross"], d)
        cov = (cross - n * np.outer(mean, mean)) / (n - 1) if n > 1 else np.full((d, d), np.nan)
        # CKKS or DP noise can push a variance that is (nearly) zero below it.
        np.fill_diagonal(cov, np.clip(np.diag(cov), 0, None))
        found["cov"], found["var"] = cov, np.diag(cov).copy()
    elif "sumsq" in sums:
        var = (sums["sumsq"] - n * mean * mean) / (n - 1) if n > 1 else np.full(d, np.nan)
        found["var"] = np.clip(var, 0, None)
    return found


def _statistics(plan: AnalysisPlan, totals: Totals, out: Release) -> None:
    sums, n, min_group_size = totals.sums, totals.n, totals.min_group_size
    moments = _moments(plan, sums, n)
    wanted = set(plan.statistics)
    for name in plan.statistics:
        if name == "count":
            out.tensors["count"] = np.array(n)
        elif name == "sum":
            out.tensors["sum"] = sums["sum"]
        elif name in ("mean", "var", "cov"):
            out.tensors[name] = moments[name]
        elif name == "std":
            out.tensors["std"] = np.sqrt(moments["var"])
        elif name == "corr":
            std = np.sqrt(np.diag(moments["cov"]))
            with np.errstate(divide="ignore", invalid="ignore"):
                out.tensors["corr"] = moments["cov"] / np.outer(std, std)
    names = [s for s in plan.statistics if s.startswith("hist:")]  # in plan.histograms' order
    for index, (name, histogram) in enumerate(zip(names, plan.histograms, strict=True)):
        _histogram(name, index, histogram, totals, out)
    if wanted & {"class_count", "class_mean"}:
        counts = sums["class_n"]
        withheld = totals.withheld(counts)
        out.info["classes"] = plan.classes
        if "class_count" in wanted:
            out.tensors["class_count"] = np.where(withheld, np.nan, counts)
        if "class_mean" in wanted:
            d = len(plan.features)
            with np.errstate(divide="ignore", invalid="ignore"):
                means = sums["class_sum"].reshape(-1, d) / counts[:, None]
            means[withheld | (counts == 0)] = np.nan
            out.tensors["class_mean"] = means
        if withheld.any():
            assert plan.classes is not None
            names = [plan.classes[i] for i in np.where(withheld)[0]]
            out.info["withheld"].append(
                f"classes {names}: fewer than {min_group_size} rows (or withheld with one that is)"
            )


def _histogram(name: str, index: int, histogram: Histogram, totals: Totals, out: Release) -> None:
    cells = totals.sums[f"hist:{index}"]  # the bins, then the rows outside [low, high]
    withheld = totals.withheld(cells)
    shown = np.where(withheld, np.nan, cells)
    out.tensors[name] = shown[:-1]
    out.tensors[f"{name}/outside"] = shown[-1:]
    out.tensors[f"{name}/edges"] = histogram.edges
    if withheld.any():
        out.info["withheld"].append(
            f"{name}: {int(withheld.sum())} cell(s) of fewer than {totals.min_group_size} rows "
            "(or withheld with one that is)"
        )


def _model(plan: AnalysisPlan, totals: Totals, out: Release) -> None:
    sums, n, min_group_size = totals.sums, totals.n, totals.min_group_size
    d = len(plan.features)
    if plan.model in CLASSIFIERS:
        assert plan.classes is not None
        counts = sums["class_n"]
        present = counts > 0 if totals.exact else counts >= min_group_size
        small = [plan.classes[i] for i in np.where(present & (counts < min_group_size))[0]]
        if small:
            raise AnalyticsError(
                f"class(es) {small} have fewer rows than the minimum group size "
                f"({min_group_size}) the domains' owners set; the model is withheld"
            )
        if present.sum() < 2:
            raise AnalyticsError("a classifier needs at least two classes with rows")
        counts = counts[present]
        means = sums["class_sum"].reshape(-1, d)[present] / counts[:, None]
        within = sums["class_sumsq"].reshape(-1, d)[present] - counts[:, None] * means**2
        out.info["classes"] = [c for c, keep in zip(plan.classes, present, strict=True) if keep]
        if plan.model == "gaussian_nb":
            overall = np.clip(sums["sumsq"] / n - (sums["sum"] / n) ** 2, 0, None)
            epsilon = plan.var_smoothing * float(overall.max())
            out.tensors.update(
                class_count_=counts,
                class_prior_=counts / counts.sum(),
                theta_=means,
                var_=np.clip(within / counts[:, None], 0, None) + epsilon,
                epsilon_=np.array(epsilon),
            )
        else:
            k = len(counts)
            std = np.sqrt(np.clip(within.sum(axis=0), 0, None) / (n - k))
            centre = sums["sum"] / n
            m = np.sqrt(1.0 / counts - 1.0 / n)
            spread = std + np.median(std)
            with np.errstate(divide="ignore", invalid="ignore"):
                deviations = (means - centre) / (m[:, None] * spread)
            out.tensors.update(
                centroids_=means,
                within_class_std_dev_=std,
                class_prior_=np.full(k, 1.0 / k),
                deviations_=deviations,
            )
        return
    mean = sums["sum"] / n
    y_mean = float(sums["y_sum"][0]) / n
    gram = _full(sums["cross"], d) - n * np.outer(mean, mean)
    moment = sums["xy"] - n * mean * y_mean
    if plan.model == "ridge":
        coef = np.linalg.solve(gram + plan.alpha * np.eye(d), moment)
    else:
        coef = np.linalg.lstsq(gram, moment, rcond=None)[0]
    out.tensors.update(coef_=coef, intercept_=np.array(y_mean - float(mean @ coef)))
