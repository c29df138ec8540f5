"""The class overview kept live (``relay/live.py``, ``relay/static/live.js``) against a real
JupyterHub: the live rows are the page's rows for the same query, refused exactly where the page
is, and in Chromium the table follows new events without a reload (focus kept, changes
announced, paused while hidden, slower after failures, only the nonce'd script allowed)."""

from __future__ import annotations

import html
import json
import re
import time
import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from tests.chromium import jp_asyncio_loop, jp_server_cleanup  # noqa: F401  (autouse)
from timeback_jupyter.testing.standin import completion_event, time_spent_events

from . import test_relay_pages as pages_tests
from .hub import PREFIX, SCOPE, Hub

standin = pages_tests.standin
hub_and_relay = pages_tests.hub_and_relay
hub = pages_tests.hub
worked = pages_tests.worked
browsers = pages_tests.browsers
table_rows = pages_tests.table_rows
pytestmark = pytest.mark.slow


def live_rows(answer: httpx.Response) -> list[list[str]]:
    return table_rows(f'<table id="overview"><tbody>{answer.json()["rows"]}</tbody></table>')


def work(hub: Hub, name: str, windows: int = 1) -> None:
    """``name`` sends ``windows`` more 15 s windows of a new run, ending now."""
    token = hub.token(name, [SCOPE, f"users:activity!user={name}"])
    run = str(uuid.uuid4())
    events = time_spent_events(run, windows, start=time.time() - 15 * windows)
    response = hub.send(token, events)
    assert response.status_code == 200 and response.json()["refused"] == 0, response.text


def active_text(cell: str) -> str:
    """The active time in an overview cell ("working now · 1m 05s · 5 XP · 75%")."""
    found = re.search(r"\d+h \d\dm|\d+m \d\ds|\d+s", cell)
    assert found, cell
    return found.group(0)


def seconds(text: str) -> int:
    parts = dict((unit, int(n)) for n, unit in re.findall(r"(\d+)([hms])", text))
    return parts.get("h", 0) * 3600 + parts.get("m", 0) * 60 + parts.get("s", 0)


def test_the_live_rows_are_the_pages_rows_for_the_same_query(browsers):
    tina = browsers["tina"]
    for query in ({}, {"sort": "time", "order": "desc"}, {"sort": "a0", "order": "asc"}):
        page = tina.get(f"{PREFIX}classes/class-a", params=query)
        answer = tina.get(f"{PREFIX}classes/class-a/live", params=query)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/json; charset=utf-8"
        assert answer.headers["cache-control"] == "no-store"
        assert live_rows(answer) == table_rows(page.text)
        assert answer.json()["working"].strip().startswith('<ul id="working-now">')
        assert "ada: Fractions 1" in answer.json()["working"]
    bad = tina.get(f"{PREFIX}classes/class-a/live", params={"sort": "nope"})
    assert bad.status_code == 400 and "nope" in bad.json()["error"]


def test_the_live_rows_are_refused_where_the_page_is(hub, browsers):
    cases = [
        ("tina", "class-b", 403),  # a teacher of class A only
        ("ada", "class-a", 403),  # a student
        ("principal", "class-b", 200),  # a hub admin sees every class
        ("principal", "no-such-class", 404),
    ]
    for who, group, status in cases:
        page = browsers[who].get(f"{PREFIX}classes/{group}")
        answer = browsers[who].get(f"{PREFIX}classes/{group}/live")
        assert page.status_code == answer.status_code == status, (who, group)
        if status != 200:
            assert answer.json() == {"status": status, "error": answer.json()["error"]}
            assert "bob" not in answer.text.replace("class-b", "")
    # signed out: sent to the hub's OAuth as the page is, nothing shown
    bare = httpx.get(f"{hub.relay_url}classes/class-a/live", timeout=30)
    assert bare.status_code == 302 and "/hub/api/oauth2/authorize" in bare.headers["location"]


def test_a_script_asks_with_the_pages_xsrf_token(browsers):
    """A fetch from a script is no page view: the hub's OAuth takes the login cookie only with
    the page's xsrf token (JupyterHub's rule), which the script tag carries."""
    tina = browsers["tina"]
    page = tina.get(f"{PREFIX}classes/class-a")
    token = html.unescape(re.search(r'data-xsrf="([^"]+)"', page.text).group(1))
    fetch = {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin"}
    url = f"{PREFIX}classes/class-a/live"
    without = tina.get(url, headers=fetch, follow_redirects=False)
    assert without.status_code == 302  # the cookie alone is not taken: sent to log in
    answer = tina.get(url, headers={**fetch, "X-XSRFToken": token}, follow_redirects=False)
    assert answer.status_code == 200 and live_rows(answer) == table_rows(page.text)


def test_the_live_rows_follow_new_events(hub, browsers):
    tina = browsers["tina"]
    before = seconds(active_text(live_rows(tina.get(f"{PREFIX}classes/class-a/live"))[0][1]))
    work(hub, "ada")
    after = seconds(active_text(live_rows(tina.get(f"{PREFIX}classes/class-a/live"))[0][1]))
    assert after > before


def test_the_page_allows_only_its_own_nonced_script(hub, browsers):
    page = browsers["tina"].get(f"{PREFIX}classes/class-a")
    policy = page.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'" and directives["connect-src"] == "'self'"
    nonce = re.fullmatch(r"'nonce-([^']+)'", directives["script-src"])  # nothing else runs
    assert nonce
    tags = re.findall(r"<script\b[^>]*>", page.text)
    assert len(tags) == 1 and f'nonce="{nonce.group(1)}"' in tags[0]
    again = browsers["tina"].get(f"{PREFIX}classes/class-a").headers["content-security-policy"]
    assert again != policy  # a nonce per answer
    src = re.search(r'src="([^"]+)"', tags[0]).group(1)
    assert urlsplit(src).path == f"{PREFIX}static/live.js"
    script = httpx.get(f"{hub.url}{src}", timeout=30)  # public: no login needed for code
    assert script.status_code == 200
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert script.headers["x-content-type-options"] == "nosniff"
    assert "max-age" in script.headers["cache-control"]  # versioned by content: kept long
    assert script.text.lstrip().startswith("//") and "'use strict';" in script.text
    assert httpx.get(f"{hub.url}{PREFIX}static/../pages.py", timeout=30).status_code in (403, 404)


def status_says(page, pattern: str, timeout: float = 60_000) -> None:
    """Wait until the script's status line matches ``pattern`` (a function, not a string to
    evaluate: the page's policy forbids eval, Playwright's too)."""
    page.wait_for_function(
        "([pattern]) => new RegExp(pattern).test("
        "(document.getElementById('live-status') || {}).textContent || '')",
        arg=[pattern],
        timeout=timeout,
    )


def test_in_chromium_the_overview_follows_work_without_a_reload(hub, worked):
    if not pages_tests.CHROMIUM.exists():
        pytest.skip(f"{pages_tests.CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(pages_tests.CHROMIUM), args=pages_tests.CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(60_000)
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda err: problems.append(str(err)))
            asked: list[float] = []
            page.on(
                "request",
                lambda r: asked.append(time.monotonic()) if "/live" in r.url else None,
            )
            page.goto(f"{hub.url}{PREFIX}classes/class-a?sort=time&order=desc")
            page.fill("input[name=username]", "tina")
            page.fill("input[name=password]", "any")
            page.keyboard.press("Enter")
            page.wait_for_url("**classes/class-a?sort=time&order=desc")
            status_says(page, r"^Live: updated \d\d:\d\d:\d\d$")
            cell = page.locator("#overview tbody tr").first.locator("td").first
            shown = cell.inner_text()
            # the keyboard focus on ada's link stays there across updates
            page.locator("#overview tbody tr th a").first.focus()
            work(hub, "ada")
            deadline = time.monotonic() + 60
            while cell.inner_text() == shown and time.monotonic() < deadline:
                page.wait_for_timeout(500)
            status = page.locator("#live-status").inner_text()
            assert cell.inner_text() != shown, (shown, status, problems)
            assert seconds(active_text(cell.inner_text())) > seconds(active_text(shown))
            assert page.evaluate("document.activeElement.textContent") == "ada"
            assert page.url.endswith("classes/class-a?sort=time&order=desc")  # no reload
            # the live URL carried the page's query
            assert any("live?sort=time&order=desc" in u for u in page.evaluate(
                "performance.getEntriesByType('resource').map(e => e.name)"))  # fmt: skip
            # hidden: nothing asked; back in front: asked at once
            page.evaluate(
                "Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});"
                "document.dispatchEvent(new Event('visibilitychange'))"
            )
            assert page.locator("#live-status").inner_text().startswith("Live updates paused")
            hidden_at, count = time.monotonic(), len(asked)
            page.wait_for_timeout(11_000)
            assert len(asked) == count, "asked while hidden"
            page.evaluate(
                "Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});"
                "document.dispatchEvent(new Event('visibilitychange'))"
            )
            status_says(page, "^Live: updated")
            assert asked[-1] > hidden_at + 10
            # failures: said, and asked again later each time
            page.route("**/live?*", lambda route: route.fulfill(status=502, body="bad gateway"))
            status_says(page, "trying again in 10 s")
            status_says(page, "trying again in 20 s")
            page.unroute("**/live?*")
            assert not [p for p in problems if "Content Security Policy" in p], problems
            assert page.locator("#live-announce[role=status]").count() == 1
            page.screenshot(path=str(pages_tests.ARTIFACTS / "relay-live-overview.png"))
        finally:
            browser.close()
    print(json.dumps({"live_requests": len(asked)}))


def test_in_chromium_a_change_of_state_is_announced(hub, browsers):
    if not pages_tests.CHROMIUM.exists():
        pytest.skip(f"{pages_tests.CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    principal = browsers["principal"]

    def bobs_cell() -> str:
        return live_rows(principal.get(f"{PREFIX}classes/class-b/live"))[0][1]

    # bob's run from `worked` stops being "working now" 90 s after its last second
    deadline = time.monotonic() + 180
    while not bobs_cell().startswith("paused") and time.monotonic() < deadline:
        time.sleep(2)
    assert bobs_cell().startswith("paused"), bobs_cell()
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(pages_tests.CHROMIUM), args=pages_tests.CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(60_000)
            page.goto(f"{hub.url}{PREFIX}classes/class-b")
            page.fill("input[name=username]", "principal")
            page.fill("input[name=password]", "any")
            page.keyboard.press("Enter")
            page.wait_for_url("**classes/class-b")
            status_says(page, "^Live: updated")
            assert page.locator("#live-announce").inner_text() == ""
            # bob completes a run: his cell turns "completed", and that is said, once
            token = hub.token("bob", [SCOPE, "users:activity!user=bob"])
            done = str(uuid.uuid4())
            events = [*time_spent_events(done, 1, start=time.time() - 400)]
            events.append(completion_event(done, at=time.time() - 380))
            response = hub.send(token, events)
            assert response.status_code == 200 and response.json()["refused"] == 0
            announcer = page.locator("#live-announce[role=status][aria-live=polite]")
            said = re.compile(r"^bob, Fractions 1[^;]*: completed\.$")
            announcer.filter(has_text=said).wait_for()
            assert page.locator("#overview tbody td.state-completed").count() == 1
        finally:
            browser.close()
