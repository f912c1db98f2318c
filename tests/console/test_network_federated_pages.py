"""The network console's federated job pages through Flask's test client: who sees and cancels what.

Jobs (training, and analyses) are written straight into the network's tables (no domain takes
part), their rounds closed by the network's own `close_round`, so the pages show what the API
would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from grid_common.analytics.plan import AnalysisPlan, AnalyticsDp
from grid_common.analytics.privacy import noise_sigma
from grid_common.db import db_session
from grid_common.federated_schemas import (
    AnalyticsSpec,
    DatasetTarget,
    FederatedJobOut,
    FederatedSpec,
    RoundOut,
)
from grid_common.plan import TrainingPlan
from network.api.accounts import add_operator
from network.auth import DATA_SCIENTIST
from network.console.federated_jobs import _where
from network.federated import close_round, current_round
from network.models import (
    Association,
    FederatedJob,
    FederatedParticipant,
    FederatedRound,
    FederatedUpdate,
    Operator,
)
from tests.console.conftest import csrf_of, sign_in
from tests.network.conftest import OPERATOR_EMAIL, OPERATOR_PASSWORD

DOMAINS = ("hospital-a", "clinic-b")
ROWS = (40, 60)
SCIENTIST = "scientist@example.org"
OTHER = "other-scientist@example.org"
PASSWORD = "scientist-password"
HOUR = timedelta(hours=1)
ACCOUNTS = {"operator": OPERATOR_EMAIL, "scientist": SCIENTIST, "other": OTHER}
# Each domain's minimum group size; an analysis applies the largest.
GROUP_SIZES = (10, 25)
# An analysis as the network resolves it: 1 + 2 + 3 (cross products) + 2 (class counts) sums.
ANALYSIS = AnalysisPlan(
    statistics=["count", "corr", "class_count"],
    features=["x1", "x2"],
    label="target",
    classes=[0, 1],
    dp=AnalyticsDp(epsilon=2.0, delta=1e-5, bounds={"x1": (0, 4), "x2": (-1, 1)}),
)


def local_metrics(number: int, index: int) -> dict[str, float]:
    """What domain `index` reports for round `number`: loss falls and accuracy rises."""
    loss = 2.3 / number + 0.1 * index
    accuracy = 0.3 + 0.15 * number - 0.05 * index
    return {
        "loss": loss,
        "accuracy": accuracy,
        "val_loss": loss + 0.1,
        "val_accuracy": accuracy - 0.05,
    }


def weighted(number: int, name: str) -> float:
    values = [local_metrics(number, i)[name] for i in range(len(DOMAINS))]
    return sum(n * v for n, v in zip(ROWS, values, strict=True)) / sum(ROWS)


def _association(session: Session, name: str) -> Association:
    found = session.scalar(select(Association).where(Association.name == name))
    if found is None:
        found = Association(
            domain_id=f"{name:x<32}"[:32],
            name=name,
            url=f"http://{name}.invalid",
            signing_key="0" * 64,
            encryption_key="0" * 64,
            status="approved",
        )
        session.add(found)
        session.flush()
    return found


def report(session: Session, job_id: int, indexes: Sequence[int]) -> None:
    """The domains at `indexes` send their update for the open round; once all have, it closes."""
    job = session.get(FederatedJob, job_id)
    assert job is not None
    round_ = current_round(session, job)
    assert round_ is not None and round_.status == "open"
    participants = session.scalars(
        select(FederatedParticipant)
        .where(FederatedParticipant.job_id == job_id)
        .order_by(FederatedParticipant.position)
    ).all()
    for index in indexes:
        # An analysis's domains send sums and their row count, no metrics.
        metrics = local_metrics(round_.number, index) if job.kind == "training" else {}
        session.add(
            FederatedUpdate(
                round_id=round_.id,
                participant_id=participants[index].id,
                samples=ROWS[index],
                metrics=metrics,
            )
        )
        round_.samples += ROWS[index]
        participants[index].samples = ROWS[index]
        participants[index].rounds_reported += 1
    session.flush()
    updates = session.scalars(select(FederatedUpdate).where(FederatedUpdate.round_id == round_.id))
    if len(updates.all()) == len(participants):
        close_round(session, job, round_)
    session.commit()


def _analysis_job(spec: FederatedSpec) -> FederatedJob:
    """The analysis `ANALYSIS`, with the round settings of `spec`."""
    analysis = AnalyticsSpec(
        **spec.model_dump(include={"datasets", "round_timeout", "reason"}),
        statistics=ANALYSIS.statistics,
        columns=ANALYSIS.features,
        label=ANALYSIS.label,
        dp=ANALYSIS.dp,
    )
    return FederatedJob(
        kind="analytics",
        spec=analysis.model_dump(mode="json"),
        analysis=ANALYSIS.model_dump(mode="json"),
        parameters=ANALYSIS.layout.size,
    )


def seed_job(
    session: Session,
    submitter: str,
    *,
    closed: int = 2,
    rounds: int = 5,
    reason: str = "",
    partial: Sequence[int] = (0,),
    analysis: bool = False,
) -> int:
    """A running job of two domains: `closed` full rounds, then one with `partial`'s updates in.

    With `analysis`, the job computes `ANALYSIS` in its one round instead of training.
    """
    operator = session.scalar(select(Operator).where(Operator.email == submitter))
    assert operator is not None
    spec = FederatedSpec(
        plan=TrainingPlan(loss="cross_entropy", epochs=1, lr=0.05),
        datasets=[DatasetTarget(domain=name, dataset="digits") for name in DOMAINS],
        rounds=rounds,
        round_timeout=HOUR.total_seconds(),
        reason=reason,
    )
    job = (
        _analysis_job(spec)
        if analysis
        else FederatedJob(
            spec=spec.model_dump(mode="json"),
            model_digest="1" * 64,
            weights_digest="2" * 64,
            parameters=2_410,
        )
    )
    job.submitter_id, job.status, job.spec_hash, job.slots = operator.id, "running", "0" * 64, 4096
    session.add(job)
    session.flush()
    for position, name in enumerate(DOMAINS):
        session.add(
            FederatedParticipant(
                job_id=job.id,
                association_id=_association(session, name).id,
                dataset="digits",
                position=position,
                status="approved",
                decision_reason=f"{name} agrees",
                min_group_size=GROUP_SIZES[position],
            )
        )
    now = datetime.now(UTC)
    job.current_round, job.started_at = 1, now
    session.add(FederatedRound(job_id=job.id, number=1, opened_at=now, deadline=now + HOUR))
    session.commit()
    for _ in range(closed):
        report(session, job.id, range(len(DOMAINS)))
    if partial:
        report(session, job.id, partial)
    return job.id


def job_status(app: Flask, job_id: int) -> str:
    with app.app_context():
        job = db_session().get(FederatedJob, job_id)
        assert job is not None
        return job.status


@pytest.fixture
def jobs(network_app: Flask) -> dict[str, int]:
    """A job of each account's, the scientists made first."""
    with network_app.app_context():
        session = db_session()
        for email in (SCIENTIST, OTHER):
            add_operator(session, email, PASSWORD, role=DATA_SCIENTIST)
        return {
            who: seed_job(session, email, reason=f"{who}'s digits")
            for who, email in ACCOUNTS.items()
        }


@pytest.fixture
def console(network_app: Flask) -> Callable[[str], tuple[FlaskClient, str]]:
    """A console client signed in as `operator`, `scientist` or `other`, or `anonymous`."""

    def make(who: str) -> tuple[FlaskClient, str]:
        client = network_app.test_client()
        if who == "anonymous":
            return client, csrf_of(client.get("/login").get_data(as_text=True))
        password = OPERATOR_PASSWORD if who == "operator" else PASSWORD
        return client, sign_in(client, ACCOUNTS[who], password)

    return make


@pytest.mark.parametrize("who", ["operator", "scientist", "other"])
def test_each_account_sees_the_jobs_the_api_shows_it(
    jobs: dict[str, int], console: Callable[[str], tuple[FlaskClient, str]], who: str
) -> None:
    client, _ = console(who)
    assert 'href="/federated"' in client.get("/").get_data(as_text=True)  # the menu's link
    listed = client.get("/federated").get_data(as_text=True)
    visible = set(ACCOUNTS) if who == "operator" else {who}
    for owner, job_id in jobs.items():
        shown = f'data-testid="federated-job-{job_id}"' in listed
        assert shown == (owner in visible), (owner, listed)
        page = client.get(f"/federated/{job_id}")
        progress = client.get(f"/federated/{job_id}/progress")
        if owner in visible:
            assert page.status_code == 200 and progress.status_code == 200
            assert f"{owner}&#39;s digits" in page.get_data(as_text=True)
        else:  # as in the API, someone else's job does not exist for you
            assert page.status_code == 404 and progress.status_code == 404
            assert f"No federated job with id {job_id}." in page.get_data(as_text=True)


@pytest.mark.parametrize(
    "path", ["/federated", "/federated/1", "/federated/1/progress"], ids=["list", "job", "progress"]
)
def test_anonymous_visitors_are_sent_to_sign_in(
    jobs: dict[str, int], console: Callable[[str], tuple[FlaskClient, str]], path: str
) -> None:
    client, _ = console("anonymous")
    response = client.get(path)
    assert response.status_code == 302
    assert response.location.startswith("/login")


def test_the_job_page_shows_domains_rounds_and_weighted_metrics(
    jobs: dict[str, int], console: Callable[[str], tuple[FlaskClient, str]]
) -> None:
    client, _ = console("scientist")
    html = client.get(f"/federated/{jobs['scientist']}").get_data(as_text=True)
    for name in DOMAINS:
        assert f'data-testid="participant-{name}"' in html and f"{name} agrees" in html
    assert "Round 3 of 5: 1 of 2 domains reported, 2 needed; deadline 20" in html
    assert '<dd data-testid="strategy">fedavg</dd>' in html
    for number in (1, 2):
        for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert f">{weighted(number, name):.4g}<" in html, (number, name)
    assert "Cancel job" in html

    progress = client.get(f"/federated/{jobs['scientist']}/progress").json
    assert progress["status"] == "running" and progress["closed"] == 2
    assert [r["status"] for r in progress["history"]] == ["closed", "closed", "open"]
    assert progress["history"][0]["reporters"] == list(DOMAINS)
    assert progress["history"][0]["samples"] == sum(ROWS)
    assert progress["history"][1]["loss"] == pytest.approx(weighted(2, "loss"))
    assert progress["history"][2]["reporters"] == [DOMAINS[0]]
    assert [p["rounds_reported"] for p in progress["participants"]] == [3, 2]


@pytest.mark.parametrize("who", ["scientist", "operator"])
def test_the_submitter_or_an_operator_cancels_a_job(
    network_app: Flask,
    jobs: dict[str, int],
    console: Callable[[str], tuple[FlaskClient, str]],
    who: str,
) -> None:
    client, token = console(who)
    job_id = jobs["scientist"]
    response = client.post(f"/federated/{job_id}/cancel", data={"csrf_token": token})
    assert response.status_code == 302 and response.location == f"/federated/{job_id}"
    assert job_status(network_app, job_id) == "cancelled"
    html = client.get(response.location).get_data(as_text=True)
    assert f"Federated job {job_id} is cancelled" in html
    assert "Cancel job" not in html  # nothing left to cancel

    again = client.post(
        f"/federated/{job_id}/cancel",
        data={"csrf_token": token},
        headers={"Referer": f"http://localhost/federated/{job_id}"},
    )
    assert again.status_code == 302
    assert "is already cancelled" in client.get(again.location).get_data(as_text=True)


@pytest.mark.parametrize("token", ["missing", "wrong", "another scientist's"])
def test_a_refused_cancel_changes_nothing(
    network_app: Flask,
    jobs: dict[str, int],
    console: Callable[[str], tuple[FlaskClient, str]],
    token: str,
) -> None:
    job_id = jobs["scientist"]
    if token == "another scientist's":
        client, own = console("other")
        response = client.post(f"/federated/{job_id}/cancel", data={"csrf_token": own})
        assert response.status_code == 404
    else:
        client, _ = console("scientist")
        data = {} if token == "missing" else {"csrf_token": "forged-by-another-site"}
        response = client.post(f"/federated/{job_id}/cancel", data=data)
        assert response.status_code == 403
        assert "did not come from this console" in response.get_data(as_text=True)
    assert job_status(network_app, job_id) == "running"


def test_a_scientist_sees_no_operator_pages(
    jobs: dict[str, int], console: Callable[[str], tuple[FlaskClient, str]]
) -> None:
    client, _ = console("scientist")
    menu = client.get("/federated").get_data(as_text=True)
    assert 'href="/associations"' not in menu
    refused = client.get("/associations")
    assert refused.status_code == 403 and "lacks the" in refused.get_data(as_text=True)


def test_a_reason_is_text_never_markup(
    network_app: Flask, console: Callable[[str], tuple[FlaskClient, str]]
) -> None:
    with network_app.app_context():
        job_id = seed_job(db_session(), OPERATOR_EMAIL, reason="<script>alert('x')</script>")
    client, _ = console("operator")
    html = client.get(f"/federated/{job_id}").get_data(as_text=True)
    assert "<script>alert" not in html and "&lt;script&gt;alert(" in html


@pytest.fixture
def analyses(network_app: Flask) -> dict[str, int]:
    """The scientist's analysis with one domain's sums in, and one with every domain's."""
    with network_app.app_context():
        session = db_session()
        add_operator(session, SCIENTIST, PASSWORD, role=DATA_SCIENTIST)
        return {
            "running": seed_job(session, SCIENTIST, closed=0, analysis=True),
            "finishing": seed_job(session, SCIENTIST, closed=1, partial=(), analysis=True),
        }


@pytest.mark.parametrize(
    ("state", "where"),
    [
        ("running", "Adding the domains&#39; sums: 1 of 2 domains sent theirs, 2 needed; deadline"),
        ("finishing", "The sums are added; waiting for every domain to attest the released"),
    ],
    ids=["running", "finishing"],
)
def test_an_analysis_page_shows_what_it_computes(
    analyses: dict[str, int],
    console: Callable[[str], tuple[FlaskClient, str]],
    state: str,
    where: str,
) -> None:
    client, _ = console("scientist")
    job_id = analyses[state]
    html = client.get(f"/federated/{job_id}").get_data(as_text=True)
    assert f"Federated analysis {job_id}" in html and where in html
    for shown in (
        "the number of rows; the correlation matrix of the features; "
        "the number of rows of each class",
        "x1, x2",
        "target, classes 0, 1",
        "8: 1 row count, 2 per-column sums, 3 cross products of column pairs (squares included), "
        "2 per-class counts",
        "ε = 2.0, δ = 1e-05; values clipped to x1 [0, 4], x2 [-1, 1]",
        f"\N{GREEK SMALL LETTER SIGMA} = {noise_sigma(ANALYSIS):.4g}",
        f"{max(GROUP_SIZES)} rows, the largest the approving domains set",
        "one: every domain sends its sums once",
    ):
        assert shown in html, shown
    for training in ("local epoch", "Strategy", "parameters", "data-chart", "swatch loss"):
        assert training not in html, training

    progress = client.get(f"/federated/{job_id}/progress").json
    assert progress["metrics"] == [] and progress["rounds"] == 1
    assert all("loss" not in r for r in progress["history"])


def test_the_list_shows_each_job_s_kind(
    jobs: dict[str, int],
    network_app: Flask,
    console: Callable[[str], tuple[FlaskClient, str]],
) -> None:
    with network_app.app_context():
        analysis = seed_job(db_session(), SCIENTIST, closed=0, analysis=True)
    client, _ = console("scientist")
    listed = client.get("/federated").get_data(as_text=True)
    for job_id, kind in ((jobs["scientist"], "training"), (analysis, "analytics")):
        row = listed[listed.index(f'data-testid="federated-job-{job_id}"') :]
        assert row[: row.index("</tr>")].count(f'<td data-testid="kind">{kind}</td>') == 1


def test_a_sampled_round_counts_its_sample_not_every_domain(network_app: Flask) -> None:
    job = FederatedJobOut.model_construct(
        kind="training", status="running", participants=[], rounds=5, min_domains=4,
        fraction=0.5,
    )  # fmt: skip
    now = datetime.now(UTC)
    current = RoundOut.model_construct(
        number=2, reporters=["a"], sampled=["x", "y", "z"], deadline=now + HOUR
    )
    with network_app.app_context():
        where = _where(job, current)
    assert where.startswith("Round 2 of 5: 1 of the 3 sampled domains reported, 3 needed;")
