"""Through a real hub, in Chromium: tb-alice works on the quiz in JupyterLab while her teacher
watches the class overview in another browser; her active time grows on the teacher's page
without a reload. In her Lab, "What Timeback records" links her own page on the relay."""

from __future__ import annotations

import os
import re
import time
from typing import Any

import pytest

from tests.chromium import CHROMIUM, jp_asyncio_loop, jp_server_cleanup  # noqa: F401  (autouse)
from timeback_jupyter.testing.hub import RELAY_SERVICE, Hub

from ..browser.lab import KERNEL_READY_JS
from .conftest import CLASS, REPO, TEACHER

pytestmark = pytest.mark.slow

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update"]  # fmt: skip
ARTIFACTS = REPO / "test-artifacts"
RELAY = f"/services/{RELAY_SERVICE}/"
GROWN_BY = 10  # seconds of active time the teacher must see added, without a reload


def active_seconds(cell: str) -> int:
    """The active time in an overview cell ("working now · 1m 05s · 0 XP"), in seconds."""
    found = re.search(r"(?:(\d+)h )?(?:(\d+)m )?(\d+)s|(\d+)h (\d+)m", cell)
    if not found:
        return -1
    h, m, s, h2, m2 = (int(g) if g else 0 for g in found.groups())
    return (h or h2) * 3600 + (m or m2) * 60 + s


def log_in(page: Any, hub: Hub, path: str, name: str) -> None:
    """Open ``path`` on the hub; its login form (the dummy authenticator) sends us back."""
    page.goto(f"{hub.url}{path}")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", "any")
    page.keyboard.press("Enter")


def test_a_teacher_sees_a_students_time_grow_live(hub: Hub, quiz_for: Any) -> None:
    if os.environ.get("CI") != "true" and not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); CI=true runs this")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    path = quiz_for("tb-alice", "live")
    hub.spawn("tb-alice")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            # the student, in her own browser: JupyterLab through the hub, the quiz open
            alice = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            alice.set_default_timeout(120_000)
            alice.on("dialog", lambda dialog: dialog.accept())
            log_in(alice, hub, f"/user/tb-alice/lab/tree/{path}", "tb-alice")
            alice.wait_for_url(f"**/user/tb-alice/lab/tree/{path}")
            alice.wait_for_function(KERNEL_READY_JS)
            cells = alice.locator(".jp-Notebook .jp-Cell")
            cells.nth(1).locator(".jp-InputArea-editor").click()
            alice.keyboard.press("Shift+Enter")  # %load_ext timeback_jupyter ...
            cells.nth(1).locator(".jp-InputPrompt").filter(has_text="[1]").wait_for()

            # her teacher, in another browser, on the class overview
            teacher = browser.new_context(viewport={"width": 1000, "height": 520}).new_page()
            teacher.set_default_timeout(60_000)
            log_in(teacher, hub, f"{RELAY}classes/{CLASS}", TEACHER)
            teacher.wait_for_url(f"**{RELAY}classes/{CLASS}")
            teacher.evaluate("window.notReloaded = true")
            alice_row = teacher.locator("th", has_text="tb-alice")
            cell = teacher.locator("#overview tbody tr", has=alice_row).locator("td").first

            def seen() -> int:
                return active_seconds(cell.inner_text())

            # wait for her first forwarded seconds (her server forwards every second here)
            deadline = time.monotonic() + 120
            while seen() <= 0 and time.monotonic() < deadline:
                alice.mouse.move(400 + int(time.monotonic()) % 50, 400)  # she keeps working
                teacher.wait_for_timeout(1000)
            first = seen()
            assert first > 0, cell.inner_text()
            assert cell.inner_text().startswith("working now")
            began = time.monotonic()
            while seen() < first + GROWN_BY and time.monotonic() - began < 180:
                alice.mouse.move(400 + int(time.monotonic()) % 50, 420)
                alice.keyboard.press("ArrowDown")
                teacher.wait_for_timeout(1000)
            later = seen()
            assert later >= first + GROWN_BY, (first, later, cell.inner_text())
            assert teacher.evaluate("window.notReloaded") is True  # the same page, updated
            status = teacher.locator("#live-status").inner_text()
            assert re.fullmatch(r"Live: updated \d\d:\d\d:\d\d", status), status
            assert "tb-alice: Fractions quiz" in teacher.locator("#working-now").inner_text()
            teacher.screenshot(path=str(ARTIFACTS / "hub-live-overview.png"))
            teacher.locator("main").screenshot(path=str(ARTIFACTS / "class-overview.png"))

            # "What Timeback records" in her Lab links her own page on the relay
            alice.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Help$")).click()
            alice.locator(".lm-Menu-itemLabel", has_text="What Timeback records").click()
            link = alice.locator('.tb-Records a[data-timeback="own-page"]')
            link.wait_for()
            own = f"{hub.url}{RELAY}students/tb-alice"
            assert link.get_attribute("href") == own
            link.scroll_into_view_if_needed()
            alice.screenshot(path=str(ARTIFACTS / "hub-records-link.png"))
            with alice.context.expect_page() as opened:
                link.click()
            page = opened.value  # signed in to the hub already: the relay's OAuth is silent
            page.wait_for_url(own)
            assert page.get_by_role("heading", name="tb-alice").is_visible()
        finally:
            browser.close()
