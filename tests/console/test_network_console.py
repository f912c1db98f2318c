"""The network console in Debian's Chromium against a real network and a real domain."""

from __future__ import annotations

import re
from pathlib import Path

from flask import Flask
from playwright.sync_api import Page, expect
from sqlalchemy.orm import Session

import grid_cli as grid
from grid_common.db import make_engine
from network.accounts import add_operator
from network.auth import DATA_SCIENTIST
from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD
from tests.console.test_network_federated_pages import (
    PASSWORD,
    SCIENTIST,
    report,
    seed_job,
    weighted,
)
from tests.grid_cli.conftest import DIGITS_CSV
from tests.network.conftest import OPERATOR_EMAIL, OPERATOR_PASSWORD, LiveNode
from tests.network.test_live import eventually

# The job is seeded straight into the live network's database, in the context of an app that,
# like that network, has no registry writes on (closing a round looks for them).
_NO_REGISTRY = Flask(__name__)


def test_an_operator_approves_a_domain_and_finds_its_data(
    page: Page, live_network: LiveNode, live_member: LiveNode, tmp_path: Path
) -> None:
    owner = grid.login(live_member.url, OWNER_EMAIL, OWNER_PASSWORD)
    csv = tmp_path / "digits.csv"
    csv.write_text(DIGITS_CSV)
    owner.upload_dataset(
        "digits-a", csv, label="target", description="Handwritten digits", progress=False
    )
    owner.join_network(live_network.url)

    page.goto(f"{live_network.url}/")
    page.get_by_label("Email").fill(OPERATOR_EMAIL)
    page.get_by_label("Password").fill(OPERATOR_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("pending-count")).to_have_text("1")
    expect(page.get_by_text(live_member.url)).to_be_visible()
    page.get_by_label("Reason for approving").fill("known hospital")
    page.get_by_role("button", name="Approve hospital-a").click()
    expect(page.get_by_text("hospital-a joined the network.")).to_be_visible()

    eventually(lambda: owner.networks[0].status == "approved", "the domain to learn it joined")
    page.get_by_role("link", name="Domains").click()
    health = page.get_by_test_id("health-hospital-a")

    def online() -> bool:
        page.reload()
        return health.inner_text().strip() == "online"

    eventually(online, "a health check of the domain")  # they run every half second

    def found() -> bool:
        page.goto(f"{live_network.url}/search?q=handwritten")
        return page.get_by_role("heading", name="digits-a").count() == 1

    eventually(found, "the domain's datasets in the index")
    expect(page.get_by_text("Handwritten digits")).to_be_visible()
    owner.close()


def test_a_data_scientist_follows_a_federated_job_round_by_round(
    page: Page, live_network: LiveNode, network_database_url: str
) -> None:
    engine = make_engine(network_database_url)
    with _NO_REGISTRY.app_context(), Session(engine) as session:
        add_operator(session, SCIENTIST, PASSWORD, role=DATA_SCIENTIST)
        job_id = seed_job(session, SCIENTIST, reason="digits across two hospitals")

    page.goto(f"{live_network.url}/")
    page.get_by_label("Email").fill(SCIENTIST)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Federated jobs").click()
    page.get_by_role("link", name=str(job_id), exact=True).click()
    label, rounds = page.get_by_test_id("round-label"), page.locator("[data-rounds] tr")
    expect(label).to_contain_text("Round 3 of 5: 1 of 2 domains reported")
    expect(rounds).to_have_count(3)
    expect(rounds.nth(0)).to_contain_text(f"{weighted(1, 'loss'):.4g}")
    expect(page.get_by_role("img", name="loss per round")).to_be_visible()
    expect(page.get_by_role("img", name="accuracy per round")).to_be_visible()
    loss_line = page.locator("svg.chart polyline.series-loss")
    expect(loss_line).to_have_attribute("points", re.compile(r"^[\d.]+,[\d.]+ [\d.]+,[\d.]+$"))

    # The second domain reports: round 3 closes and round 4 opens on the page as it polls.
    page.evaluate("window.notReloaded = true")
    with _NO_REGISTRY.app_context(), Session(engine) as session:
        report(session, job_id, [1])
    # The page polls every second; a busy machine may take longer than expect's 5 s default.
    expect(label).to_contain_text("Round 4 of 5: 0 of 2 domains reported", timeout=30_000)
    expect(rounds).to_have_count(4)
    expect(rounds.nth(2)).to_contain_text(f"{weighted(3, 'accuracy'):.4g}")
    reported = page.get_by_test_id("participant-clinic-b").locator("[data-cell=rounds_reported]")
    expect(reported).to_have_text("3")
    expect(loss_line).to_have_attribute("points", re.compile(r"^([\d.]+,[\d.]+ ){2}[\d.]+,[\d.]+$"))
    assert page.evaluate("window.notReloaded") is True

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel job").click()
    expect(page.get_by_text(f"Federated job {job_id} is cancelled")).to_be_visible()
    expect(page.get_by_test_id("job-status")).to_have_text("cancelled")
    expect(rounds).to_have_count(4)
    engine.dispose()
