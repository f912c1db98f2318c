"""The network's OpenAPI document describes exactly what its API accepts (schemathesis)."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.api_fuzz import fuzz

# Refusals of a federated spec that no JSON Schema can state: the named domain must be one the
# network knows, the quorum may not exceed the datasets, each domain is named once, and the
# CKKS moduli add up to no more than the degree allows, a low bound is below its high one, mu
# goes with fedprox only, each server optimizer's hyperparameter with its strategies, and a
# sample is drawn by the network, large enough to release, from no more domains than there are.
_BEYOND_SCHEMA = (
    "No domain ",
    "has published no dataset",
    "min_domains is ",
    "one dataset per domain",
    "coeff_mod_bit_sizes add up to",
    "LOW must be below HIGH",
    "must be finite with low < high",
    "fedprox needs mu",
    "mu is FedProx's parameter",
    " is a parameter of ",
    "min_sample applies only when",
    "min_sample is ",
    "Set min_sample to at least",
    "Leave sample_seed out",
)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_api_takes_what_it_documents_and_never_fails(
    network_app: Flask, network: FlaskClient, operator: dict[str, str]
) -> None:
    findings = fuzz(
        network_app,
        lambda path: operator,
        beyond_schema=lambda message: any(rule in message for rule in _BEYOND_SCHEMA),
    )

    print(findings.summary())
    assert findings.server_errors == []
    assert findings.rejected_valid == []
    assert findings.unresolved_refs == []
    assert findings.method_not_allowed > 0
    assert findings.no_allow_header == []
    # The operator's token still opens the API, so the calls were not all 401s.
    assert network.get("/api/v1/accounts", headers=operator).status_code == 200
