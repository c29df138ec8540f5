"""The relay's pages against a real JupyterHub: logged in through the hub's OAuth with a real
HTTP client (redirects and cookies followed), who sees what decided by the hub's scopes, and the
CSV export equal to the page's table."""

from __future__ import annotations

import csv
import io
import os
import time
import uuid
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.chromium import CHROMIUM, CHROMIUM_ARGS, jp_asyncio_loop, jp_server_cleanup  # noqa: F401  (autouse)
from timeback_jupyter.relay.access import (
    custom_scopes,
    relay_service_role,
    service_oauth,
    teacher_role,
)
from timeback_jupyter.testing.standin import completion_event, time_spent_events

from . import hub as hub_fixtures
from .hub import PREFIX, SCOPE, SERVICE, Hub, RelayProcess, free_port

standin = hub_fixtures.standin
pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CLASSES = {"class-a": ["ada"], "class-b": ["bob"]}
# The hub config a school adds for the pages (docs/architecture.md shows the same).
PAGES_CONFIG = f"""
c.Authenticator.allowed_users = {{"ada", "bob", "tina", "principal"}}
c.JupyterHub.custom_scopes = {custom_scopes(SERVICE)!r}
c.JupyterHub.load_groups = {{g: {{"users": u}} for g, u in {CLASSES!r}.items()}}
c.JupyterHub.load_roles += [
    {teacher_role("teacher-class-a", ["tina"], ["class-a"], SERVICE)!r},
    {relay_service_role(SERVICE)!r},
]
c.JupyterHub.services[0].update({service_oauth(SERVICE)!r})
"""


@pytest.fixture(scope="module")
def hub_and_relay(tmp_path_factory, standin):
    hub = Hub(tmp_path_factory.mktemp("hub"), free_port())
    with open(hub.tmp / "jupyterhub_config.py", "a") as config:
        config.write(PAGES_CONFIG)
    relay = RelayProcess(tmp_path_factory.mktemp("relay"), hub, standin)
    try:
        relay.start(via_hub=False)
        hub.start()
        yield hub, relay
    finally:
        relay.stop()
        hub.stop()


@pytest.fixture(scope="module")
def hub(hub_and_relay):
    return hub_and_relay[0]


@pytest.fixture(scope="module")
def worked(hub):
    """ada works on the activity right now and has completed one run; bob has worked."""
    for name in ("ada", "bob"):
        token = hub.token(name, [SCOPE, f"users:activity!user={name}"])
        run = str(uuid.uuid4())
        events = time_spent_events(run, 2, start=time.time() - 35)
        if name == "ada":
            done = str(uuid.uuid4())
            events += time_spent_events(done, 1, start=time.time() - 300)
            events.append(completion_event(done, at=time.time() - 280))
        response = hub.send(token, events)
        assert response.status_code == 200 and response.json()["refused"] == 0, response.text
    return True


def login(hub: Hub, name: str, page: str) -> tuple[httpx.Client, httpx.Response]:
    """Open ``page`` as a browser would: the relay sends us to the hub's OAuth, the hub to its
    login form; log in there and follow the redirects back to the page."""
    client = httpx.Client(base_url=hub.url, follow_redirects=True, timeout=60)
    first = client.get(f"{PREFIX}{page}")
    assert urlsplit(str(first.url)).path == "/hub/login", first.url
    assert any("oauth2/authorize" in str(r.headers.get("location")) for r in first.history)
    response = client.post(
        str(first.url),
        data={"username": name, "password": "any", "_xsrf": client.cookies.get("_xsrf")},
    )
    return client, response


@pytest.fixture(scope="module")
def browsers(hub, worked):
    clients = {}
    for name in ("tina", "ada", "principal"):
        clients[name], response = login(hub, name, "")
        assert response.status_code == 200, response.text
        assert urlsplit(str(response.url)).path == PREFIX
    yield clients
    for client in clients.values():
        client.close()


class Table(HTMLParser):
    """The text of each body row of the table with ``id``."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id, self.inside, self.in_body = table_id, False, False
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and dict(attrs).get("id") == self.table_id:
            self.inside = True
        elif self.inside and tag == "tbody":
            self.in_body = True
        elif self.in_body and tag == "tr":
            self.rows.append([])
        elif self.in_body and tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if self.in_body and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append("".join(self.cell).strip())
            self.cell = None
        elif tag == "table" and self.inside:
            self.inside = self.in_body = False

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def table_rows(html: str, table_id: str = "overview") -> list[list[str]]:
    parser = Table(table_id)
    parser.feed(html)
    return parser.rows


def test_the_pages_are_reached_through_the_hubs_oauth(hub, worked):
    client, response = login(hub, "ada", "students/ada")
    client.close()
    assert response.status_code == 200
    assert urlsplit(str(response.url)).path == f"{PREFIX}students/ada"
    hops = [urlsplit(str(r.url)).path for r in response.history]
    assert "/hub/api/oauth2/authorize" in hops and f"{PREFIX}oauth_callback" in hops
    # without the cookie: sent to the hub's OAuth, never shown
    bare = httpx.get(f"{hub.relay_url}students/ada", timeout=30)
    assert bare.status_code == 302 and "/hub/api/oauth2/authorize" in bare.headers["location"]


def test_a_teacher_sees_their_class_and_its_csv_equals_the_table(browsers):
    tina = browsers["tina"]
    for sort, order in (("student", "asc"), ("time", "desc"), ("a0", "desc")):
        page = tina.get(f"{PREFIX}classes/class-a", params={"sort": sort, "order": order})
        assert page.status_code == 200, page.text
        assert 'scope="col"' in page.text and 'scope="row"' in page.text
        shown = table_rows(page.text)
        assert [r[0] for r in shown] == ["ada"]
        export = tina.get(
            f"{PREFIX}classes/class-a/export.csv", params={"sort": sort, "order": order}
        )
        assert export.status_code == 200
        assert export.headers["content-type"].startswith("text/csv")
        header, *rows = list(csv.reader(io.StringIO(export.text)))
        assert header[0] == "Student" and rows == shown
    # a run live now outranks a completed one of the same activity
    assert shown[0][1].startswith("working now · ") and " XP · 75%" in shown[0][1]
    assert "ada: Fractions 1" in page.text  # who is working now
    assert tina.get(f"{PREFIX}students/ada").status_code == 200


def test_a_teacher_is_refused_another_class_its_csv_and_its_students(browsers):
    tina = browsers["tina"]
    for path in ("classes/class-b", "classes/class-b/export.csv", "students/bob"):
        response = tina.get(f"{PREFIX}{path}")
        assert response.status_code == 403, path
        assert "bob" not in response.text.replace("class-b", "")
    index = tina.get(PREFIX).text
    assert "classes/class-a" in index and "classes/class-b" not in index


def test_a_student_sees_their_own_page_only(browsers):
    ada = browsers["ada"]
    own = ada.get(f"{PREFIX}students/ada")
    assert own.status_code == 200
    assert "<svg" in own.text and 'role="img"' in own.text
    runs = table_rows(own.text, "runs")
    assert {r[0] for r in runs} == {"Fractions 1"} and len(runs) == 2
    assert [r[0] for r in table_rows(own.text, "completions")] == ["Fractions 1"]
    for path in ("students/bob", "classes/class-a", "classes/class-a/export.csv"):
        assert ada.get(f"{PREFIX}{path}").status_code == 403, path
    assert "classes/" not in ada.get(PREFIX).text


def test_a_hub_admin_sees_every_class(browsers):
    principal = browsers["principal"]
    index = principal.get(PREFIX).text
    assert "classes/class-a" in index and "classes/class-b" in index
    page = principal.get(f"{PREFIX}classes/class-b")
    assert page.status_code == 200 and [r[0] for r in table_rows(page.text)] == ["bob"]
    assert principal.get(f"{PREFIX}classes/no-such-class").status_code == 404
    assert principal.get(f"{PREFIX}classes/class-b", params={"sort": "x"}).status_code == 400


def test_in_chromium_a_teacher_logs_in_and_sorts_by_keyboard(hub, worked):
    if os.environ.get("CI") != "true" and not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); CI=true runs this")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(60_000)
            page.goto(f"{hub.url}{PREFIX}classes/class-a")
            # the hub's own login form, reached through the relay's OAuth redirect
            page.fill("input[name=username]", "tina")
            page.fill("input[name=password]", "any")
            page.keyboard.press("Enter")
            page.wait_for_url(f"**{PREFIX}classes/class-a")
            assert page.get_by_role("heading", name="Class class-a").is_visible()
            cells = page.locator("#overview tbody tr").first.locator("th, td").all_inner_texts()
            assert cells[0] == "ada" and cells[1].startswith("working now")
            # keyboard only: tab to the "Active time" heading's sort link and press Enter
            for _ in range(40):
                page.keyboard.press("Tab")
                if page.evaluate("document.activeElement.textContent") == "Active time":
                    break
            else:
                raise AssertionError("the Active time sort link is not reachable by Tab")
            page.keyboard.press("Enter")
            page.wait_for_url("**sort=time**")
            sorted_by = page.locator("th[aria-sort=ascending]").inner_text()
            assert sorted_by == "Active time"
            page.screenshot(path=str(ARTIFACTS / "relay-class-overview.png"), full_page=True)
            page.goto(f"{hub.url}{PREFIX}students/ada")
            chart = page.get_by_role("img", name="Active time per day of ada")
            assert chart.is_visible()
            page.screenshot(path=str(ARTIFACTS / "relay-student-page.png"), full_page=True)
            page.goto(f"{hub.url}{PREFIX}classes/class-b")
            assert page.get_by_role("alert").inner_text() == "you may not see class 'class-b'"
        finally:
            browser.close()
