"""Requests: data scientists ask for a job; owners approve or deny, or rules do.

Plain access requests were removed: their approval granted nothing (every signed-in account
reads metadata and mocks, and each job is approved on its own), so an owner could believe they
had granted or withheld something they had not. Past ones stay on record.
"""

from __future__ import annotations

from flask import Blueprint, request

from domain import request_access
from domain.auth import current_user
from domain.permissions import Permission
from grid_common.api import AUTHENTICATED, route
from grid_common.db import db_session
from grid_common.schemas import (
    ApprovalIn,
    DecisionIn,
    JobRequestForm,
    RequestList,
    RequestOut,
    RequestQuery,
)

bp = Blueprint("requests", __name__, url_prefix="/api/v1/requests")


@route(
    bp,
    "/jobs",
    methods=["POST"],
    permission=Permission.SUBMIT_REQUESTS,
    summary="Ask to train a model (.pt2 + safetensors) on datasets with a training plan",
    body=JobRequestForm,
    body_kind="multipart",
    files=("model", "weights"),
    response=RequestOut,
    status=201,
)
def file_job_request(body: JobRequestForm) -> RequestOut:
    return request_access.file_job_request(db_session(), current_user(), body, request.files)


@route(
    bp,
    "",
    permission=AUTHENTICATED,
    summary="Requests: all of them for reviewers, your own otherwise",
    query=RequestQuery,
    response=RequestList,
)
def list_requests(query: RequestQuery) -> RequestList:
    return request_access.list_requests(db_session(), current_user(), query)


@route(
    bp, "/<int:request_id>", permission=AUTHENTICATED, summary="One request", response=RequestOut
)
def get_request(request_id: int) -> RequestOut:
    return request_access.visible_request(db_session(), current_user(), request_id)


@route(
    bp,
    "/<int:request_id>/approve",
    methods=["POST"],
    permission=Permission.TRIAGE_REQUESTS,
    summary="Approve a pending request",
    body=ApprovalIn,
    response=RequestOut,
)
def approve(request_id: int, body: ApprovalIn) -> RequestOut:
    return request_access.approve(db_session(), request_id, body)


@route(
    bp,
    "/<int:request_id>/deny",
    methods=["POST"],
    permission=Permission.TRIAGE_REQUESTS,
    summary="Deny a pending request",
    body=DecisionIn,
    response=RequestOut,
)
def deny(request_id: int, body: DecisionIn) -> RequestOut:
    return request_access.deny(db_session(), request_id, body)
