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
from grid_cli.jobs import Job, JobCollection, JobFailed
from grid_common.plan import DifferentialPrivacy, TrainingPlan

__all__ = [
    "Dataset",
    "DatasetCollection",
    "DifferentialPrivacy",
    "DomainClient",
    "GridError",
    "Job",
    "JobCollection",
    "JobFailed",
    "Request",
    "RequestCollection",
    "TrainingPlan",
    "connect",
    "login",
]
