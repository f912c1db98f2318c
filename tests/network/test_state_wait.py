"""The participant state long poll: a domain waiting for its job to move on is answered as soon
as it does (here: the other domains' updates close round 1 and open round 2), and the terms of
the wait are checked like any query."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from grid_common.federated_schemas import ParticipantState
from grid_common.long_poll import digest
from network import state_wait
from tests.conftest import eventually
from tests.network.test_federated import (  # noqa: F401  (fixtures)
    Job,
    _send_all,
    created,
    domains,
    job_keys,
    model_files,
    scientist,
    start_job,
)
from tests.network.test_federated import error as error_code


def _seen(job: Job, signer: Any) -> str:
    return digest(ParticipantState.model_validate(job.state(signer)))


def test_a_waiting_domain_hears_of_the_next_round_at_once(
    start_job: Callable[..., Job],  # noqa: F811
) -> None:
    job = start_job("none")
    first, *others = job.domains
    _send_all(job, 1, [first])
    seen = _seen(job, first)  # round 1, this domain's update in: nothing to do until it closes
    answers: list[dict[str, Any]] = []

    def wait() -> None:
        """As a worker does: ask again with each new state until round 2 opens."""
        last = seen
        while not answers or answers[-1]["round"] == 1:
            response = first.call("GET", job.path(f"/state?wait=10&seen={last}"))
            assert response.status_code == 200, response.json
            answers.append(response.json)
            last = digest(ParticipantState.model_validate(response.json))

    before = state_wait.BELL.waiting
    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    eventually(lambda: state_wait.BELL.waiting > before, "the domain to wait for a change")
    _send_all(job, 1, others)  # round 1 closes, round 2 opens
    eventually(lambda: not waiter.is_alive(), "the waiting domain to hear of round 2", 30)
    assert answers[-1]["round"] == 2 and answers[-1]["round_open"]
    assert not answers[-1]["submitted"]
    # Each answer came with a change (another domain's update counts it in), none for nothing.
    assert len(answers) <= 1 + len(others)

    # Nothing changes: the answer comes when the wait runs out, the same state again.
    seen = _seen(job, first)
    same = first.call("GET", job.path(f"/state?wait=0.2&seen={seen}"))
    assert same.status_code == 200 and digest(ParticipantState.model_validate(same.json)) == seen
    for bad in ("wait=11", "wait=-1", f"wait=1&seen={seen[:10]}", "wait=1&seen=x", "after=1"):
        assert error_code(first.call("GET", job.path(f"/state?{bad}")), 422), bad
