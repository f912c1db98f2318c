"""Privacy budgets: the owner caps the epsilon a dataset, or one data scientist on it (a local
account, or a network's data scientist), may spend."""

from __future__ import annotations

from flask import Blueprint

from domain import privacy
from domain.auth import current_user
from domain.permissions import Permission
from grid_common.api import AUTHENTICATED, route
from grid_common.db import db_session
from grid_common.schemas import PrivacyBudgetIn, PrivacyBudgetOut

bp = Blueprint("privacy", __name__, url_prefix="/api/v1/datasets")


@route(
    bp,
    "/<name>/privacy-budget",
    permission=AUTHENTICATED,
    summary="Epsilon budgets on a dataset with what each has spent and has left",
    response=PrivacyBudgetOut,
)
def get_budget(name: str) -> PrivacyBudgetOut:
    return privacy.budget_out(db_session(), current_user(), name)


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
    privacy.set_budget(session, name, body)
    return privacy.budget_out(session, current_user(), name)
