"""gunicorn settings for Grid nodes (`-c python:grid_common.gunicorn_conf`): logs and metrics.

Each gunicorn worker is its own process, so request counters live in files that every worker
writes and `/metrics` sums (prometheus_client's multiprocess mode). The directory must be
known before prometheus_client is first imported, which is why it is chosen here: gunicorn
reads this module before it loads the app.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from grid_common.logs import gunicorn_logconfig

_OWN_DIR = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _OWN_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="grid-metrics-")

logconfig_dict = gunicorn_logconfig()


def on_exit(_server: Any) -> None:
    if _OWN_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
