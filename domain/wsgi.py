"""WSGI entry point for gunicorn: a domain app configured from the `GRID_*` environment."""

from domain.app import create_app

app = create_app()
