"""`grid demo` (what `make demo` runs) walks the whole data-owner flow and exits cleanly."""

from __future__ import annotations

import os
import subprocess
import sys


def test_demo_runs_the_data_owner_flow_to_the_end() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "grid_cli", "demo"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert result.returncode == 0, result.stderr
    for expected in (
        "uploaded 898 rows",
        "refused: Your role (data_scientist) lacks the 'read_private_data' permission.",
        "request #1: pending",
        "the data scientist now sees: approved",
        "chain intact: True",
    ):
        assert expected in result.stdout
