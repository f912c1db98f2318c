"""WSGI entry point for gunicorn (with --preload): a network app from the `GRID_*` environment."""

import gc

from grid_common.logs import configure_logging
from network.app import create_app

configure_logging()
app = create_app()
if app.config["GRID"].background:
    app.extensions["background"].start_in_forked_workers()
# Move everything loaded so far out of the collector's reach, so forked workers neither
# rescan nor copy-on-write the shared start-up heap.
gc.freeze()
