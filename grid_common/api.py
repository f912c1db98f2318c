"""Declarative JSON routes: one decorator validates input, declares access, documents the route."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from flask import Blueprint, Flask, Response, request
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from werkzeug.routing import AnyConverter, BaseConverter, IntegerConverter

from grid_common.errors import BadRequest, NotFound, PayloadTooLarge, Unprocessable

PUBLIC = "public"
"""Access marker: anyone may call the route, signed in or not."""
AUTHENTICATED = "authenticated"
"""Access marker: any signed-in account may call the route."""
SIGNED = "signed_node"
"""Access marker: another node, by a valid request signature (grid_common.signing), no account."""
JSON_BODY_LIMIT = 1 << 20
# Ids are 64-bit database integers: a path id beyond that names nothing.
_MAX_ID = (1 << 63) - 1

BodyKind = Literal["json", "multipart", "binary"]
View = TypeVar("View", bound=Callable[..., Any])


@dataclass(frozen=True)
class RouteSpec:
    """What a route accepts, returns and requires; read by authorization and by OpenAPI."""

    permission: str
    summary: str
    body: type[BaseModel] | None = None
    body_kind: BodyKind = "json"
    files: tuple[str, ...] = ()
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    response_kind: Literal["json", "binary"] = "json"
    status: int = 200
    before_setup: bool = False
    tags: tuple[str, ...] = field(default_factory=tuple)


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, each naming the field: `tags.2: Input should be a valid string`."""
    parts = []
    for error in exc.errors():
        location = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)


def _validate(model: type[BaseModel], data: Any, where: str) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Unprocessable(f"Invalid {where}: {describe_validation_error(exc)}") from None


def small_body() -> bytes:
    """The request body, read once (at most JSON_BODY_LIMIT + 1 bytes) and kept for the request.

    Signature checks and JSON parsing both read it, so it cannot come from the stream twice.
    """
    raw: bytes | None = request.environ.get("grid.small_body")
    if raw is None:
        raw = request.stream.read(JSON_BODY_LIMIT + 1)
        request.environ["grid.small_body"] = raw
    return raw


def _json_body() -> Any:
    # JSON is parsed in memory, so it gets its own small limit, not the upload limit.
    raw = small_body()
    if len(raw) > JSON_BODY_LIMIT:
        raise PayloadTooLarge(f"JSON bodies are limited to {JSON_BODY_LIMIT} bytes.")
    if not raw:
        raise BadRequest("Request body is empty; send a JSON object.")
    if not request.is_json:
        raise BadRequest("Send the body as JSON with Content-Type: application/json.")
    try:
        return json.loads(raw)
    except ValueError:
        raise BadRequest("Request body is not valid JSON.") from None


def _fields(model: type[BaseModel], lists: Iterable[tuple[str, list[str]]]) -> dict[str, Any]:
    """Form or query values: a list for list-typed fields, else the single value."""
    data: dict[str, Any] = {}
    for name, values in lists:
        annotation = model.model_fields[name].annotation if name in model.model_fields else None
        is_list = annotation is not None and getattr(annotation, "__origin__", None) is list
        data[name] = values if is_list or len(values) > 1 else values[0]
    return data


def _multipart_fields(model: type[BaseModel]) -> dict[str, Any]:
    if request.mimetype != "multipart/form-data":
        raise BadRequest("Send the body as multipart/form-data.")
    return _fields(model, request.form.lists())


def _to_response(result: Any, spec: RouteSpec) -> Any:
    if isinstance(result, BaseModel):
        return Response(result.model_dump_json(), status=spec.status, mimetype="application/json")
    if result is None:
        return Response(status=204)
    return result


def route(
    bp: Blueprint,
    rule: str,
    *,
    methods: Iterable[str] = ("GET",),
    permission: str,
    summary: str,
    body: type[BaseModel] | None = None,
    body_kind: BodyKind = "json",
    files: Iterable[str] = (),
    query: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    response_kind: Literal["json", "binary"] = "json",
    status: int = 200,
    before_setup: bool = False,
) -> Callable[[View], View]:
    """Register a view that gets validated `body=` / `query=` models and returns a model.

    `permission` is mandatory: a permission flag of the node, `AUTHENTICATED` or `PUBLIC`.
    """
    spec = RouteSpec(
        permission=permission,
        summary=summary,
        body=body,
        body_kind=body_kind,
        files=tuple(files),
        query=query,
        response=response,
        response_kind=response_kind,
        status=status,
        before_setup=before_setup,
        tags=(bp.name,),
    )

    def decorator(fn: View) -> View:
        @functools.wraps(fn)
        def view(**kwargs: Any) -> Any:
            for name, value in kwargs.items():
                # An id past 64 bits names no row; the database would refuse to compare it.
                if isinstance(value, int) and value > _MAX_ID:
                    raise NotFound(f"No {name.removesuffix('_id')} {value}.")
            if spec.query is not None:
                args = _fields(spec.query, request.args.lists())
                kwargs["query"] = _validate(spec.query, args, "query")
                for name, value in kwargs["query"]:
                    if isinstance(value, int) and abs(value) > _MAX_ID:
                        raise Unprocessable(f"Invalid query: {name}: beyond a 64-bit integer.")
            if spec.body is not None:
                if spec.body_kind == "multipart":
                    data = _multipart_fields(spec.body)
                else:
                    data = _json_body()
                kwargs["body"] = _validate(spec.body, data, "body")
            return _to_response(fn(**kwargs), spec)

        view.route_spec = spec  # type: ignore[attr-defined]
        bp.add_url_rule(rule, view_func=view, methods=list(methods))
        # The plain function stays callable with typed arguments, so the console runs the
        # same logic the API does.
        return fn

    return decorator


def route_spec(app: Flask, endpoint: str | None) -> RouteSpec | None:
    if endpoint is None or endpoint not in app.view_functions:
        return None
    return getattr(app.view_functions[endpoint], "route_spec", None)


# Outside the API prefix, yet part of what it documents (/metrics is Prometheus text, not JSON).
_PROBES = ("/healthz", "/readyz")
_CONVERTER = re.compile(r"<(?:[a-z_]+(?:\([^)]*\))?:)?([a-zA-Z_][a-zA-Z0-9_]*)>")
_REF_TEMPLATE = "#/components/schemas/{model}"


def _any_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" for c in word)


# Addresses at special-use domains (RFC 6761; the list email-validator refuses) are refused
# beside what `format: email` allows, so the document says so.
_SPECIAL_USE_EMAIL = {
    "pattern": "[@.](" + "|".join(_any_case(d) for d in SPECIAL_USE_DOMAIN_NAMES) + r")\.?$"
}


def _document_email_domains(schema: Any) -> None:
    """Add the special-use domain refusal to every `format: email` schema, in place."""
    if isinstance(schema, dict):
        if schema.get("format") == "email":
            schema["not"] = _SPECIAL_USE_EMAIL
        for value in schema.values():
            _document_email_domains(value)
    elif isinstance(schema, list):
        for value in schema:
            _document_email_domains(value)


def _path_schema(converter: BaseConverter) -> dict[str, Any]:
    """A path parameter as its URL converter matches it: an id, one of a few words, or text."""
    if isinstance(converter, IntegerConverter):
        return {"type": "integer", "minimum": 0, "maximum": _MAX_ID}
    if isinstance(converter, AnyConverter):
        return {"type": "string", "enum": sorted(converter.items)}
    return {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}


def _parameter_schema(prop: dict[str, Any]) -> dict[str, Any]:
    """A query field's schema as a parameter: a query string cannot carry null, so an optional
    field documents only its value's type (leaving the parameter out is how to send none), and
    an integer the 64 bits the database compares."""
    schema = {k: v for k, v in prop.items() if k not in ("title", "default", "description")}
    options = [o for o in schema.pop("anyOf", []) if o != {"type": "null"}]
    if len(options) == 1:
        schema.update(options[0])
    elif options:
        schema["anyOf"] = options
    if schema.get("type") == "integer":
        schema["maximum"] = min(schema.get("maximum", _MAX_ID), _MAX_ID)
        schema["minimum"] = max(schema.get("minimum", -_MAX_ID), -_MAX_ID)
    return schema


def _multipart(form: dict[str, Any], files: tuple[str, ...]) -> dict[str, Any]:
    """A multipart body: the file parts (all required) beside the form model's fields; a field
    the model reads as JSON is documented as its object and sent as an application/json part."""
    properties: dict[str, Any] = {name: {"type": "string", "format": "binary"} for name in files}
    encoding: dict[str, Any] = {}
    for name, prop in form.get("properties", {}).items():
        if prop.get("contentMediaType") == "application/json" and "contentSchema" in prop:
            properties[name] = prop["contentSchema"]
            encoding[name] = {"contentType": "application/json"}
        else:
            properties[name] = prop
    required = [*files, *form.get("required", [])]
    schema = {"type": "object", "properties": properties, "required": required}
    if "additionalProperties" in form:
        schema["additionalProperties"] = form["additionalProperties"]
    body: dict[str, Any] = {"schema": schema}
    if encoding:
        body["encoding"] = encoding
    return body


def build_openapi(app: Flask, *, title: str, version: str, prefix: str = "/api/") -> dict[str, Any]:
    """An OpenAPI 3.1 document built from the same pydantic models that validate requests."""
    specs: list[tuple[str, str, RouteSpec, dict[str, Any]]] = []
    for rule in app.url_map.iter_rules():
        spec = route_spec(app, rule.endpoint)
        if spec is None or not (rule.rule.startswith(prefix) or rule.rule in _PROBES):
            continue
        converters = {name: _path_schema(c) for name, c in rule._converters.items()}
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            specs.append((_CONVERTER.sub(r"{\1}", rule.rule), method.lower(), spec, converters))

    models: set[type[BaseModel]] = set()
    for _, _, spec, _ in specs:
        models.update(m for m in (spec.body, spec.response, spec.query) if m is not None)
    modes: tuple[Literal["validation", "serialization"], ...] = ("validation", "serialization")
    keyed = [(m, mode) for m in models for mode in modes]
    # Every model, and every model nested in one, lands in components/schemas; refs point there.
    refs, schema = models_json_schema(keyed, ref_template=_REF_TEMPLATE)
    components = dict(schema.get("$defs", {}))

    def validation_schema(model: type[BaseModel]) -> dict[str, Any]:
        return components[refs[(model, "validation")]["$ref"].rsplit("/", 1)[1]]

    paths: dict[str, dict[str, Any]] = {}
    for path, method, spec, converters in specs:
        operation: dict[str, Any] = {"summary": spec.summary, "tags": list(spec.tags)}
        operation["x-permission"] = spec.permission
        if spec.permission == SIGNED:
            operation["security"] = [{"nodeSignature": []}]
        elif spec.permission != PUBLIC:
            operation["security"] = [{"bearer": []}]
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": converters[name]}
            for name in re.findall(r"{([^}]+)}", path)
        ]
        if spec.query is not None:
            query = validation_schema(spec.query)
            for name, info in spec.query.model_fields.items():
                parameters.append(
                    {
                        "name": name,
                        "in": "query",
                        "required": info.is_required(),
                        "description": info.description or "",
                        "schema": _parameter_schema(query["properties"][name]),
                    }
                )
        if parameters:
            operation["parameters"] = parameters
        if spec.body is not None and spec.body_kind == "json":
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(spec.body, "validation")]}},
            }
        elif spec.body_kind == "multipart":
            form = validation_schema(spec.body) if spec.body is not None else {}
            operation["requestBody"] = {
                "required": True,
                "content": {"multipart/form-data": _multipart(form, spec.files)},
            }
        content: dict[str, Any] = {}
        if spec.response_kind == "binary":
            content = {"application/octet-stream": {"schema": {"type": "string"}}}
        elif spec.response is not None:
            content = {"application/json": {"schema": refs[(spec.response, "serialization")]}}
        responses: dict[str, Any] = {str(spec.status): {"description": "OK"}}
        if content:
            responses[str(spec.status)]["content"] = content
        responses["default"] = {
            "description": "Error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        operation["responses"] = responses
        paths.setdefault(path, {})[method] = operation

    _document_email_domains(components)
    components["Error"] = {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                "required": ["code", "message"],
            }
        },
        "required": ["error"],
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "nodeSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Grid-Signature",
                    "description": "Ed25519 signature of a node; see docs/network.md.",
                },
            },
        },
    }
