"""Jobs in the console: the list, live progress with logs and curves, cancel, release."""

from __future__ import annotations

from typing import Any

from flask import flash, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from domain import job_access
from domain.auth import current_user
from domain.console.common import bp
from domain.job_escrow import job_escrow
from domain.jobs import FINISHED
from domain.permissions import Permission
from grid_common.api import AUTHENTICATED
from grid_common.console import page, validated
from grid_common.db import db_session
from grid_common.schemas import JobEventQuery, JobQuery

_STATUSES = ("pending_approval", "queued", "running", "completed", "failed", "cancelled", "denied")
_EVENT_LIMIT = 10_000


@page(bp, "/jobs", permission=AUTHENTICATED, summary="Jobs: all for reviewers, else own")
def jobs_page() -> str:
    status = request.args.get("status")
    query = JobQuery(status=status if status in _STATUSES else None)  # type: ignore[arg-type]
    items = sorted(
        job_access.list_jobs(db_session(), current_user(), query).items,
        key=lambda j: j.id,
        reverse=True,
    )
    return render_template(
        "domain_console/jobs.html", items=items, status=query.status, statuses=_STATUSES
    )


def _events(job_id: int, after: int = 0) -> list[dict[str, Any]]:
    query = JobEventQuery(after=after, limit=_EVENT_LIMIT)
    found = job_access.job_events(db_session(), current_user(), job_id, query)
    return [e.model_dump(mode="json") for e in found.items]


@page(bp, "/jobs/<int:job_id>", permission=AUTHENTICATED, summary="A job: progress, logs, result")
def job_detail(job_id: int) -> str:
    job = job_access.visible_job(db_session(), current_user(), job_id)
    return render_template(
        "domain_console/job_detail.html",
        job=job,
        events=_events(job_id),
        finished=job.status in FINISHED or job.status == "denied",
        escrow=job_escrow(db_session(), job_id),
    )


@page(
    bp,
    "/jobs/<int:job_id>/progress",
    permission=AUTHENTICATED,
    summary="The job's state and its events after a given one, for the page's live view",
)
def job_progress(job_id: int) -> Response:
    after = validated(JobEventQuery, {"after": request.args.get("after", "0")}).after
    job = job_access.visible_job(db_session(), current_user(), job_id)
    return jsonify(
        status=job.status, result_status=job.result_status, events=_events(job_id, after)
    )


@page(
    bp,
    "/jobs/<int:job_id>/cancel",
    methods=["POST"],
    permission=AUTHENTICATED,
    summary="Cancel a job",
)
def cancel_job(job_id: int) -> Response:
    job_access.cancel_job(db_session(), current_user(), job_id)
    flash(f"Job {job_id}: cancel requested.", "success")
    return redirect(url_for("console.job_detail", job_id=job_id))


@page(
    bp,
    "/jobs/<int:job_id>/release",
    methods=["POST"],
    permission=Permission.RELEASE_RESULTS,
    summary="Release a held result to the job's data scientist",
)
def release_result(job_id: int) -> Response:
    job_access.release_result(db_session(), current_user(), job_id)
    flash(f"The result of job {job_id} is released to its data scientist.", "success")
    return redirect(url_for("console.job_detail", job_id=job_id))
