"""Requests as people reach them: filing a job request with its model, who sees which request
(a reviewer every one, anyone else their own), and a reviewer's decision.

The rules that file, auto-approve and start a request live in `domain.requests`; this module
adds what a person's call needs around them (checking the upload, the budget, what they see).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from typing import Any

from sqlalchemy import ColumnElement, Row, bindparam, select
from sqlalchemy.orm import Session
from werkzeug.datastructures import FileStorage

from domain import federated, privacy
from domain.auth import Principal
from domain.context import blobs
from domain.disclosure import request_note
from domain.models import (
    AccessRequest,
    Dataset,
    FederatedParticipation,
    Job,
    RequestDataset,
    Setting,
    User,
)
from domain.permissions import Permission, has_permission
from domain.requests import decide, file_request
from domain.settings import SETTINGS_KEY, settings_from
from grid_common.errors import NotFound, Unprocessable
from grid_common.federated_schemas import Invitation, peer_protection
from grid_common.schemas import (
    JOB_KINDS,
    ApprovalIn,
    DecisionIn,
    JobRequestForm,
    RequestList,
    RequestOut,
    RequestQuery,
)
from grid_common.uploads import check_model_archive, check_safetensors

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

_REQUEST_SHOWN = _REQUESTS_SHOWN.where(_REQUESTS.c.id == bindparam("request_id"))
_PARTICIPATIONS = FederatedParticipation.__table__
_JOBS = Job.__table__
_SETTINGS = Setting.__table__
# What one request's own page adds, in one prebuilt Core query (each ORM lookup, or a statement
# built per call, costs more than the query): a federated request's invitation, the live-metrics
# setting its job was approved with (NULL while no job exists) and the settings as they stand.
_REQUEST_NOTES = (
    select(
        _PARTICIPATIONS.c.invitation,
        _PARTICIPATIONS.c.min_peers,
        _JOBS.c.live_metrics.label("job_live_metrics"),
        select(_SETTINGS.c.value)
        .where(_SETTINGS.c.key == SETTINGS_KEY)
        .scalar_subquery()
        .label("settings"),
    )
    .select_from(_REQUESTS)
    .outerjoin(_PARTICIPATIONS, _PARTICIPATIONS.c.request_id == _REQUESTS.c.id)
    .outerjoin(_JOBS, _JOBS.c.id == _REQUESTS.c.id)
    .where(_REQUESTS.c.id == bindparam("request_id"))
)


def load_requests(session: Session, *where: ColumnElement[bool]) -> list[RequestOut]:
    """Requests as the API shows them."""
    return _shown(session.connection().execute(_REQUESTS_SHOWN.where(*where)))


def _shown(rows: Iterable[Row[Any]]) -> list[RequestOut]:
    shown: dict[int, RequestOut] = {}
    for row in rows:
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


def _load_request(session: Session, request_id: int) -> RequestOut:
    found = load_requests(session, _REQUESTS.c.id == request_id)
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


def file_job_request(
    session: Session, user: Principal, body: JobRequestForm, files: Mapping[str, FileStorage]
) -> RequestOut:
    """File `user`'s request to train the `model` part (.pt2) from the `weights` part on
    datasets, refused when a privacy budget cannot cover its epsilon; commits."""
    datasets = _datasets_named(session, body.datasets)
    try:
        epsilon = body.plan.dp.epsilon if body.plan.dp is not None else None
        privacy.check_budget(session, datasets, privacy.Spender(user_id=user.id), epsilon)
    except privacy.BudgetExceeded as exc:
        raise Unprocessable(str(exc), code="privacy_budget_exceeded") from None
    parts = {}
    for field in ("model", "weights"):
        file = files.get(field)
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
    item = file_request(
        session,
        kind="job",
        reason=body.reason,
        datasets=datasets,
        plan=body.plan,
        model_digest=model_digest,
        weights_digest=weights_digest,
    )
    return _load_request(session, item.id)


def list_requests(session: Session, viewer: Principal, query: RequestQuery) -> RequestList:
    """Requests `viewer` may see (all for a reviewer, else their own), filtered by status."""
    where = []
    if not _may_triage(viewer):
        where.append(_REQUESTS.c.requester_id == viewer.id)
    if query.status:
        where.append(_REQUESTS.c.status == query.status)
    return RequestList(items=load_requests(session, *where))


def visible_request(session: Session, viewer: Principal, request_id: int) -> RequestOut:
    """A request `viewer` may see (a reviewer any, a data scientist their own; any other is not
    found), with a federated one's peers and what its data scientist will see of a job."""
    connection, by_id = session.connection(), {"request_id": request_id}
    found = _shown(connection.execute(_REQUEST_SHOWN, by_id))
    if not found or (found[0].requester != viewer.email and not _may_triage(viewer)):
        raise NotFound(f"No request with id {request_id}.")
    notes = connection.execute(_REQUEST_NOTES, by_id).one()
    if notes.invitation is not None:
        invitation = Invitation.model_validate(notes.invitation)
        found[0].peers = peer_protection(invitation, notes.min_peers)[1]
    if found[0].kind in JOB_KINDS:
        # Until approval the setting as it stands; from then on the one recorded with the job.
        live = notes.job_live_metrics
        if live is None:
            live = settings_from(notes.settings).live_metrics
        found[0].live_metrics = request_note(found[0].plan, live)
    return found[0]


def _decide(session: Session, request_id: int, status: str, body: DecisionIn) -> RequestOut:
    item = decide(session, request_id, status, body)
    if item.kind in ("federated", "analytics"):
        federated.report_soon(item.id)
    return _load_request(session, item.id)


def approve(session: Session, request_id: int, body: ApprovalIn) -> RequestOut:
    """Approve a pending request for the signed-in reviewer, starting its job (a network's
    request is reported back to the network); commits."""
    return _decide(session, request_id, "approved", body)


def deny(session: Session, request_id: int, body: DecisionIn) -> RequestOut:
    """Deny a pending request for the signed-in reviewer (reported back as for approval);
    commits."""
    return _decide(session, request_id, "denied", body)
