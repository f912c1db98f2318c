"""Job requests: filing them, the owner's auto-approval rules, deciding, starting an approved one.

A data scientist files through `domain.request_access`, a network through an invitation
(`domain.federated`); both kinds are matched against the rules and started here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from domain import jobs, privacy
from domain.audit import record
from domain.auth import current_user
from domain.models import AccessRequest, Dataset, RequestDataset
from domain.settings import load_settings
from grid_common.errors import Conflict, NotFound
from grid_common.federated_schemas import Invitation
from grid_common.plan import TrainingPlan
from grid_common.schemas import ApprovalIn, AutoApprovalRule, DecisionIn


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


def matching_rule(
    rules: Iterable[AutoApprovalRule],
    requester_email: str | None,
    kind: str,
    datasets: list[Dataset],
    plan: dict[str, Any] | None,
    joint: Invitation | None = None,
) -> AutoApprovalRule | None:
    """The first of the owner's rules that covers a request (see `rule_matches`), if any."""
    return next(
        (r for r in rules if rule_matches(r, requester_email, kind, datasets, plan, joint)), None
    )


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


def file_request(
    session: Session,
    *,
    kind: str,
    reason: str,
    datasets: list[Dataset],
    plan: TrainingPlan | None = None,
    model_digest: str | None = None,
    weights_digest: str | None = None,
) -> AccessRequest:
    """File a job request by the signed-in data scientist, approved and queued at once when
    one of the owner's rules covers it; commits."""
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
    shown = plan.model_dump(mode="json") if plan else None
    matched = matching_rule(settings.auto_approval, user.email, kind, datasets, shown)
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


def decide(session: Session, request_id: int, status: str, body: DecisionIn) -> AccessRequest:
    """Approve (queueing the job) or deny a pending request for the signed-in reviewer; commits.

    `body` is an `ApprovalIn` for an approval: its limits, or the owner's default ones.
    """
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
    return item
