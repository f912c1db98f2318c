"""Requests: data scientists ask for a job; owners approve or deny, or rules do.

Plain access requests were removed: their approval granted nothing (every signed-in account
reads metadata and mocks, and each job is approved on its own), so an owner could believe they
had granted or withheld something they had not. Past ones stay on record.
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, request
from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from domain import federated, jobs, privacy
from domain.api.common import blobs, record
from domain.api.settings import load_settings
from domain.auth import Principal, current_user
from domain.disclosure import request_note
from domain.models import AccessRequest, Dataset, Job, RequestDataset, User
from domain.permissions import Permission, has_permission
from grid_common.api import AUTHENTICATED, route
from grid_common.db import db_session
from grid_common.errors import Conflict, NotFound, Unprocessable
from grid_common.federated_schemas import Invitation, peer_protection
from grid_common.plan import TrainingPlan
from grid_common.schemas import (
    JOB_KINDS,
    ApprovalIn,
    AutoApprovalRule,
    DecisionIn,
    JobRequestForm,
    RequestList,
    RequestOut,
    RequestQuery,
)
from grid_common.uploads import check_model_archive, check_safetensors

bp = Blueprint("requests", __name__, url_prefix="/api/v1/requests")

_REQUESTS = AccessRequest.__table__
_NAMES = RequestDataset.__table__
_REQUESTER = User.__table__.alias("requester")
_DECIDER = User.__table__.alias("decider")
# One row per (request, dataset name), with both people's emails: one query for any number.
_REQUESTS_SHOWN = (
    select(
        _REQUESTS,
        _REQUESTER.c.email.label("requester_email"),
        _DECIDER.c.email.label("decider_email"),
        _NAMES.c.dataset_name,
    )
    .outerjoin_from(_REQUESTS, _REQUESTER, _REQUESTER.c.id == _REQUESTS.c.requester_id)
    .outerjoin(_DECIDER, _DECIDER.c.id == _REQUESTS.c.decided_by)
    .outerjoin(_NAMES, _NAMES.c.request_id == _REQUESTS.c.id)
    .order_by(_REQUESTS.c.id, _NAMES.c.dataset_name)
)


def load_requests(*where: ColumnElement[bool]) -> list[RequestOut]:
    """Requests as the API shows them."""
    shown: dict[int, RequestOut] = {}
    for row in db_session().connection().execute(_REQUESTS_SHOWN.where(*where)):
        if row.id not in shown:
            shown[row.id] = RequestOut(
                id=row.id,
                kind=row.kind,
                status=row.status,
                requester=row.requester_email or row.requester_label,
                datasets=[],
                reason=row.reason,
                decision_reason=row.decision_reason,
                decided_by=row.decider_email,
                decided_at=row.decided_at,
                auto_approved=row.auto_approved,
                plan=row.plan,
                created_at=row.created_at,
            )
        if row.dataset_name is not None:
            shown[row.id].datasets.append(row.dataset_name)
    return list(shown.values())


def _load_request(request_id: int) -> RequestOut:
    found = load_requests(_REQUESTS.c.id == request_id)
    if not found:
        raise NotFound(f"No request with id {request_id}.")
    return found[0]


def _may_triage(user: Principal) -> bool:
    return has_permission(user.role, Permission.TRIAGE_REQUESTS)


def _datasets_named(session: Session, names: list[str]) -> list[Dataset]:
    unique = sorted(set(names))
    found = {d.name: d for d in session.scalars(select(Dataset).where(Dataset.name.in_(unique)))}
    missing = [n for n in unique if n not in found]
    if missing:
        raise NotFound(f"No dataset named {', '.join(map(repr, missing))} on this domain.")
    return [found[n] for n in unique]


def rule_matches(
    rule: AutoApprovalRule,
    requester_email: str | None,
    kind: str,
    datasets: list[Dataset],
    plan: dict[str, Any] | None,
    joint: Invitation | None = None,
) -> bool:
    """Whether an auto-approval rule covers a request; a network's requester has no local email.

    `joint` is the signed invitation of a federated job or analysis. A condition a request
    cannot show it meets (rounds of a local job, epsilon of a job without DP) fails the rule.
    """
    if rule.data_scientist is not None and rule.data_scientist.lower() != requester_email:
        return False
    if rule.kind is not None and rule.kind != kind:
        return False
    if rule.dataset_tag is not None and not all(rule.dataset_tag in d.tags for d in datasets):
        return False
    if rule.max_epochs is not None:
        epochs = plan.get("epochs") if plan is not None and kind != "analytics" else None
        if epochs is None or epochs > rule.max_epochs:
            return False
    if rule.max_epsilon is not None:
        epsilon = privacy.requested_epsilon(kind, plan)
        if epsilon is None or epsilon > rule.max_epsilon:
            return False
    if rule.secure_aggregation is not None and (
        joint is None or joint.secure_aggregation != rule.secure_aggregation
    ):
        return False
    if rule.max_rounds is not None and (joint is None or joint.rounds > rule.max_rounds):
        return False
    return rule.min_peers is None or (joint is not None and joint.min_domains >= rule.min_peers)


def start_job(session: Session, item: AccessRequest, approval: jobs.Approval) -> None:
    """Queue an approved job request, charging its epsilon; refused if a budget ran out since."""
    epsilon = privacy.requested_epsilon(item.kind, item.plan)
    datasets = jobs.request_datasets(session, item)
    if datasets is None:
        raise Conflict(
            f"A dataset of request {item.id} was deleted; it cannot run.", code="dataset_deleted"
        )
    spender = privacy.Spender.of_request(session, item)
    try:
        privacy.check_budget(session, datasets, spender, epsilon)
    except privacy.BudgetExceeded as exc:
        raise Conflict(str(exc), code="privacy_budget_exceeded") from None
    jobs.create_job(session, item, approval)
    privacy.charge(session, item.id, datasets, spender, epsilon)


def _file_request(
    session: Session,
    *,
    kind: str,
    reason: str,
    datasets: list[Dataset],
    plan: TrainingPlan | None = None,
    model_digest: str | None = None,
    weights_digest: str | None = None,
) -> AccessRequest:
    user = current_user()
    item = AccessRequest(
        kind=kind,
        requester_id=user.id,
        reason=reason,
        plan=plan.model_dump(mode="json") if plan else None,
        model_digest=model_digest,
        weights_digest=weights_digest,
        datasets=[RequestDataset(dataset_name=d.name, dataset_id=d.id) for d in datasets],
    )
    session.add(item)
    session.flush()
    record(
        session,
        "requests.filed",
        f"request:{item.id}",
        kind=kind,
        datasets=[d.name for d in datasets],
    )
    settings = load_settings(session)
    rules = settings.auto_approval
    shown = plan.model_dump(mode="json") if plan else None
    matched = next((r for r in rules if rule_matches(r, user.email, kind, datasets, shown)), None)
    if matched is not None:
        item.status, item.auto_approved = "approved", True
        item.decided_at = datetime.now(UTC)
        item.decision_reason = "Approved automatically by the domain's auto-approval rule."
        record(
            session,
            "requests.auto_approved",
            f"request:{item.id}",
            rule=matched.model_dump(mode="json"),
        )
        approval = jobs.Approval(settings.job_limits, matched.release_on_completion)
        start_job(session, item, approval)
    session.commit()
    return item


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
    session = db_session()
    datasets = _datasets_named(session, body.datasets)
    try:
        epsilon = body.plan.dp.epsilon if body.plan.dp is not None else None
        privacy.check_budget(session, datasets, privacy.Spender(user_id=current_user().id), epsilon)
    except privacy.BudgetExceeded as exc:
        raise Unprocessable(str(exc), code="privacy_budget_exceeded") from None
    parts = {}
    for field in ("model", "weights"):
        file = request.files.get(field)
        if file is None:
            raise Unprocessable(f"Missing the '{field}' file part of the job request.")
        parts[field] = file
    with ExitStack() as stack:
        staged = {}
        for field, file in parts.items():
            staged[field] = stack.enter_context(blobs().staging())
            file.save(staged[field])
        check_model_archive(staged["model"], dp=body.plan.dp is not None)
        check_safetensors(staged["weights"], "weights")
        model_digest, _, _ = blobs().commit(staged["model"])
        weights_digest, _, _ = blobs().commit(staged["weights"])
    item = _file_request(
        session,
        kind="job",
        reason=body.reason,
        datasets=datasets,
        plan=body.plan,
        model_digest=model_digest,
        weights_digest=weights_digest,
    )
    return _load_request(item.id)


@route(
    bp,
    "",
    permission=AUTHENTICATED,
    summary="Requests: all of them for reviewers, your own otherwise",
    query=RequestQuery,
    response=RequestList,
)
def list_requests(query: RequestQuery) -> RequestList:
    where = []
    user = current_user()
    if not _may_triage(user):
        where.append(_REQUESTS.c.requester_id == user.id)
    if query.status:
        where.append(_REQUESTS.c.status == query.status)
    return RequestList(items=load_requests(*where))


@route(
    bp, "/<int:request_id>", permission=AUTHENTICATED, summary="One request", response=RequestOut
)
def get_request(request_id: int) -> RequestOut:
    found = load_requests(_REQUESTS.c.id == request_id)
    user = current_user()
    if not found or (found[0].requester != user.email and not _may_triage(user)):
        raise NotFound(f"No request with id {request_id}.")
    participation = federated.participation_of(db_session(), request_id)
    if participation is not None:
        invitation = Invitation.model_validate(participation.invitation)
        found[0].peers = peer_protection(invitation, participation.min_peers)[1]
    if found[0].kind in JOB_KINDS:
        # Until approval the setting as it stands; from then on the one recorded with the job.
        job = db_session().get(Job, request_id)
        live = job.live_metrics if job else load_settings(db_session()).live_metrics
        found[0].live_metrics = request_note(found[0].plan, live)
    return found[0]


def _decide(request_id: int, status: str, body: DecisionIn) -> RequestOut:
    session = db_session()
    item = session.get(AccessRequest, request_id, with_for_update=True)
    if item is None:
        raise NotFound(f"No request with id {request_id}.")
    if item.status != "pending":
        raise Conflict(f"Request {request_id} is already {item.status}.", code="already_decided")
    item.status, item.decision_reason = status, body.reason
    item.decided_by, item.decided_at = current_user().id, datetime.now(UTC)
    details: dict[str, object] = {"reason": body.reason}
    if isinstance(body, ApprovalIn):  # every pending request is a job's (access ones are gone)
        limits = body.limits or load_settings(session).job_limits
        start_job(session, item, jobs.Approval(limits, body.release_on_completion))
        details.update(limits=limits.model_dump(), release_on_completion=body.release_on_completion)
    record(session, f"requests.{status}", f"request:{item.id}", **details)
    session.commit()
    if item.kind in ("federated", "analytics"):
        federated.report_soon(item.id)
    return _load_request(item.id)


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
    return _decide(request_id, "approved", body)


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
    return _decide(request_id, "denied", body)
