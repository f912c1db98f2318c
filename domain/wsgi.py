"""WSGI entry point for gunicorn: a domain app configured from the `GRID_*` environment."""

import gc

from domain.app import create_app
from grid_common.logs import configure_logging

configure_logging()
app = create_app()
if app.config["GRID"].background:
    app.extensions["background"].start_in_forked_workers()
# gunicorn --preload forks workers from this module: move everything loaded so far out of the
# collector's reach, so workers neither rescan nor copy-on-write the shared start-up heap.
gc.freeze()
