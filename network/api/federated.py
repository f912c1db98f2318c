"""Federated jobs, the data scientist's side: submit a job or an analysis, follow it, get results.

Training jobs arrive as multipart (spec, model, weights); analyses as a JSON spec alone. The
domains' signed side of the same jobs is `network.api.federated_domains`.
"""

from __future__ import annotations

from flask import Blueprint, Response, request, send_file

from grid_common.api import route
from grid_common.db import db_session
from grid_common.federated_schemas import (
    AnalyticsSpec,
    FederatedJobForm,
    FederatedJobList,
    FederatedJobOut,
    RoundList,
)
from network import federated_access
from network.auth import Permission, current_operator
from network.context import blobs

bp = Blueprint("federated", __name__, url_prefix="/api/v1/fl")


@route(
    bp,
    "/jobs",
    methods=["POST"],
    permission=Permission.SUBMIT_FEDERATED,
    summary="Submit a federated job: the spec, the model (.pt2) and its initial weights",
    body=FederatedJobForm,
    body_kind="multipart",
    files=("model", "weights"),
    response=FederatedJobOut,
    status=201,
)
def submit(body: FederatedJobForm) -> FederatedJobOut:
    return federated_access.submit(db_session(), current_operator(), body, request.files)


@route(
    bp,
    "/analytics",
    methods=["POST"],
    permission=Permission.SUBMIT_FEDERATED,
    summary="Submit an analysis: statistics or an exact model over datasets on several domains",
    body=AnalyticsSpec,
    response=FederatedJobOut,
    status=201,
)
def submit_analysis(body: AnalyticsSpec) -> FederatedJobOut:
    return federated_access.submit_analysis(db_session(), current_operator(), body)


@route(
    bp,
    "/jobs",
    permission=Permission.SUBMIT_FEDERATED,
    summary="Federated jobs: your own, or every job for operators",
    response=FederatedJobList,
)
def list_jobs() -> FederatedJobList:
    return federated_access.list_jobs(db_session(), current_operator())


@route(
    bp,
    "/jobs/<int:job_id>",
    permission=Permission.SUBMIT_FEDERATED,
    summary="One federated job: status, participants, the current round",
    response=FederatedJobOut,
)
def get_job(job_id: int) -> FederatedJobOut:
    return federated_access.get_job(db_session(), current_operator(), job_id)


@route(
    bp,
    "/jobs/<int:job_id>/rounds",
    permission=Permission.SUBMIT_FEDERATED,
    summary="Every round of a federated job with its weighted metrics",
    response=RoundList,
)
def list_rounds(job_id: int) -> RoundList:
    return federated_access.list_rounds(db_session(), current_operator(), job_id)


@route(
    bp,
    "/jobs/<int:job_id>/cancel",
    methods=["POST"],
    permission=Permission.SUBMIT_FEDERATED,
    summary="Cancel a federated job; its domains stop at their next step",
    response=FederatedJobOut,
)
def cancel_job(job_id: int) -> FederatedJobOut:
    return federated_access.cancel_job(db_session(), current_operator(), job_id)


@route(
    bp,
    "/jobs/<int:job_id>/model",
    permission=Permission.SUBMIT_FEDERATED,
    summary="The job's model program (.pt2) as submitted",
    response_kind="binary",
)
def job_model(job_id: int) -> Response:
    return send_blob(
        federated_access.model_digest(db_session(), current_operator(), job_id), "model.pt2"
    )


@route(
    bp,
    "/jobs/<int:job_id>/result",
    permission=Permission.SUBMIT_FEDERATED,
    summary="The result, once every participating domain attested the same hash and every "
    "owner whose data is in it released it",
    response_kind="binary",
)
def job_result(job_id: int) -> Response:
    return send_blob(*federated_access.result_file(db_session(), current_operator(), job_id))


def send_blob(digest: str, name: str) -> Response:
    """A stored blob as a binary download named `name`."""
    return send_file(blobs().path(digest), mimetype="application/octet-stream", download_name=name)
