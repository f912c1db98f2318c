"""Fixtures for the consoles: signed-in test clients, and Debian's Chromium driven by Playwright.

Browser tests save a screenshot of their last page under `GRID_SCREENSHOT_DIR`, else under
pytest's base temp directory in `screenshots/`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from flask.testing import FlaskClient

# The live domain with data, its people and workers, as the worker tests make them; the live
# network and member domain as the network tests make them.
from tests.network.conftest import (
    live_member,
    live_network,
    make_signer,
    network,
    network_app,
    network_config,
    network_database_url,
    network_sqlite_template,
)
from tests.worker.conftest import digits_csv, live_domain_env, owner, scientist, start_worker

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

__all__ = [
    "digits_csv",
    "live_domain_env",
    "live_member",
    "live_network",
    "make_signer",
    "network",
    "network_app",
    "network_config",
    "network_database_url",
    "network_sqlite_template",
    "owner",
    "scientist",
    "start_worker",
]

CHROMIUM = Path("/usr/bin/chromium")
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "the page has no CSRF token"
    return found.group(1)


def sign_in(client: FlaskClient, email: str, password: str) -> str:
    """Sign `client` in through the console's form; returns the session's CSRF token."""
    token = csrf_of(client.get("/login").get_data(as_text=True))
    response = client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token}
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    return csrf_of(client.get("/").get_data(as_text=True))


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("GRID_SCREENSHOT_DIR")
    folder = Path(configured) if configured else tmp_path_factory.getbasetemp() / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, screenshot_dir: Path, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context and page; its last page is saved as `<test name>.png`."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    yield tab
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
    tab.screenshot(path=str(screenshot_dir / f"{name}.png"), full_page=True)
    context.close()
