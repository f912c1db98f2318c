"""Federated jobs (training and analyses) in the network console: the list, a job live, cancel."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, get_args

from flask import current_app, flash, jsonify, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from grid_common.analytics.plan import AnalysisPlan
from grid_common.console import page
from grid_common.console.analytics import AnalysisSummary, summarize
from grid_common.db import db_session
from grid_common.federated_schemas import (
    FINISHED_STATUSES,
    FederatedJobOut,
    FederatedStatus,
    RoundOut,
)
from network import federated_access
from network.auth import Permission, current_operator
from network.console.common import bp, may, signed_in
from network.federated import METRIC_NAMES
from network.models import Association
from registry.escrow import JobEscrow, read_escrow

_STATUSES: tuple[str, ...] = get_args(FederatedStatus)


def _may_cancel(job: FederatedJobOut) -> bool:
    """Who the API lets cancel: the submitter or an operator, while the job is not over."""
    user = signed_in()
    if job.status in FINISHED_STATUSES or user is None:
        return False
    return job.submitter == user.email or may(Permission.MANAGE_FEDERATED)


def _metric_names(job: FederatedJobOut) -> tuple[str, ...]:
    """The weighted metrics a job's rounds carry: an analysis's domains report none."""
    return () if job.kind == "analytics" else METRIC_NAMES


def _round(item: RoundOut, metric_names: tuple[str, ...]) -> dict[str, Any]:
    weighted = {name: item.metrics.get(name) for name in metric_names}
    return {
        "number": item.number,
        "status": item.status,
        "closed_at": item.closed_at.isoformat() if item.closed_at else None,
        "reporters": item.reporters,
        "samples": item.samples,
        **weighted,
    }


def _when(value: datetime) -> str:
    when: Callable[[datetime], str] = current_app.jinja_env.filters["when"]
    return when(value)


def _where(job: FederatedJobOut, current: RoundOut | None) -> str:
    """Where the job stands, in a sentence."""
    if job.kind == "analytics" and job.status in ("running", "finishing", "completed"):
        return _where_analysis(job, current)
    approved = sum(1 for p in job.participants if p.status == "approved")
    if job.status == "pending_approval":
        return (
            f"Waiting for the domains' owners: {approved} of {len(job.participants)} approved, "
            f"{job.min_domains} needed."
        )
    if job.status == "key_setup":
        return "The first domain to approve is dealing the CKKS keys to the others."
    if job.status == "running" and current is not None and job.sampling:
        drawn = len(current.sampled)
        return (
            f"Round {current.number} of {job.rounds}: {len(current.reporters)} of the {drawn} "
            f"sampled domains reported, {min(job.min_domains, drawn)} needed; deadline "
            f"{_when(current.deadline)}."
        )
    if job.status == "running" and current is not None:
        return (
            f"Round {current.number} of {job.rounds}: {len(current.reporters)} of {approved} "
            f"domains reported, {job.min_domains} needed; deadline {_when(current.deadline)}."
        )
    if job.status == "finishing":
        waiting = {
            "awaiting_attestations": "every domain to attest the final model's hash",
            "awaiting_release": "every contributing domain's owner to release the final model",
        }.get(job.result, "the final model")
        return f"All {job.rounds} rounds are done; waiting for {waiting}."
    if job.status == "completed":
        return "Completed: the final model is available to its data scientist."
    if job.status == "cancelled":
        return "Cancelled by its data scientist or an operator."
    return f"Failed: {job.failure_reason or 'no reason given'}."


def _where_analysis(job: FederatedJobOut, current: RoundOut | None) -> str:
    """Where a running or finished analysis stands: one round of sums, then the release."""
    if job.status == "running" and current is not None:
        approved = sum(1 for p in job.participants if p.status == "approved")
        return (
            f"Adding the domains' sums: {len(current.reporters)} of {approved} domains sent "
            f"theirs, {job.min_domains} needed; deadline {_when(current.deadline)}."
        )
    if job.status == "finishing":
        waiting = {
            "awaiting_attestations": "every domain to attest the released result's hash",
            "awaiting_release": "every contributing domain's owner to release the result",
        }.get(job.result, "the result")
        return f"The sums are added; waiting for {waiting}."
    return "Completed: the result is available to its data scientist."


def _progress(job: FederatedJobOut, rounds: list[RoundOut]) -> dict[str, Any]:
    """Everything the job page shows that changes while the job runs."""
    current = next((r for r in rounds if r.number == job.current_round), None)
    return {
        "status": job.status,
        "where": _where(job, current),
        "metrics": list(_metric_names(job)),
        "result": job.result,
        "rounds": job.rounds,
        "closed": sum(1 for r in rounds if r.status == "closed"),
        "participants": [
            {
                "domain": p.domain,
                "status": p.status,
                "samples": p.samples,
                "rounds_reported": p.rounds_reported,
                "attested": p.attested,
            }
            for p in job.participants
        ],
        "history": [_round(r, _metric_names(job)) for r in rounds],
    }


def _analysis(job: FederatedJobOut) -> AnalysisSummary | None:
    """What an analysis computes, in words; None for a training job."""
    if job.kind != "analytics":
        return None
    return summarize(AnalysisPlan.model_validate(job.plan))


def _job_and_rounds(job_id: int) -> tuple[FederatedJobOut, list[RoundOut]]:
    # A job that is not yours (unless you manage federated jobs) is a 404, as in the API.
    session, caller = db_session(), current_operator()
    job = federated_access.get_job(session, caller, job_id)
    return job, federated_access.list_rounds(session, caller, job_id).items


@page(
    bp,
    "/federated",
    permission=Permission.SUBMIT_FEDERATED,
    summary="Federated jobs: your own, or every job for operators",
)
def federated_jobs() -> str:
    status = request.args.get("status")
    status = status if status in _STATUSES else None
    items = [
        j
        for j in federated_access.list_jobs(db_session(), current_operator()).items
        if status is None or j.status == status
    ]
    return render_template(
        "network_console/federated_jobs.html", items=items, status=status, statuses=_STATUSES
    )


@page(
    bp,
    "/federated/<int:job_id>",
    permission=Permission.SUBMIT_FEDERATED,
    summary="A federated job: participants, rounds and their weighted metrics, live",
)
def federated_job(job_id: int) -> str:
    job, rounds = _job_and_rounds(job_id)
    return render_template(
        "network_console/federated_job.html",
        job=job,
        rounds=rounds,
        analysis=_analysis(job),
        min_group_size=job.min_group_size if job.kind == "analytics" else None,
        metric_names=_metric_names(job),
        progress=_progress(job, rounds),
        may_cancel=_may_cancel(job),
        finished=job.status in FINISHED_STATUSES,
        escrow=_escrow(job),
    )


def _escrow(job: FederatedJobOut) -> JobEscrow | None:
    """The job's escrow and payouts from the chain this network is configured with, its
    participants named from the network's own records of their addresses; None when the job
    is not recorded on chain."""
    config = current_app.config["GRID"]
    if job.registry_job_id is None or not (config.chain_rpc_url and config.registry_address):
        return None
    rows = db_session().execute(select(Association.eth_address, Association.name))
    names = {address: name for address, name in rows if address}
    return read_escrow(config.chain_rpc_url, config.registry_address, job.registry_job_id, names)


@page(
    bp,
    "/federated/<int:job_id>/progress",
    permission=Permission.SUBMIT_FEDERATED,
    summary="A federated job's state and rounds, for the page's live view",
)
def federated_progress(job_id: int) -> Response:
    return jsonify(_progress(*_job_and_rounds(job_id)))


@page(
    bp,
    "/federated/<int:job_id>/cancel",
    methods=["POST"],
    permission=Permission.SUBMIT_FEDERATED,
    summary="Cancel a federated job",
)
def cancel_federated_job(job_id: int) -> Response:
    federated_access.cancel_job(db_session(), current_operator(), job_id)
    flash(f"Federated job {job_id} is cancelled; its domains stop at their next step.", "success")
    return redirect(url_for("console.federated_job", job_id=job_id))
