"""The network console in Debian's Chromium against a real network and a real domain."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

import grid_cli as grid
from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD
from tests.grid_cli.conftest import DIGITS_CSV
from tests.network.conftest import OPERATOR_EMAIL, OPERATOR_PASSWORD, LiveNode
from tests.network.test_live import eventually


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
