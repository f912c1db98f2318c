"""gunicorn settings for Grid nodes (`-c python:grid_common.gunicorn_conf`): logs, metrics, stop.

Each gunicorn worker is its own process, so request counters live in files that every worker
writes and `/metrics` sums (prometheus_client's multiprocess mode). The directory must be
known before prometheus_client is first imported, which is why it is chosen here: gunicorn
reads this module before it loads the app.

A worker holds the master's signal handlers from its fork until it installs its own; a SIGTERM
in between would land in the master's queue inside the worker, where nobody reads it, and the
worker would run on until the master kills it at the graceful timeout. On a busy machine that
window is wide enough to hit, so stop signals stay blocked across it and reach the worker once
its own handlers are in place.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from typing import Any

from grid_common.logs import gunicorn_logconfig

_OWN_DIR = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _OWN_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="grid-metrics-")

logconfig_dict = gunicorn_logconfig()
# gunicorn's control socket is one path per user (~/.gunicorn/gunicorn.ctl) shared by every
# gunicorn on the machine: nodes side by side would take it from each other. Grid has no use
# for it, and stopping its thread around each fork slows worker starts down.
control_socket_disable = True

_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT}


def _unblock_stop_signals() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


# The master delivers its own stop signals again as soon as the fork returns.
os.register_at_fork(after_in_parent=_unblock_stop_signals)


def pre_fork(_server: Any, _worker: Any) -> None:
    """In the master, just before a worker's fork: hold stop signals (see the module doc)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)


def post_worker_init(_worker: Any) -> None:
    """In the worker, its handlers installed: a stop signal sent meanwhile arrives now.

    A graceful stop (SIGTERM) first tells the long polls to answer (`long_poll.STOPPING`), so
    the worker does not wait out a lease or state request that waits for news.
    """
    from grid_common.long_poll import STOPPING  # the app is loaded by now

    graceful = signal.getsignal(signal.SIGTERM)

    def stop(signum: int, frame: Any) -> None:
        STOPPING.set()
        if callable(graceful):
            graceful(signum, frame)

    signal.signal(signal.SIGTERM, stop)
    _unblock_stop_signals()


def on_exit(_server: Any) -> None:
    if _OWN_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
