"""The spec hash of a network's federated or analytics job, in one place: the network records it
on chain when the job starts, and the data scientist's client recomputes it from what it
submitted, so `fl.verify()` checks the chain against the client's own figure.

The hash covers the model program and initial weights (a training job), the training plan or
the analysis's plan as resolved against the datasets' schemas, each (domain id, dataset) in the
order submitted, and every round setting of the spec (rounds, strategy and its
hyperparameters, sampling, quorum, deadline, aggregation): `RoundSettings.round_settings()`
lists them, so a setting added to the spec is covered without a change here.
"""

from __future__ import annotations

from collections.abc import Sequence

from grid_common.analytics.plan import AnalysisPlan
from grid_common.federated_schemas import AnalyticsSpec, FederatedSpec
from grid_common.hashes import spec_hash

# (domain id, dataset name) of each dataset of a job, in the spec's order.
Targets = Sequence[tuple[str, str]]


def federated_spec_hash(
    spec: FederatedSpec, *, model_digest: str, weights_digest: str, targets: Targets
) -> str:
    """The spec hash of a federated training job (64 hex digits)."""
    return spec_hash(
        model_digest=model_digest,
        weights_digest=weights_digest,
        plan=spec.plan,
        datasets=[f"{domain}/{dataset}" for domain, dataset in targets],
        kind="model_centric",
        domains=[domain for domain, _ in targets],
        federated=spec.round_settings(),
    )


def analytics_spec_hash(spec: AnalyticsSpec, plan: AnalysisPlan, *, targets: Targets) -> str:
    """The spec hash of a federated analysis, with its plan resolved against the schemas."""
    return spec_hash(
        plan=plan,
        datasets=[f"{domain}/{dataset}" for domain, dataset in targets],
        kind="analytics",
        domains=[domain for domain, _ in targets],
        federated=spec.round_settings(),
    )
