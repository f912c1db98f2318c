"""Privacy budgets: the owner caps the epsilon a dataset, or one data scientist on it (a local
account, or a network's data scientist), may spend."""

from __future__ import annotations

from flask import Blueprint
from sqlalchemy import select
from sqlalchemy.orm import Session

from domain import privacy
from domain.api.datasets import find_dataset
from domain.audit import record
from domain.auth import current_user
from domain.models import NetworkMembership, PrivacyBudget, User
from domain.permissions import Permission, has_permission
from grid_common.api import AUTHENTICATED, route
from grid_common.db import db_session
from grid_common.errors import NotFound, Unprocessable
from grid_common.schemas import PrivacyBudgetIn, PrivacyBudgetLine, PrivacyBudgetOut

bp = Blueprint("privacy", __name__, url_prefix="/api/v1/datasets")


def _budget_out(name: str) -> PrivacyBudgetOut:
    session = db_session()
    dataset = find_dataset(name)
    user = current_user()
    # A data scientist sees the budgets that bind them; reviewers see every one.
    only = None
    if not has_permission(user.role, Permission.TRIAGE_REQUESTS):
        only = privacy.Spender(user_id=user.id)
    lines = privacy.budget_lines(session, dataset, only)
    return PrivacyBudgetOut(
        dataset=dataset.name,
        spent=privacy.spent(session, dataset.id),
        budgets=[
            PrivacyBudgetLine(
                data_scientist=line.email,
                network=line.network,
                epsilon=line.epsilon,
                spent=line.spent,
                left=line.left,
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


def _spender(session: Session, body: PrivacyBudgetIn) -> privacy.Spender | None:
    """Whose budget a PUT sets: none for the dataset's; a local account; a network's scientist.

    A network's scientist is named by the network as this domain joined it (its name or id),
    so the budget binds what that network signs as coming from them, and no other network.
    """
    if body.data_scientist is None:
        if body.network is not None:
            raise Unprocessable(
                "A budget for a network's data scientist needs data_scientist (their email) "
                "beside network."
            )
        return None
    email = body.data_scientist.lower()
    if body.network is None:
        user_id = session.scalar(select(User.id).where(User.email == email))
        if user_id is None:
            raise NotFound(
                f"No account with email {body.data_scientist!r} on this domain; for a "
                "network's data scientist, name the network too."
            )
        return privacy.Spender(user_id=user_id)
    network_id = session.scalar(
        select(NetworkMembership.network_id).where(
            (NetworkMembership.name == body.network)
            | (NetworkMembership.network_id == body.network)
        )
    )
    if network_id is None:
        raise NotFound(
            f"This domain has not joined a network named {body.network!r} "
            "(`grid network memberships` lists them)."
        )
    return privacy.Spender(network_id=network_id, scientist=email)


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
    whose = _spender(session, body)
    mine = PrivacyBudget.dataset_id == dataset.id
    if whose is None:
        mine &= PrivacyBudget.user_id.is_(None) & PrivacyBudget.network_id.is_(None)
    else:
        mine &= whose.owns(PrivacyBudget)
    budget = session.scalar(select(PrivacyBudget).where(mine))
    if body.epsilon is None:
        if budget is not None:
            session.delete(budget)
    elif budget is None:
        whose = whose or privacy.Spender()
        session.add(
            PrivacyBudget(
                dataset_id=dataset.id,
                user_id=whose.user_id,
                network_id=whose.network_id,
                scientist=whose.scientist,
                epsilon=body.epsilon,
            )
        )
    else:
        budget.epsilon = body.epsilon
    record(
        session,
        "privacy.budget_set",
        name,
        epsilon=body.epsilon,
        data_scientist=body.data_scientist,
        network=whose.network_id if whose is not None else None,
    )
    session.commit()
    return _budget_out(name)
