"""Start a node: gunicorn in production, Flask's development server with `--dev`."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from grid_common.logs import configure_logging

# What a node imports that `pip install grid-nodes` leaves out (the `node` extra brings them).
NODE_MODULES = ("flask", "sqlalchemy", "alembic", "argon2", "prometheus_client", "gunicorn")
# What a worker needs beyond the SDK: DP-SGD.
WORKER_MODULES = ("opacus",)


class NodeExtraMissing(RuntimeError):
    """A node or a worker was asked to run where only the client is installed."""


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def require_node_extra(what: str, modules: Sequence[str] = NODE_MODULES) -> None:
    """Raise NodeExtraMissing naming the missing modules and the install command."""
    missing = [module for module in modules if not _installed(module)]
    if missing:
        raise NodeExtraMissing(
            f"{what} needs the node extra, which is not installed here (missing: "
            f"{', '.join(missing)}); install it with: pip install 'grid-nodes[node]'"
        )


@dataclass(frozen=True)
class DomainLaunch:
    """Where and how a node runs; `node` names its package: "domain" or "network"."""

    name: str
    port: int
    data_dir: Path
    host: str = "127.0.0.1"
    workers: int = 2
    node: str = "domain"
    threads: int = 1

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The node's environment: the caller's (GRID_DATABASE_URL included) plus name and dir."""
        env = dict(os.environ if base is None else base)
        env["GRID_NODE_NAME"] = self.name
        env["GRID_DATA_DIR"] = str(self.data_dir.expanduser().resolve())
        if self.node == "domain" and self.threads == 1:
            # A sync gunicorn worker would be held by each waiting lease: answer at once instead.
            env.setdefault("GRID_LEASE_WAIT_S", "0")
        return env

    def gunicorn_command(self) -> list[str]:
        # --preload migrates the database once in the master instead of racing in each worker.
        command = [sys.executable, "-m", "gunicorn", "--preload", "--workers", str(self.workers)]
        # JSON logs for gunicorn's own lines, and request metrics summed across its workers.
        command += ["--config", "python:grid_common.gunicorn_conf"]
        if self.threads > 1:
            command += ["--threads", str(self.threads)]  # gunicorn's threaded worker (gthread)
        return [*command, "--bind", f"{self.host}:{self.port}", f"{self.node}.wsgi:app"]


def exec_gunicorn(launch: DomainLaunch) -> None:
    """Replace this process with gunicorn serving the node; returns only on failure."""
    require_node_extra(f"A {launch.node} node")
    command = launch.gunicorn_command()
    os.execvpe(command[0], command, launch.environment())


def run_dev_server(launch: DomainLaunch) -> None:
    """Serve the node with Flask's single-process development server (no debugger)."""
    require_node_extra(f"A {launch.node} node", [m for m in NODE_MODULES if m != "gunicorn"])
    os.environ.update(launch.environment())
    configure_logging()
    app = importlib.import_module(launch.node).create_app()
    if app.config["GRID"].background:
        app.extensions["background"].start()
    app.run(host=launch.host, port=launch.port, debug=False, use_reloader=False)
