"""The committed contract artifact is exactly what the pinned compiler makes of the source."""

from __future__ import annotations

import json
from pathlib import Path

from registry.artifact import ARTIFACT_PATH, SOURCE_PATH, registry_artifact
from registry.build import compile_source

ROOT = Path(__file__).parents[2]


def test_committed_artifact_matches_a_fresh_compile() -> None:
    fresh = compile_source(SOURCE_PATH, "GridRegistry")
    assert fresh == ARTIFACT_PATH.read_text(), (
        "registry/GridRegistry.json is stale: run `make contracts` and commit the result"
    )


def test_compiler_is_pinned_exactly_with_optimizer_and_evm_version() -> None:
    package = json.loads((ROOT / "package.json").read_text())
    pins = {**package.get("dependencies", {}), **package.get("devDependencies", {})}
    assert all(version[0].isdigit() for version in pins.values()), pins  # no ranges
    compiler = registry_artifact().compiler
    assert compiler["solc"].startswith(pins["solc"] + "+")
    assert compiler["optimizer"] == {"enabled": True, "runs": 200}
    assert compiler["evmVersion"] == "cancun"
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/solc"]["version"] == pins["solc"]


def test_any_change_to_the_source_changes_the_artifact(tmp_path: Path) -> None:
    edited = tmp_path / SOURCE_PATH.name
    edited.write_text(
        SOURCE_PATH.read_text().replace("MAX_PARTICIPANTS = 256", "MAX_PARTICIPANTS = 255")
    )
    assert compile_source(edited, "GridRegistry") != ARTIFACT_PATH.read_text()
