"""Schemathesis against a node's own OpenAPI document, in process, with a fixed seed.

Each operation gets a fixed number of schema-valid and schema-invalid requests. A finding is a
server error (any request), a schema-valid request the node refuses with something other than
401/403/404/409 (schemathesis's `positive_data_acceptance`; a refused file content aside), an
unresolved `$ref`, or a 405 without an `Allow` header listing the documented methods.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import positive_data_acceptance

EXAMPLES = 20
# Refusals of an uploaded file's content (a dataset, a .pt2 model, safetensors weights): the
# document says a part is binary, and no schema can say which bytes make a valid archive.
FILE_CONTENT_CODES = {"invalid_dataset", "invalid_model", "invalid_weights"}
# The discard port on loopback: a connection there is refused at once.
_NOWHERE = "http://127.0.0.1:9"
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@dataclass
class Findings:
    """What the fuzzer met, per kind; every list names the operation and the request."""

    cases: int = 0
    server_errors: list[str] = field(default_factory=list)
    rejected_valid: list[str] = field(default_factory=list)
    unresolved_refs: list[str] = field(default_factory=list)
    method_not_allowed: int = 0
    no_allow_header: list[str] = field(default_factory=list)

    def rejected_operations(self) -> set[str]:
        """The operations that refused a schema-valid request at least once."""
        return {line.split(":", 1)[0] for line in self.rejected_valid}

    def summary(self) -> str:
        """One line of counts, as the tests print it."""
        return (
            f"{self.cases} cases: {len(self.server_errors)} server errors, "
            f"{len(self.rejected_operations())} operations rejecting schema-valid requests, "
            f"{len(self.no_allow_header)} of {self.method_not_allowed} 405s without Allow, "
            f"{len(self.unresolved_refs)} unresolved $refs"
        )


def unresolved_refs(document: dict[str, Any]) -> list[str]:
    """Every local `$ref` of the document that points at nothing."""
    missing = []

    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                yield ref
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    for ref in walk(document):
        target: Any = document
        for part in ref.removeprefix("#/").split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        if not ref.startswith("#/") or target is None:
            missing.append(ref)
    return missing


def fuzz(
    app: Flask,
    headers_for: Callable[[str], dict[str, str]],
    beyond_schema: Callable[[str], bool] = lambda message: False,
) -> Findings:
    """Fuzz every operation of `app`'s /api/v1/openapi.json; `headers_for(path)` authenticates.

    `beyond_schema(error message)` names refusals of rules no JSON Schema can state (a name
    that must exist on the node, a bound between two fields): those are not findings.
    """
    client = app.test_client()
    document = client.get("/api/v1/openapi.json").json
    assert document is not None
    findings = Findings(unresolved_refs=unresolved_refs(document))
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    for result in schema.get_all_operations():
        operation = result.ok()
        headers = headers_for(operation.path)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _run(operation, mode, headers, findings, beyond_schema)
    _check_405s(client, document, headers_for, findings)
    return findings


def _run(
    operation: Any,
    mode: GenerationMode,
    headers: dict[str, str],
    found: Findings,
    beyond_schema: Callable[[str], bool],
) -> None:
    checks = [not_a_server_error]
    if mode == GenerationMode.POSITIVE:
        checks.append(positive_data_acceptance)

    # Shrinking is off: every example runs once and a finding is recorded, not raised.
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        found.cases += 1
        if isinstance(case.body, dict) and isinstance(case.body.get("url"), str):
            case.body["url"] = _NOWHERE  # a node URL the API calls: no traffic leaves the test
        response = case.call(headers=headers)
        try:
            case.validate_response(response, checks=checks, headers=headers)
        except FailureGroup:
            line = f"{operation.label}: {response.status_code} {response.text[:300]}"
            code, message = _error(response)
            if response.status_code == 502 and code == "network_unavailable":
                return  # the node it was told to call did not answer: the right reply
            if response.status_code >= 500:
                found.server_errors.append(line)
            elif code not in FILE_CONTENT_CODES and not beyond_schema(message):
                found.rejected_valid.append(line)

    try:
        run()
    except Unsatisfiable:
        assert mode == GenerationMode.NEGATIVE  # nothing to break: no parameter and no body


def _error(response: Any) -> tuple[str, str]:
    """The JSON error's code and message; empty strings for any other body."""
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return "", ""


def _check_405s(
    client: FlaskClient,
    document: dict[str, Any],
    headers_for: Callable[[str], dict[str, str]],
    found: Findings,
) -> None:
    """Every method a path does not document gets a 405 that lists the ones it does."""
    for path, operations in document["paths"].items():
        documented = {method.upper() for method in operations}
        url = "".join(part if not part.startswith("{") else "1" for part in _split(path))
        for method in sorted(set(_METHODS) - documented):
            response = client.open(url, method=method, headers=headers_for(path))
            if response.status_code != 405:
                continue
            found.method_not_allowed += 1
            allowed = {m.strip() for m in response.headers.get("Allow", "").split(",") if m}
            if not documented <= allowed or response.json is None or "error" not in response.json:
                found.no_allow_header.append(f"{method} {path}: Allow={sorted(allowed)}")


def _split(path: str) -> list[str]:
    """`/a/{b}/c` as ['/a/', '{b}', '/c']."""
    parts, rest = [], path
    while "{" in rest:
        head, _, tail = rest.partition("{")
        name, _, rest = tail.partition("}")
        parts += [head, "{" + name + "}"]
    return [*parts, rest]
