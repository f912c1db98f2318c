"""What a domain's worker leases for a federated job: every term of the signed invitation."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from domain.api import worker_api
from grid_common.federated_schemas import CkksParamsIn, Invitation


def test_a_federated_lease_carries_the_invitations_strategy_terms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each domain steps the server optimizer itself: with another learning rate than the one the
    # network signed, its final model would differ from its peers' and its attestation fail.
    invitation = Invitation(
        network_job_id=7,
        network_id="n" * 32,
        dataset="digits",
        requester="scientist@lab.org",
        reason="",
        plan={"loss": "cross_entropy"},
        rounds=3,
        min_domains=2,
        round_timeout=60,
        secure_aggregation="ckks",
        ckks=CkksParamsIn(),
        participants=["a", "b", "c", "d"],
        model_digest="0" * 64,
        weights_digest="0" * 64,
        spec_hash="0" * 64,
        signature="",
        strategy="fedadam",
        server_lr=0.05,
        beta1=0.8,
        beta2=0.95,
        tau=0.01,
        fraction=0.5,
        min_sample=3,
    )
    participation = SimpleNamespace(invitation=invitation.model_dump(mode="json"), min_group_size=5)
    monkeypatch.setattr(worker_api.federated, "participation_of", lambda *_: participation)

    leased = worker_api._leased_federated(None, 1)  # type: ignore[arg-type]

    assert leased is not None
    assert leased.strategy_terms() == invitation.strategy_terms()
