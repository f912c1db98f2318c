"""Federated analyses in plain words for both consoles: what is computed, and what is summed."""

from __future__ import annotations

from dataclasses import dataclass

from grid_common.analytics.plan import AnalysisPlan, Histogram, parse_statistic
from grid_common.analytics.privacy import noise_sigma

_STATISTICS = {
    "count": "the number of rows",
    "sum": "the sum of each feature",
    "mean": "the mean of each feature",
    "var": "the variance of each feature",
    "std": "the standard deviation of each feature",
    "cov": "the covariance matrix of the features",
    "corr": "the correlation matrix of the features",
    "class_count": "the number of rows of each class",
    "class_mean": "the mean of each feature in each class",
}
_MODELS = {
    "gaussian_nb": "a Gaussian naive Bayes classifier",
    "nearest_centroid": "a nearest-centroid classifier",
    "ridge": "a ridge regression",
    "ols": "an ordinary least squares regression",
}
# Each section of the vector of sums, singular and plural.
_SECTIONS = {
    "n": ("row count", "row counts"),
    "sum": ("per-column sum", "per-column sums"),
    "sumsq": ("per-column sum of squares", "per-column sums of squares"),
    "cross": (
        "cross product of columns",
        "cross products of column pairs (squares included)",
    ),
    "class_n": ("per-class count", "per-class counts"),
    "class_sum": ("per-class sum", "per-class sums"),
    "class_sumsq": ("per-class sum of squares", "per-class sums of squares"),
    "y_sum": ("sum of the label", "sums of the label"),
    "xy": ("feature-label cross product", "feature-label cross products"),
}


@dataclass(frozen=True)
class AnalysisSummary:
    """An analysis plan as people read it: what it computes, the sums behind it, its noise."""

    plan: AnalysisPlan
    computes: list[str]
    sums: int
    parts: list[str]
    sigma: float | None
    unbounded: list[str]

    @property
    def bounds(self) -> list[str]:
        """Each clipped column with its bounds, as `column [low, high]`."""
        dp = self.plan.dp
        found = dp.bounds.items() if dp is not None else []
        return [f"{column} [{low:g}, {high:g}]" for column, (low, high) in found]


def summarize(plan: AnalysisPlan) -> AnalysisSummary:
    """What a reviewer or a data scientist reads of an analysis plan."""
    unbounded = _unbounded(plan)
    sigma = noise_sigma(plan) if plan.dp is not None and not unbounded else None
    return AnalysisSummary(
        plan=plan,
        computes=_computes(plan),
        sums=plan.layout.size,
        parts=[_part(plan, name, length) for name, length in plan.layout.sections],
        sigma=sigma,
        unbounded=unbounded,
    )


def _statistic(text: str) -> str:
    """A statistic's name, or a histogram's `hist:COLUMN:LOW:HIGH:BINS`, in words."""
    found = parse_statistic(text)
    if isinstance(found, Histogram):
        return (
            f"a histogram of {found.column}: {found.bins} bins over [{found.low:g}, {found.high:g}]"
        )
    return _STATISTICS[found]


def _computes(plan: AnalysisPlan) -> list[str]:
    if plan.model is None:
        return [_statistic(s) for s in plan.statistics]
    model = _MODELS[plan.model]
    if plan.model == "ridge":
        model += f" (alpha {plan.alpha:g})"
    elif plan.model == "gaussian_nb":
        model += f" (variance smoothing {plan.var_smoothing:g})"
    return [model]


def _part(plan: AnalysisPlan, name: str, length: int) -> str:
    if name.startswith("hist:"):
        histogram = plan.histograms[int(name.removeprefix("hist:"))]
        return (
            f"{length:,} histogram cells of {histogram.column} ({histogram.bins} bins over "
            f"[{histogram.low:g}, {histogram.high:g}] and one for the rows outside)"
        )
    one, many = _SECTIONS[name]
    return f"{length:,} {one if length == 1 else many}"


def _unbounded(plan: AnalysisPlan) -> list[str]:
    """Columns DP needs bounds for that the plan lacks; without them no noise can be sized."""
    if plan.dp is None:
        return []
    return [c for c in plan.clipped_columns if c not in plan.dp.bounds]
