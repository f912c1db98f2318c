"""Network migrations match the models, the OpenAPI document is valid, queries parse."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from grid_common.db import make_engine
from network.models import Base
from network.search import QueryError, Term, parse_query, render_fts5, render_tsquery


def _not_search_machinery(name: str | None, kind: str, *_: Any) -> bool:
    # The full-text index is made by the migration only (FTS5 table / generated column).
    return not (name or "").startswith(
        ("indexed_datasets_fts", "search_vector", "ix_indexed_datasets_search")
    )


def test_migrations_produce_exactly_the_models(network_database_url: str) -> None:
    engine = make_engine(network_database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"include_name": _not_search_machinery}
        )
        differences = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert differences == []


def test_openapi_documents_every_route(network: FlaskClient) -> None:
    document = network.get("/api/v1/openapi.json").json
    validate(document)
    push = document["paths"]["/api/v1/index/{domain_id}/datasets"]["put"]
    assert push["security"] == [{"nodeSignature": []}]
    search = document["paths"]["/api/v1/search"]["get"]
    parameters = {p["name"]: p["schema"] for p in search["parameters"]}
    assert parameters["tag"]["type"] == "array"
    assert parameters["tag"]["items"]["type"] == "string"
    assert parameters["limit"] == {"type": "integer", "minimum": 1, "maximum": 100}
    associations = document["paths"]["/api/v1/associations"]["get"]["parameters"]
    status = next(p for p in associations if p["name"] == "status")
    assert set(status["schema"]["enum"]) == {"pending", "approved", "rejected", "left", "removed"}
    assert "security" not in search
    approve = document["paths"]["/api/v1/associations/{association_id}/approve"]["post"]
    assert approve["x-permission"] == "manage_associations"
    assert approve["parameters"][0]["schema"]["type"] == "integer"
    submit = document["paths"]["/api/v1/fl/jobs"]["post"]["requestBody"]["content"]
    form = submit["multipart/form-data"]
    assert form["schema"]["properties"]["spec"] == {"$ref": "#/components/schemas/FederatedSpec"}
    assert form["encoding"] == {"spec": {"contentType": "application/json"}}
    assert set(form["schema"]["required"]) == {"model", "weights", "spec"}


def test_a_method_a_url_does_not_take_is_a_405_naming_those_it_does(network: FlaskClient) -> None:
    response = network.delete("/api/v1/search")
    assert response.status_code == 405
    assert response.json["error"]["code"] == "method_not_allowed"
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "OPTIONS"}


def test_queries_parse_into_alternatives_of_terms() -> None:
    assert parse_query("") == []
    assert parse_query("  ,.; ") == []
    assert parse_query("Handwritten DIGITS") == [(Term(("handwritten",)), Term(("digits",)))]
    assert parse_query('"heart disease" -mnist OR digits-a') == [
        (Term(("heart", "disease")), Term(("mnist",), negated=True)),
        (Term(("digits", "a")),),
    ]
    assert parse_query('x -"a b"') == [(Term(("x",)), Term(("a", "b"), negated=True))]


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ('"open', "Unbalanced quote"),
        ("a OR", "OR needs words"),
        ("OR a", "OR needs words"),
        ("a OR OR b", "OR needs words"),
        ("-", "excludes nothing"),
        ("-a", "not only exclusions"),
        ('""', "no words"),
        ("a\tb\x00", "control characters"),
        (" ".join(["w"] * 33), "Too many terms"),
    ],
)
def test_malformed_queries_say_what_to_fix(query: str, problem: str) -> None:
    with pytest.raises(QueryError, match=problem):
        parse_query(query)


def test_rendering_keeps_user_text_out_of_query_syntax() -> None:
    groups = parse_query('near digits OR "x y" -z')
    assert render_fts5(groups) == '("near" AND "digits") OR (("x y") NOT ("z"))'
    params: dict[str, Any] = {}
    rendered = render_tsquery(groups, params)
    assert "near" not in rendered and "digits" not in rendered
    assert params == {"w0": "near", "w1": "digits", "w2": "x y", "w3": "z"}
    assert rendered.count("!!") == 1
