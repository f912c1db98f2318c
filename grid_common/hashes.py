"""The hashes a job is known by on the registry: its spec, its model, its on-chain key."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Literal

from grid_common.analytics.plan import AnalysisPlan
from grid_common.canonical import canonical_json
from grid_common.plan import TrainingPlan

JobKind = Literal["data_centric", "model_centric", "analytics"]
SPEC_VERSION = 1
_CHUNK = 1 << 20


def sha256_file(path: Path | str) -> str:
    """The sha256 of a file's bytes, as 64 hex digits (what `sha256sum` prints)."""
    with Path(path).open("rb") as handle:
        return sha256_stream(handle)


def sha256_stream(stream: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def spec_document(
    *,
    model_digest: str | None = None,
    weights_digest: str | None = None,
    plan: TrainingPlan | AnalysisPlan | Mapping[str, Any],
    datasets: Iterable[str],
    kind: JobKind = "data_centric",
    domains: Iterable[str] = (),
    federated: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What a job's spec hash covers: the submitted program and weights (by sha256), the
    training plan with its defaults filled in, the dataset names and, for a federated job,
    the domains taking part and how the rounds run (rounds, strategy, quorum, timeout,
    aggregation and its CKKS parameters). A data scientist holding those files rebuilds the
    same document. An analysis has no files: its resolved plan takes their place.
    """
    document: dict[str, Any] = {"grid.spec": SPEC_VERSION, "kind": kind}
    if kind == "analytics":
        document["analysis"] = AnalysisPlan.model_validate(plan).model_dump(mode="json")
    else:
        document["model"] = _hex64(model_digest or "", "model_digest")
        document["weights"] = _hex64(weights_digest or "", "weights_digest")
        document["plan"] = TrainingPlan.model_validate(plan).model_dump(mode="json")
    document["datasets"] = sorted(set(datasets))
    if kind == "model_centric" or (kind == "analytics" and federated is not None):
        document["domains"] = sorted(set(domains))
        document["federated"] = dict(federated or {})
    return document


def spec_hash(
    *,
    model_digest: str | None = None,
    weights_digest: str | None = None,
    plan: TrainingPlan | AnalysisPlan | Mapping[str, Any],
    datasets: Iterable[str],
    kind: JobKind = "data_centric",
    domains: Iterable[str] = (),
    federated: Mapping[str, Any] | None = None,
) -> str:
    """sha256 (64 hex digits) of the canonical JSON of `spec_document`."""
    document = spec_document(
        model_digest=model_digest,
        weights_digest=weights_digest,
        plan=plan,
        datasets=datasets,
        kind=kind,
        domains=domains,
        federated=federated,
    )
    return hashlib.sha256(canonical_json(document)).hexdigest()


def spec_hash_of_files(
    model: Path | str,
    weights: Path | str,
    *,
    plan: TrainingPlan | Mapping[str, Any],
    datasets: Iterable[str],
    kind: JobKind = "data_centric",
    domains: Iterable[str] = (),
    federated: Mapping[str, Any] | None = None,
) -> str:
    """The spec hash recomputed from the program (.pt2) and weights files a user submitted."""
    return spec_hash(
        model_digest=sha256_file(model),
        weights_digest=sha256_file(weights),
        plan=plan,
        datasets=datasets,
        kind=kind,
        domains=domains,
        federated=federated,
    )


def model_hash(weights: Path | str | bytes) -> str:
    """A result's model hash: the sha256 of its released weights file (safetensors), so
    `sha256sum model.safetensors` prints the same digits that the domains attested."""
    if isinstance(weights, bytes):
        return hashlib.sha256(weights).hexdigest()
    return sha256_file(weights)


def ed25519_key_hash(public_key: bytes) -> str:
    """What a node registers on chain for its Ed25519 key: the sha256 of the raw 32 bytes."""
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return hashlib.sha256(public_key).hexdigest()


def _hex64(value: str, name: str) -> str:
    lowered = value.lower().removeprefix("0x")
    if len(lowered) != 64 or any(c not in "0123456789abcdef" for c in lowered):
        raise ValueError(f"{name} must be a sha256 digest (64 hex digits), got {value!r}")
    return lowered
