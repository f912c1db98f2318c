"""Privacy budgets: the owner caps the epsilon a dataset, or one data scientist on it, may spend."""

from __future__ import annotations

from flask import Blueprint
from sqlalchemy import select

from domain import privacy
from domain.api.common import record
from domain.api.datasets import find_dataset
from domain.auth import current_user
from domain.models import PrivacyBudget, User
from domain.permissions import Permission, has_permission
from grid_common.api import AUTHENTICATED, route
from grid_common.db import db_session
from grid_common.errors import NotFound
from grid_common.schemas import PrivacyBudgetIn, PrivacyBudgetLine, PrivacyBudgetOut

bp = Blueprint("privacy", __name__, url_prefix="/api/v1/datasets")


def _budget_out(name: str) -> PrivacyBudgetOut:
    session = db_session()
    dataset = find_dataset(name)
    user = current_user()
    # A data scientist sees the budgets that bind them; reviewers see every one.
    only = None if has_permission(user.role, Permission.TRIAGE_REQUESTS) else user.id
    lines = privacy.budget_lines(session, dataset, only)
    return PrivacyBudgetOut(
        dataset=dataset.name,
        spent=privacy.spent(session, dataset.id),
        budgets=[
            PrivacyBudgetLine(
                data_scientist=line.email, epsilon=line.epsilon, spent=line.spent, left=line.left
            )
            for line in lines
        ],
    )


@route(
    bp,
    "/<name>/privacy-budget",
    permission=AUTHENTICATED,
    summary="Epsilon budgets on a dataset with what each has spent and has left",
    response=PrivacyBudgetOut,
)
def get_budget(name: str) -> PrivacyBudgetOut:
    return _budget_out(name)


@route(
    bp,
    "/<name>/privacy-budget",
    methods=["PUT"],
    permission=Permission.EDIT_SETTINGS,
    summary="Set (or, with epsilon null, remove) the dataset's budget or one data scientist's",
    body=PrivacyBudgetIn,
    response=PrivacyBudgetOut,
)
def set_budget(name: str, body: PrivacyBudgetIn) -> PrivacyBudgetOut:
    session = db_session()
    dataset = find_dataset(name)
    user_id = None
    if body.data_scientist is not None:
        user_id = session.scalar(select(User.id).where(User.email == body.data_scientist.lower()))
        if user_id is None:
            raise NotFound(f"No account with email {body.data_scientist!r} on this domain.")
    budget = session.scalar(
        select(PrivacyBudget).where(
            PrivacyBudget.dataset_id == dataset.id,
            PrivacyBudget.user_id.is_(None)
            if user_id is None
            else PrivacyBudget.user_id == user_id,
        )
    )
    if body.epsilon is None:
        if budget is not None:
            session.delete(budget)
    elif budget is None:
        session.add(PrivacyBudget(dataset_id=dataset.id, user_id=user_id, epsilon=body.epsilon))
    else:
        budget.epsilon = body.epsilon
    record(
        session,
        "privacy.budget_set",
        name,
        epsilon=body.epsilon,
        data_scientist=body.data_scientist,
    )
    session.commit()
    return _budget_out(name)
