"""The dashboard in a real headless browser (Debian's chromium, driven by Playwright for Python):
the page loads with a token, a decision submitted over HTTP shows up on the page within seconds
(event stream, position, fill), and an admin's halt button, once confirmed, halts the account. A
viewer sees no kill switch.

Skipped, saying why, where chromium or Playwright is missing (``.ci/run`` installs chromium first).
``EXECD_DASHBOARD_SCREENSHOT=path.png`` saves the screenshot the README shows.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from actors.service import Service, run_service
from tests.conftest import TEST_SETTINGS, make_settings

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
ADMIN, VIEWER = "dashboard-admin-token", "dashboard-viewer-token"
WAIT_MS = 10_000

if CHROMIUM is None:
    pytest.skip("chromium is not installed (apt-get install chromium): the dashboard's browser tests need it",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")


def settings_text() -> str:
    def sha(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    return TEST_SETTINGS + (f'auth:\n  tokens:\n    - {{sha256: "{sha(ADMIN)}", role: admin}}\n'
                            f'    - {{sha256: "{sha(VIEWER)}", role: viewer}}\n')


def admin_session(url: str, screenshot: Path) -> dict[str, Any]:
    """The whole browser scenario (Playwright's sync API, in a worker thread)."""
    seen: dict[str, Any] = {}
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url)
            page.wait_for_selector("text=an API token is required", timeout=WAIT_MS)  # nothing without a token
            page.fill("#token", ADMIN)
            page.click("#login button[type=submit]")
            page.wait_for_selector('#accounts tr[data-account="paper-1"]', timeout=WAIT_MS)
            page.wait_for_selector("#stream.on", timeout=WAIT_MS)
            # a decision over HTTP appears on the page, without a reload
            answer = httpx.post(f"{url}/v1/accounts/paper-1/decisions", headers={"Authorization": f"Bearer {ADMIN}"},
                                json={"decision_id": "dash-1", "symbol": "BTCUSDT", "action": "open", "side": "long",
                                      "notional": "500", "leverage": 5}, timeout=10)
            seen["decision_status"] = answer.status_code
            page.wait_for_selector('#events li[data-type="decision.accepted"]:has-text("dash-1")', timeout=WAIT_MS)
            page.wait_for_selector('#positions tr[data-account="paper-1"][data-symbol="BTCUSDT"]', timeout=WAIT_MS)
            page.wait_for_selector('#fills tr[data-fill]', timeout=WAIT_MS)
            seen["navigations"] = page.evaluate("performance.getEntriesByType('navigation').length")
            page.screenshot(path=str(screenshot), full_page=True)
            # the halt button, once confirmed, halts the account
            row = '#accounts tr[data-account="paper-1"]'
            page.click(f'{row} button[data-action="halted"]')
            page.wait_for_selector("#confirm[open]", timeout=WAIT_MS)
            page.click("#confirm-yes")
            page.wait_for_selector(f'{row} .trading-state:has-text("halted")', timeout=WAIT_MS)
            # cancelling the confirmation changes nothing
            page.click(f'{row} button[data-action="active"]')
            page.click("#confirm-no")
            page.wait_for_selector("#confirm:not([open])", state="attached", timeout=WAIT_MS)
            seen["state_after_cancel"] = page.inner_text(f"{row} .trading-state")
        finally:
            browser.close()
    return seen


def viewer_session(url: str) -> dict[str, Any]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page()
            page.goto(url)
            page.fill("#token", VIEWER)
            page.click("#login button[type=submit]")
            page.wait_for_selector('#accounts tr[data-account="paper-1"]', timeout=WAIT_MS)
            return {"halt_visible": page.is_visible('#accounts button[data-action="halted"]'),
                    "whoami": page.inner_text("#whoami")}
        finally:
            browser.close()


async def test_the_dashboard_follows_the_service_live_and_its_kill_switch_works(tmp_path: Path) -> None:
    screenshot = Path(os.environ.get("EXECD_DASHBOARD_SCREENSHOT") or tmp_path / "dashboard.png")
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            service: Service = await nursery.start(run_service, make_settings(tmp_path, settings_text()))
            seen = await trio.to_thread.run_sync(admin_session, service.url, screenshot)
            viewer = await trio.to_thread.run_sync(viewer_session, service.url)
            slot = service.supervisor.slot("paper-1")
            assert slot.snapshot() is not None and slot.snapshot().trading_state == "halted"
            service.request_stop()
    assert seen["decision_status"] == 200
    assert seen["navigations"] == 1  # no reload: the page followed the event stream
    assert seen["state_after_cancel"] == "halted"
    assert screenshot.stat().st_size > 10_000
    assert viewer == {"halt_visible": False, "whoami": "viewer token " + hashlib.sha256(VIEWER.encode()).hexdigest()[:8]
                      + " (viewer)"}
