"""Compile Solidity with the pinned npm `solc` (via `compile.mjs`) into Grid's artifact format."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from registry.artifact import PACKAGE_DIR

COMPILE_SCRIPT = PACKAGE_DIR / "compile.mjs"


class BuildError(RuntimeError):
    """The compiler is missing or refused the source; the message says which."""


def compile_source(source: Path, contract: str) -> str:
    """The artifact JSON text for `contract` in `source`, exactly as `make contracts` writes it."""
    node = shutil.which("node")
    if node is None:
        raise BuildError("node is not installed: the contract compiles with the npm `solc`")
    done = subprocess.run(
        [node, str(COMPILE_SCRIPT), str(source), contract],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if done.returncode != 0:
        hint = " (run `make` to install it)" if "Cannot find package 'solc'" in done.stderr else ""
        raise BuildError(f"compiling {source.name} failed{hint}:\n{done.stderr.strip()}")
    return done.stdout


def compile_contract(source: Path, contract: str) -> dict[str, Any]:
    artifact: dict[str, Any] = json.loads(compile_source(source, contract))
    return artifact
