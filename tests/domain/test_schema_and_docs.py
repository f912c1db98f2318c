"""Migrations match the models, and the OpenAPI document describes the validated API."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from domain import migrate
from domain.models import Base
from grid_common.db import make_engine
from tests.concurrency import run_concurrently
from tests.conftest import PostgresDatabases


def test_migrations_produce_exactly_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def test_openapi_documents_every_route_with_its_schemas(client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").json
    validate(document)  # raises on anything that is not valid OpenAPI 3.1
    login = document["paths"]["/api/v1/auth/login"]["post"]
    body_ref = login["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body_schema = document["components"]["schemas"][body_ref.rsplit("/", 1)[1]]
    assert set(body_schema["required"]) == {"email", "password"}
    upload = document["paths"]["/api/v1/datasets"]["post"]
    form = upload["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert {"file", "mock", "name", "tags", "label"} <= set(form)
    approve = document["paths"]["/api/v1/requests/{request_id}/approve"]["post"]
    assert approve["x-permission"] == "triage_requests"
    assert approve["parameters"][0]["name"] == "request_id"
    assert approve["parameters"][0]["schema"]["type"] == "integer"
    audit = {
        p["name"]: p["schema"] for p in document["paths"]["/api/v1/audit"]["get"]["parameters"]
    }
    assert audit["after"]["type"] == "integer"
    jobs = {p["name"]: p["schema"] for p in document["paths"]["/api/v1/jobs"]["get"]["parameters"]}
    assert "completed" in jobs["status"]["enum"]
    # A nested model of a form field is a component, and the field travels as JSON.
    request_form = document["paths"]["/api/v1/requests/jobs"]["post"]["requestBody"]["content"]
    multipart = request_form["multipart/form-data"]
    assert multipart["schema"]["properties"]["plan"] == {
        "$ref": "#/components/schemas/TrainingPlan"
    }
    assert "TrainingPlan" in document["components"]["schemas"]
    assert multipart["encoding"]["plan"] == {"contentType": "application/json"}
    assert "$defs" not in str(document)


def test_a_method_a_url_does_not_take_is_a_405_naming_those_it_does(client: FlaskClient) -> None:
    response = client.put("/api/v1/audit")
    assert response.status_code == 405
    assert response.json["error"]["code"] == "method_not_allowed"
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "OPTIONS"}


def test_replicas_starting_together_migrate_once(postgres: PostgresDatabases | None) -> None:
    if postgres is None:
        pytest.skip("PostgreSQL not reachable; set GRID_TEST_DATABASE_URL to run this")
    name = postgres.fresh(migrated=False)
    engines = [make_engine(postgres.url(name)) for _ in range(3)]
    errors: list[BaseException] = []

    def start(engine) -> None:
        try:
            migrate.upgrade(engine)
        except BaseException as exc:
            errors.append(exc)

    stuck = run_concurrently(start, engines)  # racing DDL without the lock blocks forever
    differences = []
    if not stuck:
        with engines[0].connect() as connection:
            context = MigrationContext.configure(connection)
            differences = compare_metadata(context, Base.metadata)
        for engine in engines:
            engine.dispose()
    postgres.drop(name)
    assert stuck == 0, "concurrent migrations blocked each other"
    assert errors == []
    assert differences == []
