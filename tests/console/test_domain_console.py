"""The domain console in Debian's Chromium against a real gunicorn domain and real workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from playwright.sync_api import Page, expect
from sklearn.datasets import load_digits

import grid_cli as grid
from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD, PASSWORD
from tests.worker.live import DS_EMAIL, PLAN, StartWorker, mlp

JOB_DEADLINE_MS = 180_000


def sign_in(page: Page, url: str, email: str, password: str) -> None:
    """Through the form, by its labels and the keyboard, as a person would."""
    page.goto(f"{url}/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_label("Password").press("Enter")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def fits_the_screen(page: Page) -> bool:
    overflow: bool = page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )
    return overflow


@pytest.mark.timeout(600)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_owner_approves_watches_and_releases_a_job_in_the_browser(
    page: Page,
    live_domain: str,
    owner: grid.DomainClient,
    scientist: grid.DomainClient,
    start_worker: StartWorker,
    screenshot_dir: Path,
) -> None:
    start_worker("w1")
    job = scientist.submit_training(mlp(), dataset="digits-a", plan=PLAN, reason="digit classifier")

    sign_in(page, live_domain, OWNER_EMAIL, OWNER_PASSWORD)
    expect(page.get_by_test_id("pending-count")).to_have_text("1")
    page.get_by_role("link", name=str(job.id), exact=True).click()

    # What the reviewer is shown: the model from its graph, the plan, what would leave.
    summary = page.get_by_test_id("model-summary")
    expect(summary).to_contain_text("2,410")  # 64·32+32 + 32·10+10 parameters
    expect(summary).to_contain_text("[N, 64]")
    expect(summary).to_contain_text("[N, 10]")
    expect(summary).to_contain_text("aten.linear.default")
    expect(page.get_by_test_id("egress")).to_contain_text("Never the private rows")
    expect(page.get_by_text("8 (batches of 64)")).to_be_visible()
    page.set_viewport_size({"width": 390, "height": 844})
    assert fits_the_screen(page), "the request page scrolls sideways on a phone"
    page.screenshot(path=str(screenshot_dir / "request-detail-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})

    page.get_by_label("Reason for approving").fill("fine for research")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("heading", name=f"Job {job.id}")).to_be_visible()

    expect(page.get_by_test_id("job-status")).to_have_text("completed", timeout=JOB_DEADLINE_MS)
    expect(page.locator("svg.chart")).to_have_count(2)  # loss and accuracy curves
    expect(page.locator("[data-logs]")).to_contain_text("attempt 1 started on w1")
    expect(page.get_by_test_id("result-status")).to_have_text("held")
    with pytest.raises(grid.GridError):
        job.result()

    page.get_by_role("button", name="Release the result").click()
    expect(page.get_by_test_id("result-status")).to_have_text("released")

    model = job.result()
    digits = load_digits()
    inputs = torch.tensor(digits.data[600:900], dtype=torch.float32)
    with torch.no_grad():
        predicted = model(inputs).argmax(dim=1).numpy()
    assert float(np.mean(predicted == digits.target[600:900])) > 0.8
    decisions = owner.audit_log(action="requests.approved")
    assert [(e.actor, e.details["reason"]) for e in decisions] == [
        (OWNER_EMAIL, "fine for research")
    ]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_upload_with_script_in_its_description_shows_it_as_text(
    page: Page, live_domain: str, owner: grid.DomainClient, digits_csv: Path
) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_in(page, live_domain, OWNER_EMAIL, OWNER_PASSWORD)
    page.get_by_role("link", name="Datasets").click()
    page.get_by_role("link", name="Upload a dataset").click()
    page.get_by_label("Name").fill("digits-b")
    page.get_by_label("Private data file").set_input_files(str(digits_csv))
    page.get_by_label("Label column").fill("target")
    script = "<script>alert('owned')</script><img src=x onerror=\"alert('owned')\">"
    page.get_by_label("Description").fill(script)
    page.get_by_role("button", name="Upload").click()

    expect(page.get_by_role("heading", name="digits-b")).to_be_visible()
    expect(page.get_by_test_id("description")).to_have_text(script)
    expect(page.get_by_test_id("mock-preview")).to_be_visible()
    assert dialogs == []
    assert "digits-b" in owner.datasets.names


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_form_posted_without_its_csrf_token_is_refused(
    page: Page, live_domain: str, owner: grid.DomainClient
) -> None:
    sign_in(page, live_domain, OWNER_EMAIL, OWNER_PASSWORD)
    page.get_by_role("link", name="Users").click()
    page.get_by_label("Email").fill("intruder@example.org")
    page.get_by_label("Password (at least").fill("a-long-password")
    page.evaluate("document.querySelectorAll('input[name=csrf_token]').forEach((i) => i.remove())")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="Create").click()
    assert posted.value.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.get_by_text("did not come from this console")).to_be_visible()
    assert "intruder@example.org" not in {u.email for u in owner.users}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_data_scientist_gets_a_403_page_on_owner_pages(
    page: Page, live_domain: str, scientist: grid.DomainClient
) -> None:
    sign_in(page, live_domain, DS_EMAIL, PASSWORD)
    expect(page.get_by_role("link", name="Users")).to_have_count(0)
    for path in ("/audit", "/workers", "/upload", "/users"):
        response = page.goto(f"{live_domain}{path}")
        assert response is not None and response.status == 403, path
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
        expect(page.get_by_text("Your role (data_scientist) lacks the")).to_be_visible()
