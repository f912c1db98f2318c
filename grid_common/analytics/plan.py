"""What a federated analysis computes, and the layout of the sums each domain sends for it.

A plan names statistics (or one exact model), the feature columns, the label and its classes.
From it follows one flat vector of sufficient statistics (row count, sums, sums of squares,
cross products, histogram cells, per-class sums): every domain fills it from its own rows, the
network adds the encrypted vectors, and the released figures follow from the total alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ExactModel = Literal["gaussian_nb", "nearest_centroid", "ridge", "ols"]
EXACT_MODELS: tuple[ExactModel, ...] = ("gaussian_nb", "nearest_centroid", "ridge", "ols")
CLASSIFIERS = frozenset({"gaussian_nb", "nearest_centroid"})
REGRESSORS = frozenset({"ridge", "ols"})
STATISTICS = (
    "count",
    "sum",
    "mean",
    "var",
    "std",
    "cov",
    "corr",
    "class_count",
    "class_mean",
)
CLASS_STATISTICS = frozenset({"class_count", "class_mean"})
HISTOGRAM_FORM = "hist:COLUMN:LOW:HIGH:BINS"
MAX_BINS = 10_000
# The sums a plan may ask each domain for: a covariance over 1,000 columns is half a million.
MAX_VALUES = 1 << 21
ClassValue = int | float | str


class AnalyticsError(ValueError):
    """An analysis that cannot run, or be released, as asked; the message says why and how."""

    @classmethod
    def from_validation(cls, exc: ValidationError) -> AnalyticsError:
        """A request or plan pydantic refused, as one line of what is wrong."""
        return cls("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors()))


def clipped_columns(features: list[str], label: str | None, model: str | None) -> list[str]:
    """The columns differential privacy clips, so needs bounds for: those the sums add up."""
    return [*features, label] if model in REGRESSORS and label is not None else list(features)


@dataclass(frozen=True)
class Histogram:
    """Counts of a column's values in `bins` equal bins over [low, high], as numpy.histogram."""

    column: str
    low: float
    high: float
    bins: int

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(self.low, self.high, self.bins + 1)


def parse_statistic(text: str) -> str | Histogram:
    """A statistic's name, or the histogram `hist:COLUMN:LOW:HIGH:BINS` describes."""
    if text in STATISTICS:
        return text
    if not text.startswith("hist:"):
        raise AnalyticsError(
            f"unknown statistic {text!r}: choose from {', '.join(STATISTICS)} or {HISTOGRAM_FORM}"
        )
    parts = text[len("hist:") :].rsplit(":", 3)
    if len(parts) != 4 or not parts[0]:
        raise AnalyticsError(f"{text!r} is not a histogram: write it as {HISTOGRAM_FORM}")
    column, low_text, high_text, bins_text = parts
    try:
        low, high, bins = float(low_text), float(high_text), int(bins_text)
    except ValueError:
        raise AnalyticsError(
            f"{text!r}: LOW and HIGH must be numbers and BINS a whole number ({HISTOGRAM_FORM})"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise AnalyticsError(f"{text!r}: LOW must be below HIGH, both finite")
    if not 1 <= bins <= MAX_BINS:
        raise AnalyticsError(f"{text!r}: BINS must be between 1 and {MAX_BINS}")
    return Histogram(column, low, high, bins)


class AnalyticsDp(BaseModel):
    """Distributed differential privacy: the budget the analysis spends, and clamping bounds.

    Every column the sums read is clipped to its bounds on the domain first, which bounds what
    one row can change; the Gaussian noise the domains add together is calibrated to that.
    """

    model_config = ConfigDict(extra="forbid")

    epsilon: float = Field(gt=0, le=100)
    delta: float = Field(gt=0, lt=1)
    bounds: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="Per column: [low, high]; values outside are clipped."
    )

    @model_validator(mode="after")
    def _valid_bounds(self) -> AnalyticsDp:
        for column, (low, high) in self.bounds.items():
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(f"the bounds of {column!r} must be finite with low < high")
        return self


@dataclass(frozen=True)
class Layout:
    """The named sections of a plan's vector of sums, in order."""

    sections: tuple[tuple[str, int], ...]

    @property
    def size(self) -> int:
        return sum(length for _, length in self.sections)

    def slices(self) -> dict[str, slice]:
        found, start = {}, 0
        for name, length in self.sections:
            found[name] = slice(start, start + length)
            start += length
        return found

    def split(self, vector: np.ndarray) -> dict[str, np.ndarray]:
        if len(vector) != self.size:
            raise AnalyticsError(f"expected {self.size} sums, got {len(vector)}")
        return {name: vector[part] for name, part in self.slices().items()}

    def join(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        pieces = []
        for name, length in self.sections:
            piece = np.asarray(parts[name], dtype=np.float64).ravel()
            if len(piece) != length:
                raise AnalyticsError(f"section {name!r} holds {len(piece)} values, not {length}")
            pieces.append(piece)
        return np.concatenate(pieces)


class AnalysisPlan(BaseModel):
    """An analysis resolved against its datasets' schemas: what every domain computes.

    The network builds it when the data scientist submits, signs it into every invitation,
    and each domain's worker fills the same layout from it.
    """

    model_config = ConfigDict(extra="forbid")

    statistics: list[str] = Field(default_factory=list, max_length=200)
    model: ExactModel | None = None
    alpha: float = Field(default=1.0, ge=0, description="Ridge's regularization strength.")
    var_smoothing: float = Field(default=1e-9, ge=0, description="Gaussian NB's smoothing.")
    features: list[str] = Field(default_factory=list)
    label: str | None = None
    classes: list[ClassValue] | None = Field(
        default=None, description="The label's classes (union over the datasets), in order."
    )
    integer_columns: list[str] = Field(
        default_factory=list, description="Columns holding whole numbers on every dataset."
    )
    magnitudes: dict[str, int] = Field(
        default_factory=dict,
        description="Per column, the power of two its sums are divided by while they travel "
        "(the largest the datasets published), so every sum has a similar size.",
    )
    dp: AnalyticsDp | None = None

    @model_validator(mode="after")
    def _consistent(self) -> AnalysisPlan:
        if (self.model is None) == (not self.statistics):
            raise ValueError("an analysis asks for statistics or for one exact model, not both")
        histograms = [parse_statistic(s) for s in self.statistics]
        if len(set(histograms)) != len(histograms):
            raise ValueError("a statistic is asked for twice")
        if len(set(self.features)) != len(self.features):
            raise ValueError("a feature column is named twice")
        if self.uses_classes and not self.classes:
            raise ValueError("per-class statistics and classifiers need the label's classes")
        if self.uses_label and self.label is None:
            raise ValueError("this analysis needs a label column")
        if self.uses_features and not self.features:
            raise ValueError("this analysis needs at least one numeric feature column")
        if self.label is not None and self.label in self.features:
            raise ValueError(f"the label {self.label!r} cannot be a feature too")
        if self.layout.size > MAX_VALUES:
            raise ValueError(
                f"the analysis needs {self.layout.size:,} sums per domain, more than "
                f"{MAX_VALUES:,}: ask for fewer columns, classes or bins"
            )
        return self

    @property
    def histograms(self) -> list[Histogram]:
        return [h for h in map(parse_statistic, self.statistics) if isinstance(h, Histogram)]

    @property
    def uses_classes(self) -> bool:
        return bool(CLASS_STATISTICS & set(self.statistics)) or self.model in CLASSIFIERS

    @property
    def uses_label(self) -> bool:
        return self.uses_classes or self.model in REGRESSORS

    @property
    def uses_features(self) -> bool:
        return self.model is not None or any(
            s in STATISTICS and s not in ("count", "class_count") for s in self.statistics
        )

    @property
    def clipped_columns(self) -> list[str]:
        return clipped_columns(self.features, self.label, self.model)

    @property
    def read_columns(self) -> list[str]:
        """Every column the sums read; rows missing any of them are left out."""
        columns = list(self.features) if self.uses_features else []
        if self.uses_label and self.label is not None:
            columns.append(self.label)
        columns += [h.column for h in self.histograms]
        return list(dict.fromkeys(columns))

    @cached_property
    def layout(self) -> Layout:
        wanted, model = set(self.statistics), self.model
        d, k = len(self.features), len(self.classes or [])
        cross = bool(wanted & {"cov", "corr"}) or model in REGRESSORS
        sections: list[tuple[str, int]] = [("n", 1)]
        if wanted & {"sum", "mean", "var", "std", "cov", "corr"} or model is not None:
            sections.append(("sum", d))
        if (wanted & {"var", "std"} or model == "gaussian_nb") and not cross:
            sections.append(("sumsq", d))
        if cross:
            sections.append(("cross", d * (d + 1) // 2))
        sections += [(f"hist:{i}", h.bins + 1) for i, h in enumerate(self.histograms)]
        if self.uses_classes:
            sections.append(("class_n", k))
        if "class_mean" in wanted or model in CLASSIFIERS:
            sections.append(("class_sum", k * d))
        if model in CLASSIFIERS:
            sections.append(("class_sumsq", k * d))
        if model in REGRESSORS:
            sections += [("y_sum", 1), ("xy", d)]
        return Layout(tuple(sections))

    def slot_scales(self) -> np.ndarray:
        """What each sum is divided by while it travels: powers of two, so exactly undone.

        CKKS encodes a frame's values to a precision relative to the largest of them; without
        scaling, a sum of squared incomes would drown a sum of small ratios beside it.
        """
        feature = np.array([2.0 ** self.magnitudes.get(c, 0) for c in self.features])
        label = 2.0 ** self.magnitudes.get(self.label, 0) if self.label is not None else 1.0
        return self._per_sum(feature, np.float64(label), np.float64(1.0))

    def whole_numbers(self) -> np.ndarray:
        """Which sums are whole numbers when exact: counts, and sums (of squares, of products)
        of integer columns. The decrypted total is rounded there, which makes them exact."""
        integers = set(self.integer_columns)
        feature = np.array([c in integers for c in self.features], dtype=bool)
        return self._per_sum(feature, np.bool_(self.label in integers), np.bool_(True))

    def _per_sum(self, feature: np.ndarray, label: np.generic, count: np.generic) -> np.ndarray:
        """One value per sum of the layout, from one per feature and one for the label.

        A sum over columns gets the product of theirs (for booleans: whether all hold);
        counts and histogram cells get `count`.
        """
        d, classes = len(self.features), len(self.classes or [])
        per_section = {
            "sum": feature,
            "sumsq": feature * feature,
            "cross": np.outer(feature, feature)[np.triu_indices(d)],
            "class_sum": np.tile(feature, classes),
            "class_sumsq": np.tile(feature * feature, classes),
            "y_sum": np.array([label]),
            "xy": feature * label,
        }
        return np.concatenate(
            [per_section.get(name, np.full(length, count)) for name, length in self.layout.sections]
        )
