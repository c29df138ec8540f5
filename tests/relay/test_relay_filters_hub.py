"""The class overview's filter form and its CSV against a real JupyterHub: a teacher logged in
through the hub's OAuth filters by activity, day and week with plain GET URLs; the export link
of every filtered, sorted view gives exactly the rows shown; names that a spreadsheet would run
as formulas (a hub user's, a catalog activity's) reach the CSV neutralized. And in Chromium with
JavaScript off: the form used by its labels, a screenshot of a filtered overview."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import html
import io
import json
import os
import re
import time
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.chromium import jp_asyncio_loop, jp_server_cleanup  # noqa: F401  (autouse)
from timeback_jupyter.relay.access import (
    custom_scopes,
    relay_service_role,
    service_oauth,
    teacher_role,
)
from timeback_jupyter.relay.export import neutralize
from timeback_jupyter.testing.standin import StandIn

from .conftest import CATALOG, completion, run_id, tse
from .hub import CLIENT_ID, CLIENT_SECRET, PREFIX, SCOPE, SERVICE, Hub, RelayProcess, free_port
from .test_relay_pages import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, login, table_rows

pytestmark = pytest.mark.slow

EVIL_ACTIVITY = '=HYPERLINK("http://x.invalid","open")'
# A hub username may begin with anything but a space (jupyterhub.auth.validate_username).
STUDENTS = ["ada", "=2+5", "@mallory"]
QUIZ, LESSON, EVIL = "Math G3/fractions-quiz", "Math G3/fractions-lesson", "Math G3/evil"
CONFIG = f"""
c.Authenticator.allowed_users = {set(STUDENTS) | {"tina"}!r}
c.JupyterHub.custom_scopes = {custom_scopes(SERVICE)!r}
c.JupyterHub.load_groups = {{"class-a": {{"users": {STUDENTS!r}}}}}
c.JupyterHub.load_roles += [
    {teacher_role("teacher-class-a", ["tina"], ["class-a"], SERVICE)!r},
    {relay_service_role(SERVICE)!r},
]
c.JupyterHub.services[0].update({service_oauth(SERVICE)!r})
"""


def catalog() -> dict:
    data = json.loads(json.dumps(CATALOG))
    data["courses"][0]["activities"].append({"id": "evil", "name": EVIL_ACTIVITY, "xp": 4})
    return data


@pytest.fixture(scope="module")
def standin():
    with StandIn(CLIENT_ID, CLIENT_SECRET) as api:
        for i, name in enumerate(STUDENTS):
            api.users[f"{name}@school.edu"] = [f"sourced-{i}"]
        yield api


@pytest.fixture(scope="module")
def hub(tmp_path_factory, standin):
    hub = Hub(tmp_path_factory.mktemp("hub"), free_port())
    with open(hub.tmp / "jupyterhub_config.py", "a") as config:
        config.write(CONFIG)
    relay = RelayProcess(tmp_path_factory.mktemp("relay"), hub, standin)
    relay.catalog.write_text(json.dumps(catalog()))
    try:
        relay.start(via_hub=False)
        hub.start()
        yield hub
    finally:
        relay.stop()
        hub.stop()


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def noon(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC).timestamp()


@pytest.fixture(scope="module")
def worked(hub):
    """Yesterday (UTC): ada worked on the lesson, "=2+5" worked on the quiz; ada worked on the
    evil-named activity 8 days ago and works on the quiz now. The relay records "=2+5"'s
    completion now (a completion is dated by the relay's clock). "@mallory" records nothing (a
    name that makes no email cannot), but is a row of the class all the same."""
    yesterday = noon(today() - dt.timedelta(days=1))
    lesson, quiz, now_run, evil = run_id(), run_id(), run_id(), run_id()
    sent = {
        "ada": [tse(lesson, yesterday, slug="fractions-lesson"),
                tse(evil, yesterday - 7 * 86_400, slug="evil"),
                tse(now_run, time.time() - 20), tse(now_run, time.time() - 5)],
        "=2+5": [tse(quiz, yesterday + 60), completion(quiz, yesterday + 90)],
    }  # fmt: skip
    for name, events in sent.items():
        token = hub.token(name, [SCOPE])
        response = hub.send(token, events)
        assert response.status_code == 200 and response.json()["refused"] == 0, response.text
    return yesterday


def header_row(page: str) -> list[str]:
    thead = re.search(r"<thead>(.*?)</thead>", page, re.S)
    assert thead is not None
    # a column's name is its sort link (an activity's heading also links its activity page)
    cells = re.findall(r"<th[^>]*>\s*<a[^>]*>(.*?)</a>", thead[1], re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in cells]


def export_link(page: str) -> str:
    found = re.search(r'<a id="export" href="([^"]+)"', page)
    assert found is not None
    return html.unescape(found[1])


def test_every_filtered_view_exports_its_rows_and_bad_filters_are_400(hub, worked):
    tina, response = login(hub, "tina", "classes/class-a")
    assert response.status_code == 200, response.text
    yesterday = dt.datetime.fromtimestamp(worked, dt.UTC).date()
    iso = today().isocalendar()
    views = [
        [("sort", "student"), ("order", "asc")],
        [("day", yesterday.isoformat()), ("sort", "time"), ("order", "desc")],
        [("activity", QUIZ), ("activity", EVIL), ("week", f"{iso.year}-W{iso.week:02d}"),
         ("sort", "a0"), ("order", "desc")],
        [("activity", LESSON), ("sort", "xp"), ("order", "asc")],
        [("day", today().isoformat()), ("sort", "a0"), ("order", "desc")],
        [("activity", EVIL), ("sort", "a3"), ("order", "desc")],
    ]  # fmt: skip
    with contextlib.closing(tina):
        for query in views:
            page = tina.get(f"{PREFIX}classes/class-a", params=query)
            assert page.status_code == 200, (query, page.text)
            shown, head = table_rows(page.text), header_row(page.text)
            assert sorted(r[0] for r in shown) == sorted(STUDENTS)
            link = urlsplit(export_link(page.text))
            # the export carries the page's query, item for item
            assert link.path == f"{PREFIX}classes/class-a/export.csv"
            assert parse_qsl(link.query) == query
            export = tina.get(f"{link.path}?{link.query}")
            assert export.status_code == 200
            assert export.headers["content-type"].startswith("text/csv")
            rows = list(csv.reader(io.StringIO(export.text, newline="")))
            assert rows[0] == [neutralize(c) for c in head]
            assert rows[1:] == [[neutralize(c) for c in r] for r in shown], query
            by_name = {r[0]: r for r in shown}
            if ("day", yesterday.isoformat()) in query:
                # a past day: nobody shown working, and what was done that day only
                assert (
                    "Not shown: the UTC day" in page.text and "ada: Fractions quiz" not in page.text
                )
                assert (
                    by_name["ada"][2] == "paused · 12s" and by_name["ada"][1] == "nothing in period"
                )
                # worked on yesterday; its completion, recorded today, is not counted then
                assert by_name["=2+5"][1] == "paused · 12s"
                assert shown[-1][0] == "@mallory"  # by active time, descending: 0 s last
            if ("day", today().isoformat()) in query:
                assert "ada: Fractions quiz" in page.text  # today includes now
                assert by_name["ada"][1] == "working now · 24s"
                assert by_name["=2+5"][1].startswith("completed · 0s · ")
                assert [r[0] for r in shown] == ["ada", "=2+5", "@mallory"]
            if query[0] == ("activity", LESSON):
                assert head == ["Student", "Fractions lesson (Math G3)", "Active time", "XP"]
                assert "Nobody is working right now on the activities shown" in page.text
        # formulas in a hub user's name and in an activity's name reach the CSV neutralized
        assert rows[0][1] == f"'{EVIL_ACTIVITY} (Math G3)"
        assert {r[0] for r in rows[1:]} == {"ada", "'=2+5", "'@mallory"}
        first = tina.get(f"{PREFIX}classes/class-a").text
        assert "ada: Fractions quiz" in first  # working now, all time

        bad = {
            "day=2026-13-01": "is not a date: send YYYY-MM-DD",
            "week=2026-W60": "is not an ISO week",
            "activity=Math+G3%2Fnope": "no activity &#39;Math G3/nope&#39; in the catalog",
            "day=2026-01-14&week=2026-W03": "filter by a day or by a week",
            "order=sideways": "is not asc or desc",
            "sort=a9": "cannot sort by &#39;a9&#39;",
        }
        for query, message in bad.items():
            for path in ("classes/class-a", "classes/class-a/export.csv"):
                answer = tina.get(f"{PREFIX}{path}?{query}")
                assert answer.status_code == 400, (path, query, answer.text)
                assert message in answer.text, (query, answer.text)
        # the form keeps the sort while the teacher unticks that activity: sorted by student
        hidden = tina.get(f"{PREFIX}classes/class-a?activity=Math+G3%2Ffractions-lesson&sort=a0")
        assert hidden.status_code == 200, hidden.text
        assert 'id="view-note"' in hidden.text and "Sorted by student" in hidden.text


def test_in_chromium_a_teacher_filters_with_the_form(hub, worked):
    if os.environ.get("CI") != "true" and not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); CI=true runs this")
    from playwright.sync_api import sync_playwright

    yesterday = dt.datetime.fromtimestamp(worked, dt.UTC).date().isoformat()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            # no JavaScript: the form is a plain GET form and must work as one
            page = browser.new_page(
                viewport={"width": 1280, "height": 900}, java_script_enabled=False
            )
            page.set_default_timeout(60_000)
            page.goto(f"{hub.url}{PREFIX}classes/class-a")
            page.fill("input[name=username]", "tina")
            page.fill("input[name=password]", "any")
            page.keyboard.press("Enter")
            page.wait_for_url(f"**{PREFIX}classes/class-a")
            # the form's controls found by their labels, as a screen reader names them
            page.get_by_label("Fractions quiz (Math G3)", exact=True).check()
            page.get_by_label("Fractions lesson (Math G3)", exact=True).check()
            page.get_by_label("UTC day", exact=True).fill(yesterday)
            page.get_by_label("Sort by", exact=True).select_option(label="Active time")
            page.get_by_label("Order", exact=True).select_option("desc")
            page.get_by_role("button", name="Apply").press("Enter")
            page.wait_for_url(f"**day={yesterday}**")
            query = parse_qsl(urlsplit(page.url).query)
            assert ("activity", QUIZ) in query and ("activity", LESSON) in query
            caption = page.locator("#overview caption").inner_text()
            assert f"the UTC day {yesterday}" in caption and "Active time (descending)" in caption
            assert page.locator("#working-now").inner_text().startswith("Not shown")
            heads = page.locator("#overview thead th > a:first-child").all_inner_texts()
            assert heads == ["Student", "Fractions quiz (Math G3)", "Fractions lesson (Math G3)",
                             "Active time", "XP"]  # fmt: skip
            assert page.locator("#overview tbody tr").count() == len(STUDENTS)
            # the filtered view is a URL: opened again, the form shows the same choices
            page.goto(page.url)
            assert page.get_by_label("Fractions quiz (Math G3)", exact=True).is_checked()
            assert page.get_by_label("UTC day", exact=True).input_value() == yesterday
            page.screenshot(
                path=str(ARTIFACTS / "relay-class-overview-filtered.png"), full_page=True
            )
            page.goto(f"{hub.url}{PREFIX}classes/class-a?week=2026-W99")
            assert "is not an ISO week" in page.get_by_role("alert").inner_text()
        finally:
            browser.close()
