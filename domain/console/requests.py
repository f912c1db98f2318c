"""Requests in the console: the list, a reviewer's view of one request, approve and deny."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from pydantic import ValidationError
from werkzeug.wrappers import Response

from domain import federated, privacy, request_access
from domain.auth import current_user
from domain.console.common import bp
from domain.context import blobs
from domain.dataset_files import input_shape
from domain.job_escrow import job_escrow
from domain.models import AccessRequest, Dataset
from domain.permissions import Permission
from domain.settings import load_settings
from grid_common.analytics.plan import AnalysisPlan
from grid_common.api import AUTHENTICATED
from grid_common.console import page, validated
from grid_common.console.analytics import AnalysisSummary, summarize
from grid_common.db import db_session
from grid_common.errors import NotFound
from grid_common.federated_schemas import Invitation
from grid_common.model_archive import ModelArchiveError, inspect_archive
from grid_common.plan import TrainingPlan
from grid_common.schemas import (
    JOB_KINDS,
    ApprovalIn,
    DatasetSchema,
    DecisionIn,
    JobLimits,
    RequestOut,
    RequestQuery,
    RequestStatus,
)

_STATUSES: tuple[RequestStatus, ...] = ("pending", "approved", "denied")


@dataclass(frozen=True)
class DatasetBudget:
    """What a request would spend on one dataset, against the budgets that bind its requester."""

    name: str
    exists: bool
    lines: list[privacy.BudgetLine]


@dataclass(frozen=True)
class DatasetInput:
    """The features one dataset feeds a model: their per-row shape, and the image mode if any."""

    name: str
    shape: list[int] | None
    image_mode: str | None


@page(bp, "/requests", permission=AUTHENTICATED, summary="Requests: all for reviewers, else own")
def requests_page() -> str:
    status = request.args.get("status")
    query = RequestQuery(status=status if status in _STATUSES else None)
    items = sorted(
        request_access.list_requests(db_session(), current_user(), query).items,
        key=lambda r: r.id,
        reverse=True,
    )
    return render_template(
        "domain_console/requests.html", items=items, status=query.status, statuses=_STATUSES
    )


def _model_summary(row: AccessRequest) -> tuple[dict[str, Any] | None, str | None, int | None]:
    """The model as a reviewer reads it (from the stored .pt2, nothing run), or why not."""
    if row.model_digest is None or row.weights_digest is None:
        return None, None, None
    weights_bytes = blobs().path(row.weights_digest).stat().st_size
    try:
        return inspect_archive(blobs().path(row.model_digest)).summary(), None, weights_bytes
    except ModelArchiveError as exc:
        return None, str(exc), weights_bytes


def _budgets(row: AccessRequest) -> list[DatasetBudget]:
    session = db_session()
    found = []
    for named in row.datasets:
        dataset = session.get(Dataset, named.dataset_id) if named.dataset_id else None
        spender = privacy.Spender.of_request(session, row)
        lines = privacy.budget_lines(session, dataset, spender) if dataset else []
        found.append(DatasetBudget(named.dataset_name, dataset is not None, lines))
    return found


def _input_shapes(row: AccessRequest) -> list[DatasetInput]:
    """Per dataset, the shape of the features the model is fed (None: deleted or unlabelled)."""
    session = db_session()
    found = []
    for named in row.datasets:
        dataset = session.get(Dataset, named.dataset_id) if named.dataset_id else None
        schema = DatasetSchema.model_validate(dataset.schema) if dataset else None
        dims = input_shape(schema, dataset.label) if dataset and schema else None
        found.append(DatasetInput(named.dataset_name, dims, schema.image_mode if schema else None))
    return found


def _training_plan(shown: RequestOut) -> TrainingPlan | None:
    """A job's or a federated training's plan; an analysis has none."""
    if shown.plan is None or shown.kind == "analytics":
        return None
    return TrainingPlan.model_validate(shown.plan)


def _analysis(shown: RequestOut) -> tuple[AnalysisSummary | None, str | None]:
    """An analysis in words, or why its plan cannot be read (the network signed what it sent)."""
    if shown.kind != "analytics" or shown.plan is None:
        return None, None
    try:
        return summarize(AnalysisPlan.model_validate(shown.plan)), None
    except ValidationError as exc:
        return None, str(exc.errors()[0]["msg"])


@page(bp, "/requests/<int:request_id>", permission=AUTHENTICATED, summary="One request, explained")
def request_detail(request_id: int) -> str:
    shown = request_access.visible_request(db_session(), current_user(), request_id)
    row = db_session().get(AccessRequest, request_id)
    if row is None:
        raise NotFound(f"No request with id {request_id}.")
    summary, model_problem, weights_bytes = _model_summary(row)
    plan = _training_plan(shown)
    analysis, analysis_problem = _analysis(shown)
    dp = plan.dp if plan else analysis.plan.dp if analysis else None
    participation = federated.participation_of(db_session(), request_id)
    invitation = Invitation.model_validate(participation.invitation) if participation else None
    return render_template(
        "domain_console/request_detail.html",
        item=shown,
        is_job=shown.kind in JOB_KINDS,
        invitation=invitation,
        plan=plan,
        analysis=analysis,
        analysis_problem=analysis_problem,
        epsilon=dp.epsilon if dp else None,
        # Only a plan that was read tells that the job has no DP (a budget then refuses it).
        has_plan=plan is not None or analysis is not None,
        min_group_size=participation.min_group_size if participation else None,
        model=summary,
        model_problem=model_problem,
        weights_bytes=weights_bytes,
        budgets=_budgets(row),
        input_shapes=_input_shapes(row),
        limits=load_settings(db_session()).job_limits,
        escrow=job_escrow(db_session(), request_id),
    )


def _approval_form() -> ApprovalIn:
    form = request.form
    reason = form.get("reason", "")
    if "cpu_seconds" not in form:
        return validated(ApprovalIn, {"reason": reason})
    limits = validated(
        JobLimits,
        {k: form.get(k, "") for k in ("cpu_seconds", "memory_mb", "wall_seconds")},
    )
    return ApprovalIn(
        reason=reason,
        limits=limits,
        release_on_completion=form.get("release_on_completion") == "on",
    )


@page(
    bp,
    "/requests/<int:request_id>/approve",
    methods=["POST"],
    permission=Permission.TRIAGE_REQUESTS,
    summary="Approve a pending request",
)
def approve_request(request_id: int) -> Response:
    decided = request_access.approve(db_session(), request_id, _approval_form())
    flash(f"Request {request_id} approved.", "success")
    if decided.kind == "job":
        return redirect(url_for("console.job_detail", job_id=request_id))
    return redirect(url_for("console.request_detail", request_id=request_id))


@page(
    bp,
    "/requests/<int:request_id>/deny",
    methods=["POST"],
    permission=Permission.TRIAGE_REQUESTS,
    summary="Deny a pending request",
)
def deny_request(request_id: int) -> Response:
    body = validated(DecisionIn, {"reason": request.form.get("reason", "")})
    request_access.deny(db_session(), request_id, body)
    flash(f"Request {request_id} denied.", "success")
    return redirect(url_for("console.request_detail", request_id=request_id))
