"""Check an analysis against its datasets' published schemas, and resolve it into a plan.

Everything is checked before any domain computes anything: the statistics, the columns they
read (present on every dataset, numeric, of one dtype), the label and its classes, the bounds
differential privacy needs. Every difference is listed, naming the domain and the dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError

from grid_common.analytics.plan import (
    REGRESSORS,
    AnalysisPlan,
    AnalyticsError,
    ClassValue,
    Histogram,
    clipped_columns,
    parse_statistic,
)
from grid_common.federated_schemas import AnalyticsSpec
from grid_common.schemas import ColumnSchema, DatasetSchema


@dataclass(frozen=True)
class PublishedTarget:
    """One dataset of an analysis as its domain published it."""

    domain: str
    dataset: str
    schema: DatasetSchema
    label: str | None

    @property
    def where(self) -> str:
        return f"{self.domain}/{self.dataset}"

    def column(self, name: str) -> ColumnSchema | None:
        return next((c for c in self.schema.columns if c.name == name), None)


def is_numeric(column: ColumnSchema) -> bool:
    """Whether a column holds one number per row (bools count as 0 and 1)."""
    if column.shape:
        return False
    try:
        return np.dtype(column.dtype).kind in "biuf"
    except TypeError:
        return False


def _whole(column: ColumnSchema) -> bool:
    return np.dtype(column.dtype).kind in "biu"


def resolve_plan(spec: AnalyticsSpec, targets: Sequence[PublishedTarget]) -> AnalysisPlan:
    """The plan every domain runs, or AnalyticsError listing what does not fit."""
    if not targets:
        raise AnalyticsError("an analysis needs at least one dataset")
    problems: list[str] = []
    histograms = [h for h in map(parse_statistic, spec.statistics) if isinstance(h, Histogram)]
    probe = AnalysisPlan.model_construct(statistics=spec.statistics, model=spec.model)
    label = _label(spec, targets, probe.uses_label, problems)
    features = _features(spec, targets, label, problems) if probe.uses_features else []
    for histogram in histograms:
        _check_column(histogram.column, targets, problems, f"histogram {histogram.column!r}")
    classes = None
    if label is not None and spec.model in REGRESSORS:
        _check_column(label, targets, problems, f"label {label!r}")
    elif label is not None and probe.uses_classes:
        classes = _classes(label, targets, problems)
    if spec.dp is not None:
        _check_bounds(spec, features, label, problems)
    if problems:
        raise AnalyticsError("The datasets do not fit this analysis: " + "; ".join(problems))
    read = [*features, *([label] if label else []), *(h.column for h in histograms)]
    integers = [
        name
        for name in dict.fromkeys(read)
        if all(_whole(c) for t in targets if (c := t.column(name)) is not None)
    ]
    magnitudes = {
        name: max(published)
        for name in dict.fromkeys(read)
        if (
            published := [
                c.magnitude for t in targets if (c := t.column(name)) and c.magnitude is not None
            ]
        )
    }
    try:
        return AnalysisPlan(
            statistics=spec.statistics,
            model=spec.model,
            alpha=spec.alpha,
            var_smoothing=spec.var_smoothing,
            features=features,
            label=label if probe.uses_label else None,
            classes=classes,
            integer_columns=integers,
            magnitudes=magnitudes,
            dp=spec.dp,
        )
    except ValidationError as exc:
        raise AnalyticsError.from_validation(exc) from None


def _label(
    spec: AnalyticsSpec, targets: Sequence[PublishedTarget], needed: bool, problems: list[str]
) -> str | None:
    if spec.label is not None:
        return spec.label
    if not needed:
        return None
    published = {t.where: t.label for t in targets}
    names = set(published.values())
    if len(names) == 1 and None not in names:
        return names.pop()
    listed = ", ".join(f"{where}: {name!r}" for where, name in published.items())
    problems.append(f"pass label=: the datasets publish different label columns ({listed})")
    return None


def _features(
    spec: AnalyticsSpec, targets: Sequence[PublishedTarget], label: str | None, problems: list[str]
) -> list[str]:
    if spec.columns is not None:
        if len(set(spec.columns)) != len(spec.columns):
            problems.append("a column is named twice in columns=")
        if label is not None and label in spec.columns:
            problems.append(f"the label {label!r} cannot be one of the feature columns too")
        features = list(dict.fromkeys(spec.columns))
    else:
        # Every numeric column but the label (named, or published); every dataset must have
        # the same ones.
        labels = {label, *(t.label for t in targets)}

        def numeric(t: PublishedTarget) -> list[str]:
            return [c.name for c in t.schema.columns if is_numeric(c) and c.name not in labels]

        features = numeric(targets[0])
        for target in targets[1:]:
            theirs = numeric(target)
            missing = [c for c in features if c not in theirs]
            extra = [c for c in theirs if c not in features]
            if missing:
                problems.append(f"{target.where} lacks the numeric column(s) {_names(missing)}")
            if extra:
                problems.append(
                    f"{target.where} has numeric column(s) {_names(extra)} that "
                    f"{targets[0].where} lacks; pick the shared ones with columns=[...]"
                )
        if not features and not problems:
            problems.append(f"{targets[0].where} has no numeric column to analyse")
    for name in features:
        _check_column(name, targets, problems, f"column {name!r}")
    return features


def _check_column(
    name: str, targets: Sequence[PublishedTarget], problems: list[str], what: str
) -> None:
    """The column is on every dataset, numeric, with one dtype everywhere."""
    dtypes: dict[str, str] = {}
    lacking = [t for t in targets if t.column(name) is None]
    if lacking:
        where = ", ".join(t.where for t in lacking)
        available = _names([c.name for c in lacking[0].schema.columns])
        problems.append(f"{what} does not exist on {where} ({lacking[0].where} has {available})")
    for target in targets:
        column = target.column(name)
        if column is None:
            continue
        if not is_numeric(column):
            shape = f" of shape {column.shape} per row" if column.shape else ""
            problems.append(
                f"{what} on {target.where} holds {column.dtype}{shape}: only single numbers "
                "can be summed"
            )
        else:
            dtypes[target.where] = column.dtype
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{dtype} on {where}" for where, dtype in dtypes.items())
        problems.append(f"{what} has different dtypes: {listed}")


def _classes(
    label: str, targets: Sequence[PublishedTarget], problems: list[str]
) -> list[ClassValue] | None:
    """The union of the label's published classes, when all are numbers or all are text."""
    found: dict[str, list[ClassValue]] = {}
    for target in targets:
        if target.column(label) is None:
            problems.append(f"label {label!r} does not exist on {target.where}")
        elif target.schema.label_classes is None or target.label != label:
            problems.append(
                f"{target.where} publishes no classes for {label!r} (a label column with at "
                "most 50 distinct values, set when the dataset was uploaded)"
            )
        else:
            found[target.where] = list(target.schema.label_classes)
    kinds = {where: _class_kind(values) for where, values in found.items()}
    if len(set(kinds.values())) > 1:
        listed = ", ".join(f"{kind} on {where}" for where, kind in kinds.items())
        problems.append(f"the classes of {label!r} differ in kind: {listed}")
        return None
    union = {value for values in found.values() for value in values}
    return sorted(union) if union else None


def _class_kind(values: list[ClassValue]) -> str:
    return "text" if any(isinstance(v, str) for v in values) else "numbers"


def _check_bounds(
    spec: AnalyticsSpec, features: list[str], label: str | None, problems: list[str]
) -> None:
    assert spec.dp is not None
    needed = clipped_columns(features, label, spec.model)
    missing = [c for c in needed if c not in spec.dp.bounds]
    if missing:
        problems.append(
            f"differential privacy needs bounds for {_names(missing)}: "
            "dp={'bounds': {'COLUMN': [LOW, HIGH], ...}}"
        )
    unknown = [c for c in spec.dp.bounds if c not in needed]
    if unknown:
        problems.append(f"bounds name column(s) the analysis does not sum: {_names(unknown)}")


def _names(columns: list[str]) -> str:
    shown = ", ".join(repr(c) for c in columns[:10])
    return shown + (f" and {len(columns) - 10} more" if len(columns) > 10 else "")
