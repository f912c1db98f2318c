"""What a job's data scientist may read of its progress and metrics before the owner releases it.

Loss, accuracy and validation metrics are statistics of private rows, and so are exact row
counts and whatever they can be worked back from (steps per epoch, the sampling rate, the noise
multiplier). Under differential privacy the data scientist reads no metric until the owner
releases the result, and no exact count ever: the release approves a model whose guarantee
does not cover an exact count. Without DP the owner's `live_metrics` setting, recorded with the
job when it was approved, decides whether metrics stream live or wait for the release. The
domain's reviewers (owner, admins, compliance officers) always see everything.

Withholding, not noising: noised live metrics would spend privacy budget on numbers the data
scientist only watches, and a noised curve still needs an accountant the owner must trust.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Keys that state an exact row count, or let one be worked back from a plan the data scientist
# chose (a batch size of 1 makes steps per epoch the row count).
COUNT_KEYS = frozenset(
    {
        "samples",
        "validation_samples",
        "rows",
        "step",
        "steps",
        "steps_per_epoch",
        "sample_rate",
        "noise_multiplier",
        # A federated round's phase timings: training time grows with the rows trained on.
        "timings",
    }
)
# What a progress point keeps while metrics are withheld: where the job stands, nothing measured.
PROGRESS_KEYS = frozenset({"phase", "epoch", "epochs", "round", "rounds", "bytes"})


@dataclass(frozen=True)
class Disclosure:
    """What one viewer may read of one job now."""

    metrics: bool  # loss, accuracy, validation metrics, epsilon spent so far
    counts: bool  # exact row counts, and log lines the worker marked private


FULL = Disclosure(metrics=True, counts=True)


def disclosure(*, reviewer: bool, dp: bool, live_metrics: bool, released: bool) -> Disclosure:
    """What a viewer reads of a job: everything for a reviewer; else per DP, setting, release."""
    if reviewer:
        return FULL
    metrics = released or (live_metrics and not dp)
    return Disclosure(metrics=metrics, counts=metrics and not dp)


def is_dp(plan: dict[str, Any] | None) -> bool:
    """Whether a job's plan (training or analysis) asks for differential privacy."""
    return plan is not None and plan.get("dp") is not None


def request_note(plan: dict[str, Any] | None, live_metrics: bool) -> str:
    """What a job request's data scientist will read before the release, for its reviewer."""
    if is_dp(plan):
        return (
            "withheld from the data scientist until the result is released (differential "
            "privacy); exact row counts are never shown to them"
        )
    if live_metrics:
        return (
            "loss, accuracy and row counts shown to the data scientist live, as the job runs "
            "(this domain's live-metrics setting, fixed when the request is approved)"
        )
    return (
        "withheld from the data scientist until the result is released (this domain's "
        "live-metrics setting, fixed when the request is approved)"
    )


def shown_metrics(metrics: dict[str, Any] | None, shown: Disclosure) -> dict[str, Any] | None:
    """A job's final metrics as the viewer may read them; None while they are withheld."""
    if metrics is None or not shown.metrics:
        return None
    if shown.counts:
        return metrics
    return {k: v for k, v in metrics.items() if k not in COUNT_KEYS}


def shown_event(kind: str, data: dict[str, Any], shown: Disclosure) -> dict[str, Any] | None:
    """An event's data as the viewer may read it; None when the whole event is withheld.

    Step points are dropped while metrics are withheld (the step number counts rows); epoch and
    round points keep only where the job stands. Log lines the worker marked private (they
    state row counts or derived figures) show only where exact counts do.
    """
    if shown.counts:
        return data
    if kind == "log":
        return None if data.get("private") else data
    if not shown.metrics:
        if data.get("phase") == "step":
            return None
        return {k: v for k, v in data.items() if k in PROGRESS_KEYS}
    return {k: v for k, v in data.items() if k not in COUNT_KEYS}
