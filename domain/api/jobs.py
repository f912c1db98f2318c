"""Jobs as people see them: status and progress, logs, cancel, release, the result download."""

from __future__ import annotations

from flask import Blueprint, Response, send_file

from domain import job_access
from domain.auth import current_user
from domain.permissions import Permission
from grid_common.api import AUTHENTICATED, route
from grid_common.db import db_session
from grid_common.schemas import JobEventList, JobEventQuery, JobList, JobOut, JobQuery

bp = Blueprint("jobs", __name__, url_prefix="/api/v1/jobs")


@route(
    bp,
    "",
    permission=AUTHENTICATED,
    summary="Jobs: all of them for reviewers, your own otherwise",
    query=JobQuery,
    response=JobList,
)
def list_jobs(query: JobQuery) -> JobList:
    return job_access.list_jobs(db_session(), current_user(), query)


@route(bp, "/<int:job_id>", permission=AUTHENTICATED, summary="One job", response=JobOut)
def get_job(job_id: int) -> JobOut:
    return job_access.visible_job(db_session(), current_user(), job_id)


@route(
    bp,
    "/<int:job_id>/events",
    permission=AUTHENTICATED,
    summary="Progress points and log lines, oldest first",
    query=JobEventQuery,
    response=JobEventList,
)
def job_events(job_id: int, query: JobEventQuery) -> JobEventList:
    return job_access.job_events(db_session(), current_user(), job_id, query)


@route(
    bp,
    "/<int:job_id>/cancel",
    methods=["POST"],
    permission=AUTHENTICATED,
    summary="Cancel a job (its data scientist or a reviewer); a running one stops mid-epoch",
    response=JobOut,
)
def cancel_job(job_id: int) -> JobOut:
    return job_access.cancel_job(db_session(), current_user(), job_id)


@route(
    bp,
    "/<int:job_id>/release",
    methods=["POST"],
    permission=Permission.RELEASE_RESULTS,
    summary="Release a held result to the job's data scientist",
    response=JobOut,
)
def release_result(job_id: int) -> JobOut:
    return job_access.release_result(db_session(), current_user(), job_id)


@route(
    bp,
    "/<int:job_id>/result",
    permission=AUTHENTICATED,
    summary="Download the trained weights (safetensors) once released; owner and admin any time",
    response_kind="binary",
)
def download_result(job_id: int) -> Response:
    return send_file(
        job_access.result_file(db_session(), current_user(), job_id),
        mimetype="application/octet-stream",
        as_attachment=True,
        download_name=f"job-{job_id}-weights.safetensors",
    )
