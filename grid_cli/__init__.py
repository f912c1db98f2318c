"""Grid's Python client and `grid` command: sign in to a domain, share data, review requests."""

from grid_cli.client.analytics import Analysis, AnalyticsJob, HistogramCounts
from grid_cli.client.domain import (
    Dataset,
    DatasetCollection,
    DomainClient,
    Request,
    RequestCollection,
    connect,
    login,
    login_network,
)
from grid_cli.client.federated import FederatedJob, FederatedJobFailed
from grid_cli.client.jobs import Job, JobCollection, JobFailed
from grid_cli.client.network import DatasetInfo, DatasetRef, NetworkClient, NetworkDomain
from grid_common.analytics.plan import AnalyticsDp, AnalyticsError
from grid_common.plan import DifferentialPrivacy, TrainingPlan
from grid_common.schemas import JobLimits
from grid_common.transport import GridError

__all__ = [
    "Analysis",
    "AnalyticsDp",
    "AnalyticsError",
    "AnalyticsJob",
    "Dataset",
    "DatasetCollection",
    "DatasetInfo",
    "DatasetRef",
    "DifferentialPrivacy",
    "DomainClient",
    "FederatedJob",
    "FederatedJobFailed",
    "GridError",
    "HistogramCounts",
    "Job",
    "JobCollection",
    "JobFailed",
    "JobLimits",
    "NetworkClient",
    "NetworkDomain",
    "Request",
    "RequestCollection",
    "TrainingPlan",
    "connect",
    "login",
    "login_network",
]
