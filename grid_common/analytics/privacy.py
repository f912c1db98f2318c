"""Disclosure control for federated analytics: small groups withheld, distributed Gaussian noise.

Minimum group size: a count, mean or histogram cell of fewer rows than the owners' minimum is
withheld, and when only one cell of a set that adds up to a released total would be withheld,
the next smallest is too, so the first cannot be recovered by subtraction.

Differential privacy: every column the sums read is clipped to the data scientist's bounds,
which bounds how far one row moves the vector of sums (its L2 sensitivity). The analytic
Gaussian mechanism (Balle & Wang, 2018) gives the noise that (epsilon, delta) needs; each of
the `t` domains a round needs adds a share of variance sigma^2 / t before encrypting, so the
sum carries at least the whole noise and no single domain's share can be removed from it.
When fewer than 3 domains may make up the sum, each adds the whole noise instead: a peer that
subtracts its own sums and noise from the total still finds the other's sums fully noised.
"""

from __future__ import annotations

import math

import numpy as np

from grid_common.analytics.plan import AnalysisPlan
from grid_common.contributors import MIN_CONTRIBUTORS


def l2_sensitivity(plan: AnalysisPlan) -> float:
    """The most one row, added or removed, changes the plan's vector of sums (L2 norm).

    With every feature clipped to [low, high] (b = max |bound|), a row adds 1 to the count,
    x to each sum, x^2 to each sum of squares, x_i x_j to each cross product, 1 to one cell
    of each histogram, and the same to the one block of its class.
    """
    assert plan.dp is not None
    b2 = np.array([max(abs(lo), abs(hi)) ** 2 for lo, hi in _bounds(plan, plan.features)])
    y2 = max(abs(v) for v in plan.dp.bounds[plan.label]) ** 2 if plan.label in plan.dp.bounds else 0
    per_section = {
        "n": 1.0,
        "sum": float(b2.sum()),
        "sumsq": float((b2**2).sum()),
        # sum over i <= j of b_i^2 b_j^2
        "cross": float((b2.sum() ** 2 + (b2**2).sum()) / 2),
        "class_n": 1.0,
        "class_sum": float(b2.sum()),
        "class_sumsq": float((b2**2).sum()),
        "y_sum": float(y2),
        "xy": float(y2 * b2.sum()),
    }
    total = sum(
        1.0 if name.startswith("hist:") else per_section[name] for name, _ in plan.layout.sections
    )
    return math.sqrt(total)


def _bounds(plan: AnalysisPlan, columns: list[str]) -> list[tuple[float, float]]:
    assert plan.dp is not None
    return [plan.dp.bounds[c] for c in columns]


def _normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


def gaussian_delta(sigma: float, epsilon: float, sensitivity: float) -> float:
    """The delta at which Gaussian noise of `sigma` gives `epsilon`-DP (Balle & Wang, Thm 8)."""
    a = sensitivity / (2 * sigma)
    b = epsilon * sigma / sensitivity
    upper = _normal_cdf(a - b)
    # e^epsilon * Phi(-a - b) in logs: e^epsilon alone overflows for large epsilon.
    tail = _normal_cdf(-a - b)
    lower = math.exp(epsilon + math.log(tail)) if tail > 0 else 0.0
    return max(upper - lower, 0.0)


def gaussian_sigma(epsilon: float, delta: float, sensitivity: float) -> float:
    """The smallest noise scale that makes the Gaussian mechanism (epsilon, delta)-DP."""
    if sensitivity <= 0:
        return 0.0
    low, high = sensitivity * 1e-6, sensitivity
    while gaussian_delta(high, epsilon, sensitivity) > delta:
        low, high = high, high * 2
    for _ in range(200):  # bisection down to float precision; delta falls as sigma grows
        middle = (low + high) / 2
        if gaussian_delta(middle, epsilon, sensitivity) > delta:
            low = middle
        else:
            high = middle
        if high - low <= high * 1e-12:
            break
    return high


def noise_sigma(plan: AnalysisPlan) -> float:
    """The standard deviation of the noise the released sums carry (0 without DP)."""
    if plan.dp is None:
        return 0.0
    return gaussian_sigma(plan.dp.epsilon, plan.dp.delta, l2_sensitivity(plan))


def noise_shares(min_domains: int) -> int:
    """Into how many shares the noise is split: the quorum, when every sum holds at least 3
    domains; else 1, so each domain's sums are differentially private on their own."""
    return min_domains if min_domains >= MIN_CONTRIBUTORS else 1


def noise_share(
    size: int, sigma: float, shares: int, rng: np.random.Generator | None = None
) -> np.ndarray:
    """One domain's part of the noise: N(0, sigma^2 / shares) per sum, from the OS's entropy."""
    generator = rng if rng is not None else np.random.default_rng()
    return generator.normal(0.0, sigma / math.sqrt(shares), size)


def withheld_cells(counts: np.ndarray, min_group_size: int, *, exact: bool) -> np.ndarray:
    """Which cells of counts that add up to a released total to withhold (a boolean mask).

    A cell under the minimum is withheld (an exact zero stands for nobody and is kept); if
    that leaves exactly one withheld, the smallest other non-empty cell goes with it.
    """
    values = np.asarray(counts, dtype=np.float64)
    withheld = values < min_group_size
    if exact:
        withheld &= values != 0
    if withheld.sum() == 1:
        others = np.where(~withheld & (values != 0))[0]
        if len(others):
            withheld[others[np.argmin(values[others])]] = True
    return withheld
