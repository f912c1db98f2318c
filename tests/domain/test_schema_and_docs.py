"""Migrations match the models, and the OpenAPI document describes the validated API."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from domain.models import Base
from grid_common.db import make_engine


def test_migrations_produce_exactly_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    from domain import migrate

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
