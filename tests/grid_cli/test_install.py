"""A data scientist's install: the SDK and the `grid` command come without the server stack.

`pip install grid-nodes` must not pull in what only a node runs (the web framework, the WSGI
server, the database drivers and migrations, the metrics exporter), and everything in
`grid_cli` must import where those are missing. Nodes and workers install the `node` extra.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# Distributions only a node needs; the import names they provide.
SERVER_STACK = {
    "flask": "flask",
    "gunicorn": "gunicorn",
    "psycopg": "psycopg",
    "psycopg-binary": "psycopg_binary",
    "alembic": "alembic",
    "prometheus-client": "prometheus_client",
    "sqlalchemy": "sqlalchemy",
}


def resolved_requirements(project: str, extras: frozenset[str] = frozenset()) -> set[str]:
    """Every distribution `project` (with `extras`) pulls in, read from installed metadata."""
    seen: set[str] = set()
    pending = [(canonicalize_name(project), extras)]
    while pending:
        name, wanted_extras = pending.pop()
        if name in seen and not wanted_extras:
            continue
        seen.add(name)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue  # an optional dependency for another platform, never installed here
        for line in requires:
            requirement = Requirement(line)
            environments = [{"extra": extra} for extra in wanted_extras] or [{"extra": ""}]
            if requirement.marker and not any(
                requirement.marker.evaluate(env) for env in environments
            ):
                continue
            pending.append((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    return seen


def test_the_client_install_resolves_without_the_server_stack() -> None:
    resolved = resolved_requirements("grid-nodes")
    assert "torch" in resolved and "web3" in resolved  # the walk reaches the SDK's own needs
    assert not resolved & SERVER_STACK.keys(), sorted(resolved & SERVER_STACK.keys())


def test_the_node_extra_brings_the_server_stack() -> None:
    resolved = resolved_requirements("grid-nodes", frozenset({"node"}))
    assert {
        "flask",
        "gunicorn",
        "psycopg",
        "alembic",
        "prometheus-client",
        "sqlalchemy",
    } <= resolved


BLOCK_SERVER_STACK = textwrap.dedent(
    """
    import importlib.abc, pkgutil, sys

    class ServerStackMissing(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, ServerStackMissing())
    """
)


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(
            "import grid_cli as grid\n"
            "assert grid.login and grid.connect and grid.TrainingPlan and grid.GridError",
            id="sdk",
        ),
        pytest.param(
            "import grid_cli\n"
            "for module in pkgutil.walk_packages(grid_cli.__path__, 'grid_cli.'):\n"
            "    if module.name != 'grid_cli.__main__':  # that one runs the command\n"
            "        __import__(module.name)",
            id="every-grid_cli-module",
        ),
        pytest.param(
            "from grid_cli.commands.app import main\nmain(['--help'], standalone_mode=False)",
            id="grid-help",
        ),
    ],
)
def test_grid_cli_imports_without_the_server_stack(code: str) -> None:
    blocked = sorted(SERVER_STACK.values())
    script = f"BLOCKED = {blocked!r}\n{BLOCK_SERVER_STACK}\n{code}\n"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize(
    ("argv", "what"),
    [
        (["domain", "start", "--name", "d", "--port", "1", "--data-dir", "{tmp}"], "A domain node"),
        (
            ["domain", "start", "--name", "d", "--port", "1", "--data-dir", "{tmp}", "--dev"],
            "A domain node",
        ),
        (
            ["network", "start", "--name", "n", "--port", "1", "--data-dir", "{tmp}"],
            "A network node",
        ),
        (["worker", "start", "--domain", "http://127.0.0.1:1", "--token", "t"], "A worker"),
        (["up", "--data-dir", "{tmp}", "--no-chain"], "A local grid"),
    ],
    ids=["domain", "domain-dev", "network", "worker", "up"],
)
def test_running_a_node_without_the_node_extra_says_how_to_install_it(
    argv: list[str], what: str, tmp_path: Path
) -> None:
    blocked = sorted([*SERVER_STACK.values(), "argon2", "opacus"])
    args = [arg.replace("{tmp}", str(tmp_path / "node")) for arg in argv]
    code = f"from grid_cli.commands.app import main\nmain({args!r}, prog_name='grid')"
    script = f"BLOCKED = {blocked!r}\n{BLOCK_SERVER_STACK}\n{code}\n"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert f"{what} needs the node extra" in done.stderr
    assert "pip install 'grid-nodes[node]'" in done.stderr
    assert not (tmp_path / "node").exists()  # refused before anything was written
