"""Health checks: each approved domain is asked who it is on a schedule; online and last seen."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import requests
from sqlalchemy import update

from grid_common.db import db_session
from network.context import config
from network.models import Association

_MAX_PARALLEL = 16


def _probe(url: str, domain_id: str, timeout_s: float) -> str | None:
    """None if the domain answers as itself, else what went wrong."""
    try:
        response = requests.get(f"{url}/api/v1/node", timeout=timeout_s)
    except requests.RequestException as exc:
        return f"unreachable: {type(exc).__name__}"
    if response.status_code != 200:
        return f"answered HTTP {response.status_code}"
    try:
        answered = response.json().get("id")
    except (ValueError, AttributeError):
        return "answered something that is not a Grid node"
    if answered != domain_id:
        return "another node answers at this URL"
    return None


def check_domains() -> int:
    """Check every approved domain that is due; returns how many were checked.

    Rows are claimed with one UPDATE … RETURNING, so each process and replica checks its own.
    """
    cfg = config()
    session = db_session()
    now = datetime.now(UTC)
    table = Association.__table__.c
    claimed = session.execute(
        update(Association)
        .where(table.status == "approved", table.next_check_at <= now)
        .values(next_check_at=now + timedelta(seconds=cfg.health_interval_s))
        .returning(table.id, table.domain_id, table.url)
    ).all()
    session.commit()
    if not claimed:
        return 0
    with ThreadPoolExecutor(max_workers=min(_MAX_PARALLEL, len(claimed))) as pool:
        problems = list(
            pool.map(lambda row: _probe(row.url, row.domain_id, cfg.health_timeout_s), claimed)
        )
    checked_at = datetime.now(UTC)
    for row, problem in zip(claimed, problems, strict=True):
        values: dict[str, object] = {
            "online": problem is None,
            "last_checked": checked_at,
            "check_error": problem,
        }
        if problem is None:
            values["last_seen"] = checked_at
        session.execute(
            update(Association)
            .where(table.id == row.id, table.status == "approved")
            .values(**values)
        )
    session.commit()
    return len(claimed)
