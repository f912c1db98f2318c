"""The compiled GridRegistry contract (ABI and bytecode) that ships with the package."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).parent
ARTIFACT_PATH = PACKAGE_DIR / "GridRegistry.json"
SOURCE_PATH = PACKAGE_DIR / "contracts" / "GridRegistry.sol"


@dataclass(frozen=True)
class Artifact:
    contract_name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler: dict[str, Any]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Artifact:
        return cls(
            contract_name=data["contractName"],
            abi=data["abi"],
            bytecode=data["bytecode"],
            deployed_bytecode=data["deployedBytecode"],
            compiler=data["compiler"],
        )


@cache
def registry_artifact() -> Artifact:
    """The committed artifact of `contracts/GridRegistry.sol` (rebuilt by `make contracts`)."""
    return Artifact.from_json(json.loads(ARTIFACT_PATH.read_text()))
