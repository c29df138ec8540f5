"""The activity page against a real JupyterHub (the hub, relay and OAuth login of
test_relay_pages.py): its distribution is the runs this test posted, scoped to the teacher's
classes; a student is refused; an unknown activity is a 404 that names it; in Chromium."""

from __future__ import annotations

import os
import re
import time
import uuid

import pytest

from timeback_jupyter import caliper
from timeback_jupyter.model import Completion
from timeback_jupyter.testing.standin import _actor, _target, time_spent_events

from . import test_relay_pages as pages
from .hub import PREFIX, SCOPE

standin = pages.standin
hub_and_relay = pages.hub_and_relay
hub = pages.hub
jp_asyncio_loop = pages.jp_asyncio_loop
jp_server_cleanup = pages.jp_server_cleanup
pytestmark = pytest.mark.slow

ACTIVITY = f"{PREFIX}activities/fractions-1"
# (student, heartbeat windows of 12 active s, correct of 4): minutes = windows / 5
RUNS = [("ada", 10, 4), ("ada", 25, 3), ("bob", 20, 4)]


def minutes_of(names):
    return sorted(w * 12 / 60 for s, w, _ in RUNS if s in names)


@pytest.fixture(scope="module")
def posted(hub):
    """Each run of RUNS completed, all in the last hour, none overlapping another."""
    start = time.time() - 3600
    for name, windows, correct in RUNS:
        token = hub.token(name, [SCOPE, f"users:activity!user={name}"])
        run = str(uuid.uuid4())
        events = time_spent_events(run, windows, start=start)
        end = start + 15 * windows
        done = Completion(run, 10.0, end, total_questions=4, correct_questions=correct)
        events.append(caliper.completion_event(done, run, 1, _actor(), _target()))
        start = end + 60
        response = hub.send(token, events)
        body = response.json()
        assert response.status_code == 200 and body["refused"] == 0, response.text
        assert not any(e.get("cut_seconds") for e in body["events"]), body
    return True


@pytest.fixture(scope="module")
def browsers(hub, posted):
    clients = {}
    for name in ("tina", "ada", "principal"):
        clients[name], response = pages.login(hub, name, "")
        assert response.status_code == 200, response.text
    yield clients
    for client in clients.values():
        client.close()


def shown_bins(html):
    """{(low, high): count} of the page's bins table."""
    out = {}
    for label, count in pages.table_rows(html, "bins"):
        low, high = re.fullmatch(r"([\d.]+) to ([\d.]+) min", label).groups()
        out[(float(low), float(high))] = int(count)
    return out


def check_distribution(html, made):
    bins = shown_bins(html)
    assert sum(bins.values()) == len(made)
    for (low, high), count in bins.items():
        assert count == sum(1 for m in made if low <= m < high), (low, high)
    assert re.search(rf'id="completions-count">{len(made)} ', html)


def test_a_teacher_sees_the_distribution_of_their_classes_runs(browsers):
    page = browsers["tina"].get(ACTIVITY)
    assert page.status_code == 200, page.text
    made = minutes_of({"ada"})  # class-a is ada alone; bob is in class-b
    assert made == [2.0, 5.0]
    check_distribution(page.text, made)
    assert "Completions by the 1 student of class-a." in page.text
    # 2 and 5 min against 10 expected: bins of 1 min up to 11, the wasteful 30 not charted
    words = " ".join(page.text.split())
    assert "in bins of 1 minute; the red line marks the expected minutes." in words
    assert 'id="median">3.5 min<' in page.text  # the middle of 2 and 5
    assert 'id="expected-xp">10 XP<' in page.text
    outcomes = {row[0]: row for row in pages.table_rows(page.text, "outcomes")}
    assert outcomes["full"][2] == "1" and outcomes["zero"][2] == "1"
    assert "3/4 correct, below 80%" in outcomes["zero"][3]
    assert "<svg" in page.text and 'role="img"' in page.text
    # linked from the class overview's column head and from the student's page
    overview = browsers["tina"].get(f"{PREFIX}classes/class-a").text
    assert f'href="{ACTIVITY}?course=Math%20G3"' in overview
    assert (
        f'href="{ACTIVITY}?course=Math%20G3"' in browsers["tina"].get(f"{PREFIX}students/ada").text
    )


def test_an_admin_sees_every_students_runs(browsers):
    page = browsers["principal"].get(ACTIVITY, params={"course": "Math G3"})
    assert page.status_code == 200, page.text
    check_distribution(page.text, minutes_of({"ada", "bob"}))
    assert "every student the relay has recorded" in page.text


def test_a_student_is_refused_and_an_unknown_activity_named(browsers):
    refused = browsers["ada"].get(ACTIVITY)
    assert refused.status_code == 403
    assert "the activity pages are for teachers" in refused.text
    assert "2.0 min" not in refused.text and "bins" not in refused.text
    assert "activities/" not in browsers["ada"].get(f"{PREFIX}students/ada").text
    for who in ("tina", "principal"):
        missing = browsers[who].get(f"{PREFIX}activities/no-such-thing")
        assert missing.status_code == 404
        assert "the school&#39;s catalog has no activity &#39;no-such-thing&#39;" in missing.text
    wrong_course = browsers["tina"].get(ACTIVITY, params={"course": "Art G9"})
    assert wrong_course.status_code == 404 and "in course &#39;Art G9&#39;" in wrong_course.text


def test_in_chromium_a_teacher_opens_the_activity_from_the_overview(hub, posted):
    if os.environ.get("CI") != "true" and not pages.CHROMIUM.exists():
        pytest.skip(f"{pages.CHROMIUM} is missing (apt-get install chromium); CI=true runs this")
    from playwright.sync_api import sync_playwright

    pages.ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(pages.CHROMIUM), args=pages.CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(60_000)
            page.goto(f"{hub.url}{PREFIX}classes/class-a")
            page.fill("input[name=username]", "tina")
            page.fill("input[name=password]", "any")
            page.keyboard.press("Enter")
            page.wait_for_url(f"**{PREFIX}classes/class-a")
            page.get_by_role("link", name="time to complete").first.click()
            page.wait_for_url("**/activities/fractions-1**")
            chart = page.get_by_role("img", name="Active minutes to completion of Fractions 1")
            assert chart.is_visible()
            rows = page.locator("#bins tbody tr").all_inner_texts()
            counted = {r.split("\t")[0]: int(r.split("\t")[1]) for r in rows}
            assert counted["2 to 3 min"] == 1 and counted["5 to 6 min"] == 1
            assert sum(counted.values()) == 2
            page.screenshot(path=str(pages.ARTIFACTS / "relay-activity-page.png"), full_page=True)
        finally:
            browser.close()
