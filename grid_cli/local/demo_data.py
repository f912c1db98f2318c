"""The datasets a local grid is seeded with: digits with label skew, and breast cancer."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_digits

DIGITS_LABEL = "target"
CANCER_LABEL = "diagnosis"
# Dirichlet concentration of the digits split: small enough that each domain sees some
# labels far more than others, as hospitals or clinics would.
LABEL_SKEW = 0.5


@dataclass(frozen=True)
class SeedDataset:
    """One dataset to upload to one domain: its rows and its public description."""

    name: str
    frame: pd.DataFrame
    label: str
    description: str
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DigitsSplit:
    """The digits rows of each domain, and a test set that no domain holds."""

    parts: list[pd.DataFrame]
    x_test: np.ndarray
    y_test: np.ndarray


def digits_split(domains: int, seed: int = 0, *, test_fraction: float = 0.2) -> DigitsSplit:
    """scikit-learn's digits: a held-out test set, the rest split with Dirichlet label skew."""
    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.target))
    test, train = np.split(order, [int(len(order) * test_fraction)])
    frame = pd.DataFrame(digits.data, columns=[f"p{i}" for i in range(64)])
    frame[DIGITS_LABEL] = digits.target
    owners: list[list[int]] = [[] for _ in range(domains)]
    for label in range(10):
        rows = train[digits.target[train] == label]
        shares = rng.dirichlet([LABEL_SKEW] * domains)
        cuts = (np.cumsum(shares)[:-1] * len(rows)).astype(int)
        for domain, part in enumerate(np.split(rows, cuts)):
            owners[domain].extend(part.tolist())
    parts = [frame.iloc[sorted(rows)].reset_index(drop=True) for rows in owners]
    return DigitsSplit(parts, digits.data[test].astype(np.float32), digits.target[test])


def breast_cancer_parts(domains: int, seed: int = 0) -> list[pd.DataFrame]:
    """scikit-learn's breast-cancer table, shuffled and cut into one part per domain."""
    data = load_breast_cancer()
    columns = [name.replace(" ", "_") for name in data.feature_names]
    frame = pd.DataFrame(data.data, columns=columns)
    frame[CANCER_LABEL] = data.target
    order = np.random.default_rng(seed).permutation(len(frame))
    return [frame.iloc[rows].reset_index(drop=True) for rows in np.array_split(order, domains)]


def demo_datasets(domains: int, seed: int = 0) -> list[list[SeedDataset]]:
    """Per domain: its share of digits (label-skewed) and of breast cancer."""
    digits = digits_split(domains, seed).parts
    cancer = breast_cancer_parts(domains, seed)
    return [
        [
            SeedDataset(
                "digits",
                digits[i],
                DIGITS_LABEL,
                "Handwritten digits: 8x8 grayscale pixels p0-p63 (0-16), label 'target' 0-9. "
                "This domain's share of scikit-learn's digits; some labels are far more "
                "common here than elsewhere.",
                ["digits", "images", "demo"],
            ),
            SeedDataset(
                "breast-cancer",
                cancer[i],
                CANCER_LABEL,
                "Breast tumour biopsies: 30 measurements of cell nuclei (Wisconsin), label "
                "'diagnosis': 0 malignant, 1 benign.",
                ["tabular", "medical", "demo"],
            ),
        ]
        for i in range(domains)
    ]
