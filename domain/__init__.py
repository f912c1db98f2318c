"""Grid domain node: a data owner's datasets, users, requests and audit log behind a JSON API."""

from domain.app import create_app
from domain.config import DomainConfig

__all__ = ["DomainConfig", "create_app"]
