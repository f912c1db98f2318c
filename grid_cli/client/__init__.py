"""The data scientist's SDK: clients for domains and networks, jobs, federated jobs, analytics.

Everything here talks to nodes over HTTP through `grid_common.transport`; nothing here starts a
node or a worker. `grid_cli` re-exports these names (`import grid_cli as grid`).

Modules, from the bottom up: `node` (one node, its session and tokens), `collections`
(datasets and requests as read), `jobs`, `federated` and `analytics` (jobs as they run),
`export` and `model_upload` (a model checked, exported and sent), `domain` and `network` (the
two clients), `connect` (signing in to either).
"""

from grid_cli.client.analytics import Analysis, AnalyticsJob, HistogramCounts
from grid_cli.client.collections import Dataset, DatasetCollection, Request, RequestCollection
from grid_cli.client.connect import connect, login, login_network
from grid_cli.client.domain import DomainClient
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
