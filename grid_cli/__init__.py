"""Grid's Python client and `grid` command: sign in to a domain, share data, review requests."""

from grid_cli.client import (
    Dataset,
    DatasetCollection,
    DomainClient,
    Request,
    RequestCollection,
    connect,
    login,
)
from grid_cli.http import GridError

__all__ = [
    "Dataset",
    "DatasetCollection",
    "DomainClient",
    "GridError",
    "Request",
    "RequestCollection",
    "connect",
    "login",
]
