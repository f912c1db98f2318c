"""Privacy budgets: the epsilon each dataset, and each data scientist on it (local, or a
network's), may still spend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import false, func, select
from sqlalchemy.orm import Session

from domain.audit import record
from domain.auth import Principal
from domain.datasets import find_dataset
from domain.models import (
    AccessRequest,
    Dataset,
    FederatedParticipation,
    NetworkMembership,
    PrivacyBudget,
    PrivacySpend,
    User,
)
from domain.permissions import Permission, has_permission
from grid_common.analytics.plan import AnalysisPlan
from grid_common.errors import NotFound, Unprocessable
from grid_common.plan import TrainingPlan
from grid_common.schemas import PrivacyBudgetIn, PrivacyBudgetLine, PrivacyBudgetOut

# Float sums of epsilons drift in the last digits; a request that fits to this tolerance fits.
_TOLERANCE = 1e-9


class BudgetExceeded(Exception):
    """A request would spend more epsilon than a budget has left; the message says how much."""


@dataclass(frozen=True)
class Spender:
    """Whom a request's epsilon is charged to: a local account, or a network's data scientist.

    A network's data scientist is the email the network signed into the invitation, scoped to
    that network's node id: another network cannot spend (or dodge) their budget, and the
    dataset-wide budget binds every request whatever the network claims.
    """

    user_id: int | None = None
    network_id: str | None = None
    scientist: str | None = None

    @classmethod
    def of_request(cls, session: Session, item: AccessRequest) -> Spender:
        if item.requester_id is not None:
            return cls(user_id=item.requester_id)
        participation = session.get(FederatedParticipation, item.id)
        if participation is None:  # no requester at all: only dataset-wide budgets bind
            return cls()
        email = str(participation.invitation.get("requester", ""))
        return cls(network_id=participation.network_id, scientist=email.lower())

    def owns(self, row: type[PrivacyBudget] | type[PrivacySpend]) -> Any:
        """The SQL condition that a budget or spend row is this spender's own."""
        if self.user_id is not None:
            return row.user_id == self.user_id
        return (row.network_id == self.network_id) & (row.scientist == self.scientist)


@dataclass(frozen=True)
class BudgetLine:
    """One budget on a dataset: everyone's, or one data scientist's (local or via a network)."""

    user_id: int | None
    email: str | None
    epsilon: float
    spent: float
    network: str | None = None

    @property
    def left(self) -> float:
        return max(self.epsilon - self.spent, 0.0)


def spent(session: Session, dataset_id: int, spender: Spender | None = None) -> float:
    """Epsilon spent on a dataset by everyone, or by one data scientist."""
    query = select(func.coalesce(func.sum(PrivacySpend.epsilon), 0.0)).where(
        PrivacySpend.dataset_id == dataset_id
    )
    if spender is not None:
        query = query.where(spender.owns(PrivacySpend))
    return float(session.scalar(query) or 0.0)


def _dataset_wide() -> Any:
    return PrivacyBudget.user_id.is_(None) & PrivacyBudget.network_id.is_(None)


def budget_lines(
    session: Session, dataset: Dataset, spender: Spender | None = None, *, lock: bool = False
) -> list[BudgetLine]:
    """The dataset's budgets with what each has spent; with `spender`, only those binding them.

    `lock` holds the budget rows until commit, so two approvals cannot both spend the rest.
    """
    query = (
        select(PrivacyBudget, User.email, NetworkMembership.name)
        .outerjoin(User, User.id == PrivacyBudget.user_id)
        .outerjoin(NetworkMembership, NetworkMembership.network_id == PrivacyBudget.network_id)
        .where(PrivacyBudget.dataset_id == dataset.id)
        .order_by(
            PrivacyBudget.user_id.is_not(None) | PrivacyBudget.network_id.is_not(None),
            User.email,
            PrivacyBudget.scientist,
        )
    )
    if lock:
        query = query.with_for_update(of=PrivacyBudget)
    if spender is not None:
        own = spender.owns(PrivacyBudget) if spender != Spender() else false()
        query = query.where(_dataset_wide() | own)
    lines = []
    for budget, local_email, network_name in session.execute(query):
        whose: Spender | None = None
        email: str | None = local_email
        network: str | None = None
        if budget.user_id is not None:
            whose = Spender(user_id=budget.user_id)
        elif budget.network_id is not None:
            whose = Spender(network_id=budget.network_id, scientist=budget.scientist)
            # A network the domain has left since keeps its budgets, shown by its id.
            email, network = budget.scientist, network_name or budget.network_id
        lines.append(
            BudgetLine(
                budget.user_id, email, budget.epsilon, spent(session, dataset.id, whose), network
            )
        )
    return lines


def requested_epsilon(kind: str, plan: dict[str, Any] | None) -> float | None:
    """The epsilon a job request would spend: its DP-SGD budget, or its analysis's noise."""
    if plan is None:
        return None
    dp = (
        AnalysisPlan.model_validate(plan).dp
        if kind == "analytics"
        else TrainingPlan.model_validate(plan).dp
    )
    return dp.epsilon if dp is not None else None


def check_budget(
    session: Session, datasets: list[Dataset], spender: Spender, epsilon: float | None
) -> None:
    """Refuse a job that a budget on one of its datasets cannot pay for, saying what is left."""
    for dataset in datasets:
        lines = budget_lines(session, dataset, spender, lock=True)
        if not lines:
            continue
        if epsilon is None:
            raise BudgetExceeded(
                f"Dataset {dataset.name!r} has a privacy budget, so jobs on it must use "
                "differential privacy: train with plan.dp={'epsilon': ..., 'delta': ...}, or "
                "analyse with dp={'epsilon': ..., 'delta': ..., 'bounds': {...}}."
            )
        for line in lines:
            if epsilon > line.left + _TOLERANCE:
                if line.network is not None:
                    whose = f"the budget of {line.email} via network {line.network}"
                else:
                    whose = "your budget" if line.user_id is not None else "the dataset's budget"
                raise BudgetExceeded(
                    f"Epsilon {epsilon:g} exceeds {whose} on {dataset.name!r}: "
                    f"{line.left:g} of {line.epsilon:g} left."
                )


def charge(
    session: Session,
    job_id: int,
    datasets: list[Dataset],
    spender: Spender,
    epsilon: float | None,
) -> None:
    """Record the epsilon an approved DP job spends on each of its datasets."""
    if epsilon is None:
        return
    for dataset in datasets:
        session.add(
            PrivacySpend(
                job_id=job_id,
                dataset_id=dataset.id,
                user_id=spender.user_id,
                network_id=spender.network_id,
                scientist=spender.scientist,
                epsilon=epsilon,
            )
        )


def budget_out(session: Session, viewer: Principal, name: str) -> PrivacyBudgetOut:
    """The budgets on dataset `name` with what each has spent and has left, as `viewer` may see
    them: a reviewer every one, anyone else only those that bind them."""
    dataset = find_dataset(session, name)
    only = None
    if not has_permission(viewer.role, Permission.TRIAGE_REQUESTS):
        only = Spender(user_id=viewer.id)
    lines = budget_lines(session, dataset, only)
    return PrivacyBudgetOut(
        dataset=dataset.name,
        spent=spent(session, dataset.id),
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


def _budget_spender(session: Session, body: PrivacyBudgetIn) -> Spender | None:
    """Whose budget `body` sets: none for the dataset's; a local account; a network's scientist.

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
        return Spender(user_id=user_id)
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
    return Spender(network_id=network_id, scientist=email)


def set_budget(session: Session, name: str, body: PrivacyBudgetIn) -> None:
    """Set (or, with epsilon None, remove) the budget on dataset `name`, or one data
    scientist's on it; audited, and commits."""
    dataset = find_dataset(session, name)
    whose = _budget_spender(session, body)
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
        whose = whose or Spender()
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
