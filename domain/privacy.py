"""Privacy budgets: the epsilon each dataset, and each data scientist on it, may still spend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from domain.models import Dataset, PrivacyBudget, PrivacySpend, User
from grid_common.analytics.plan import AnalysisPlan
from grid_common.plan import TrainingPlan

# Float sums of epsilons drift in the last digits; a request that fits to this tolerance fits.
_TOLERANCE = 1e-9


class BudgetExceeded(Exception):
    """A request would spend more epsilon than a budget has left; the message says how much."""


@dataclass(frozen=True)
class BudgetLine:
    """One budget on a dataset: everyone's (no user) or one data scientist's."""

    user_id: int | None
    email: str | None
    epsilon: float
    spent: float

    @property
    def left(self) -> float:
        return max(self.epsilon - self.spent, 0.0)


def spent(session: Session, dataset_id: int, user_id: int | None = None) -> float:
    """Epsilon spent on a dataset by everyone, or by one data scientist."""
    query = select(func.coalesce(func.sum(PrivacySpend.epsilon), 0.0)).where(
        PrivacySpend.dataset_id == dataset_id
    )
    if user_id is not None:
        query = query.where(PrivacySpend.user_id == user_id)
    return float(session.scalar(query) or 0.0)


def budget_lines(
    session: Session, dataset: Dataset, user_id: int | None = None, *, lock: bool = False
) -> list[BudgetLine]:
    """The dataset's budgets with what each has spent; with `user_id`, only those binding them.

    `lock` holds the budget rows until commit, so two approvals cannot both spend the rest.
    """
    query = (
        select(PrivacyBudget, User.email)
        .outerjoin(User, User.id == PrivacyBudget.user_id)
        .where(PrivacyBudget.dataset_id == dataset.id)
        .order_by(PrivacyBudget.user_id.is_not(None), User.email)
    )
    if lock:
        query = query.with_for_update(of=PrivacyBudget)
    if user_id is not None:
        query = query.where((PrivacyBudget.user_id.is_(None)) | (PrivacyBudget.user_id == user_id))
    return [
        BudgetLine(
            budget.user_id, email, budget.epsilon, spent(session, dataset.id, budget.user_id)
        )
        for budget, email in session.execute(query)
    ]


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
    session: Session, datasets: list[Dataset], user_id: int | None, epsilon: float | None
) -> None:
    """Refuse a job that a budget on one of its datasets cannot pay for, saying what is left."""
    for dataset in datasets:
        lines = budget_lines(session, dataset, user_id, lock=True)
        if user_id is None:  # a network's requester: only the dataset-wide budget binds it
            lines = [line for line in lines if line.user_id is None]
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
                whose = "your budget" if line.user_id is not None else "the dataset's budget"
                raise BudgetExceeded(
                    f"Epsilon {epsilon:g} exceeds {whose} on {dataset.name!r}: "
                    f"{line.left:g} of {line.epsilon:g} left."
                )


def charge(
    session: Session,
    job_id: int,
    datasets: list[Dataset],
    user_id: int | None,
    epsilon: float | None,
) -> None:
    """Record the epsilon an approved DP job spends on each of its datasets."""
    if epsilon is None:
        return
    for dataset in datasets:
        session.add(
            PrivacySpend(job_id=job_id, dataset_id=dataset.id, user_id=user_id, epsilon=epsilon)
        )
