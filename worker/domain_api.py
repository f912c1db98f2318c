"""The worker's side of the worker API: lease, heartbeat, fetch inputs, report, deliver."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from grid_common.federated_schemas import ParticipantState, RoundOut
from grid_common.schemas import HeartbeatOut, JobOut, LeasedJob
from grid_common.transport import DEFAULT_TIMEOUT, HttpSession, multipart_body
from worker.spec import TrainingEvent

API = "/api/v1/worker"
# How a worker names itself to its domain, apart from the SDK's grid-cli.
USER_AGENT = "grid-worker"
_CHUNK = 1 << 20


class DomainWorkerApi:
    """One worker's connection to its domain, authenticated by the worker token."""

    def __init__(
        self, domain_url: str, token: str, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT
    ) -> None:
        self.http = HttpSession(domain_url, product=USER_AGENT, timeout=timeout)
        self.http.set_bearer(token)

    @property
    def url(self) -> str:
        return self.http.base_url

    def hello(self, host: str) -> None:
        self.http.request("POST", f"{API}/heartbeat", json={"host": host})

    def lease(self, host: str, wait_s: float = 0.0) -> LeasedJob | None:
        """The next job, or None when the domain has none runnable within `wait_s`."""
        timeout = (self.http.timeout[0], self.http.timeout[1] + wait_s)
        response = self.http.request(
            "POST", f"{API}/lease", json={"host": host}, params={"wait": wait_s}, timeout=timeout
        )
        if response.status_code == 204:
            return None
        return LeasedJob.model_validate(response.json())

    def heartbeat(self, job_id: int, attempt: int) -> HeartbeatOut:
        response = self.http.request(
            "POST", f"{API}/jobs/{job_id}/heartbeat", json={"attempt": attempt}
        )
        return HeartbeatOut.model_validate(response.json())

    def send_events(self, job_id: int, attempt: int, events: list[TrainingEvent]) -> None:
        body = {"attempt": attempt, "events": [{"kind": e.kind, "data": e.data} for e in events]}
        self.http.request("POST", f"{API}/jobs/{job_id}/events", json=body)

    def download(self, path: str, dest: Path, digest: str | None = None) -> Path:
        """Stream an input to `dest` (atomically); with `digest`, check its sha256 on the way."""
        partial = dest.with_name(dest.name + ".partial")
        hasher = hashlib.sha256()
        response = self.http.request("GET", f"{API}{path}", stream=True)
        with response, partial.open("wb") as handle:
            for chunk in response.iter_content(_CHUNK):
                handle.write(chunk)
                hasher.update(chunk)
        if digest is not None and hasher.hexdigest() != digest:
            partial.unlink()
            raise ValueError(f"{path} arrived corrupted (sha256 differs); it will be fetched again")
        os.replace(partial, dest)
        return dest

    def deliver_result(
        self, job_id: int, attempt: int, weights: Path, metrics: dict[str, Any]
    ) -> JobOut:
        fields = [("metrics", json.dumps(metrics))]
        with multipart_body(fields, [("weights", weights)]) as form:
            response = self.http.request(
                "PUT",
                f"{API}/jobs/{job_id}/attempts/{attempt}/result",
                data=form,
                headers={"Content-Type": form.content_type},
            )
        return JobOut.model_validate(response.json())

    def report_failure(self, job_id: int, attempt: int, status: str, reason: str) -> JobOut:
        response = self.http.request(
            "POST",
            f"{API}/jobs/{job_id}/attempts/{attempt}/failure",
            json={"status": status, "reason": reason},
        )
        return JobOut.model_validate(response.json())

    # --- federated jobs: the domain speaks for its worker to the network ------------------------

    def federated_state(
        self, job_id: int, attempt: int, *, wait: float = 0.0, seen: str = ""
    ) -> ParticipantState:
        """The job's state at its network; with `wait`, once it differs from `seen` (a digest)."""
        params: dict[str, Any] = {"attempt": attempt}
        if wait > 0:
            params.update(wait=wait, seen=seen)
        timeout = (self.http.timeout[0], self.http.timeout[1] + wait)
        response = self.http.request(
            "GET", f"{API}/jobs/{job_id}/federated/state", params=params, timeout=timeout
        )
        return ParticipantState.model_validate(response.json())

    def federated_context(self, job_id: int, attempt: int) -> bytes:
        response = self.http.request(
            "GET", f"{API}/jobs/{job_id}/federated/context", params={"attempt": attempt}
        )
        return response.content

    def federated_aggregate(self, job_id: int, attempt: int, number: int, dest: Path) -> int:
        """A closed round's aggregate into `dest`; returns the rows behind it."""
        response = self.http.request(
            "GET",
            f"{API}/jobs/{job_id}/federated/rounds/{number}/aggregate",
            params={"attempt": attempt},
        )
        dest.write_bytes(response.content)
        return int(response.headers.get("X-Grid-Samples", "0"))

    def federated_update(
        self, job_id: int, attempt: int, number: int, update: Path, query: dict[str, Any]
    ) -> RoundOut:
        with update.open("rb") as body:
            response = self.http.request(
                "PUT",
                f"{API}/jobs/{job_id}/federated/rounds/{number}/update",
                params={"attempt": attempt, **query},
                data=body,
                headers={"Content-Type": "application/octet-stream"},
            )
        return RoundOut.model_validate(response.json())

    def federated_withheld(self, job_id: int, attempt: int, reason: str) -> ParticipantState:
        response = self.http.request(
            "POST",
            f"{API}/jobs/{job_id}/federated/withheld",
            params={"attempt": attempt},
            json={"reason": reason},
        )
        return ParticipantState.model_validate(response.json())

    def close(self) -> None:
        self.http.close()
