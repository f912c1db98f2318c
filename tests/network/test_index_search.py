"""The dataset index: signed pushes of a domain's own datasets, full-text search and filters."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from tests.network.conftest import Signer, approved, dataset


@pytest.fixture
def two_domains(
    network: FlaskClient, operator: dict[str, str], make_signer: Callable[[], Signer]
) -> tuple[Signer, Signer]:
    a, b = make_signer(), make_signer()
    approved(a, network, operator, name="hospital-a")
    approved(b, network, operator, name="clinic-b")
    pushed = a.push(
        [
            dataset(
                "digits-a",
                description="Handwritten digit images, 8x8 grey levels",
                tags=["digits", "images"],
                columns=["pixels", "Target"],
                rows=1797,
            ),
            dataset("heart", description="Heart disease records", tags=["cardiology"]),
        ]
    )
    assert pushed.status_code == 200 and pushed.json == {"indexed": 2, "removed": 0}
    pushed = b.push(
        [
            dataset("mnist-small", description="Handwritten digits from MNIST", tags=["digits"]),
            dataset("digit-strokes", description="Pen strokes", tags=["Digits", "pen"]),
        ]
    )
    assert pushed.status_code == 200
    return a, b


def search(network: FlaskClient, query: str) -> list[tuple[str, str]]:
    response = network.get(f"/api/v1/search?{query}")
    assert response.status_code == 200, response.json
    return [(hit["domain"]["name"], hit["dataset"]["name"]) for hit in response.json["items"]]


def test_search_ranks_stems_and_filters(network: FlaskClient, two_domains: tuple) -> None:
    a, _ = two_domains
    response = network.get("/api/v1/search?q=handwritten+digits")
    hits = response.json["items"]
    assert {(h["domain"]["name"], h["dataset"]["name"]) for h in hits} == {
        ("hospital-a", "digits-a"),
        ("clinic-b", "mnist-small"),
    }
    assert all(h["score"] > 0 for h in hits)
    assert hits[0]["score"] >= hits[1]["score"]
    first = next(h for h in hits if h["dataset"]["name"] == "digits-a")
    assert first["domain"]["id"] == a.id
    assert first["dataset"]["row_count"] == 1797
    assert first["dataset"]["tags"] == ["digits", "images"]
    assert [c["name"] for c in first["dataset"]["schema"]["columns"]] == ["pixels", "Target"]
    assert first["dataset"]["has_mock"] is True

    # A word in the name outranks the same word in a description.
    assert search(network, "q=digit")[0][1] in {"digits-a", "digit-strokes"}
    assert search(network, "q=digit&tag=pen") == [("clinic-b", "digit-strokes")]
    assert set(search(network, "tag=DIGITS")) == {
        ("hospital-a", "digits-a"),
        ("clinic-b", "mnist-small"),
        ("clinic-b", "digit-strokes"),
    }
    assert search(network, "tag=digits&tag=images") == [("hospital-a", "digits-a")]
    assert search(network, "column=PIXELS") == [("hospital-a", "digits-a")]
    assert search(network, "column=pixels&column=target") == [("hospital-a", "digits-a")]
    assert search(network, "q=handwritten&domain=clinic-b") == [("clinic-b", "mnist-small")]
    assert search(network, f"q=handwritten&domain={a.id}") == [("hospital-a", "digits-a")]
    assert search(network, "q=%22heart+disease%22") == [("hospital-a", "heart")]
    assert search(network, "q=%22disease+heart%22") == []
    assert set(search(network, "q=heart+OR+strokes")) == {
        ("hospital-a", "heart"),
        ("clinic-b", "digit-strokes"),
    }
    assert search(network, "q=handwritten+-mnist") == [("hospital-a", "digits-a")]
    assert search(network, "q=nothing-like-this") == []
    assert len(search(network, "q=&limit=2")) == 2
    assert len(search(network, "offset=3")) == 1


def test_a_push_replaces_the_domains_entries(network: FlaskClient, two_domains: tuple) -> None:
    a, _ = two_domains
    response = a.push([dataset("heart", description="Cardiac records, renamed words")])
    assert response.json == {"indexed": 1, "removed": 1}
    assert search(network, "q=cardiac") == [("hospital-a", "heart")]
    assert search(network, "q=disease") == []
    assert ("hospital-a", "digits-a") not in search(network, "tag=digits")
    assert a.push([]).json == {"indexed": 0, "removed": 1}
    domains = {d["name"]: d["dataset_count"] for d in network.get("/api/v1/domains").json["items"]}
    assert domains == {"hospital-a": 0, "clinic-b": 2}


def test_a_domain_can_only_publish_its_own_datasets(
    network: FlaskClient, two_domains: tuple
) -> None:
    a, b = two_domains
    response = a.call("PUT", f"/api/v1/index/{b.id}/datasets", {"datasets": []})
    assert response.status_code == 403
    assert response.json["error"]["code"] == "not_your_domain"
    assert len(search(network, f"domain={b.id}")) == 2


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"private_rows": [[1, 2]]}, "private_rows"),
        ({"name": "../etc"}, "name"),
        ({"tags": ["x" * 51]}, "tags"),
        ({"schema": {"format": "csv", "columns": []}}, "row_count"),
    ],
)
def test_pushes_carry_public_metadata_only(
    network: FlaskClient, two_domains: tuple, entry: dict, field: str
) -> None:
    a, _ = two_domains
    response = a.push([{**dataset("x"), **entry}])
    assert response.status_code == 422
    assert field in response.json["error"]["message"]
    assert len(search(network, "domain=hospital-a")) == 2  # nothing half-written


MALFORMED = [
    '"unclosed phrase',
    "digits OR",
    "OR digits",
    "digits OR OR images",
    "-",
    "-digits",
    'a -"b c" OR -d',
    '""',
    "digits\x00",
    "digits\x1b[31m",
    "digits -- -",
]
# Query syntax of the databases themselves: it must arrive as plain words.
DATABASE_SYNTAX = ["NEAR(digits images)", "digits*", "name:digits", "^digits", "(digits)",
    "a AND", "x'; DROP TABLE associations", "ünïcödé", "digits & | ! :*", "{digits}",
    "x" * 500]  # fmt: skip


def test_malformed_queries_are_400_with_a_message_never_500(
    network: FlaskClient, two_domains: tuple
) -> None:
    for query in MALFORMED:
        response = network.get("/api/v1/search", query_string={"q": query})
        assert response.status_code == 400, (query, response.json)
        assert response.json["error"]["code"] == "bad_query"
        assert response.json["error"]["message"].startswith("Malformed search query: ")
    for query in DATABASE_SYNTAX:
        response = network.get("/api/v1/search", query_string={"q": query})
        assert response.status_code == 200, (query, response.json)
    assert search(network, "q=digits*") == search(network, "q=digits")


def test_search_parameters_are_validated(network: FlaskClient) -> None:
    for bad in ("limit=0", "limit=101", "offset=-1", "limit=x", "q=" + "x" * 501, "what=1"):
        response = network.get(f"/api/v1/search?{bad}")
        assert response.status_code == 422, bad
